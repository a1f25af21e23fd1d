"""Feature caching: a frozen backbone's features computed once, the head trained on them.

In `feature_extract` mode without augmentation, the backbone maps each image to
the same features every epoch, so recomputing them is wasted work: the seeds'
frozen Xception still took 195 s per epoch against 227 s for full training. Here
one pass over the train split (and the eval split) computes the pooled features,
which stay in host memory or in WORKDIR/feature_cache/CASE.npy (memory-mapped),
and each epoch then runs only the head.

The head sees its examples in exactly the order the image pipeline would give
them (the same seeded file and buffer shuffles, features looked up by example
id), and its parameters, optimizer state and dropout keys are those of the full
model's top: with the same seed it trains the same head as recomputing would,
up to the float rounding of features computed in other batches.

A linear probe is this with head='' (one Dense layer on the features) and
loss='cross_entropy' (logistic regression) or loss='hinge' (a linear SVM).
"""

import itertools
import os
import time

import jax
from jax.sharding import NamedSharding, PartitionSpec as P
import numpy as np

from bench.core import parallel
from bench.core.fileio import atomic_open
from bench.train import checkpoints
from bench.train.trainer import Trainer
from bench.workload import build
from bench.workload import optimizers
from bench.workload import steps
from bench.workload import transfer
from models.layers import without_top


def _local_rows(x):
  """This process's rows of a batch sharded over the `data` axis, as numpy."""
  shards = sorted(x.addressable_shards, key=lambda s: s.index[0].start or 0)
  return np.concatenate([np.asarray(s.data) for s in shards])


def _features(extract, state, batches):
  """(features, labels) of the masked-in examples of eval-order `batches`, in order."""
  features, labels = [], []
  for batch in batches:
    keep = _local_rows(batch['mask'])
    features.append(_local_rows(extract(state, batch))[keep])
    labels.append(_local_rows(batch['label'])[keep])
  return np.concatenate(features), np.concatenate(labels)


def _on_disk(workdir, name, features):
  """`features` saved as WORKDIR/feature_cache/NAME.npy, read back memory-mapped."""
  directory = os.path.join(workdir, 'feature_cache')
  os.makedirs(directory, exist_ok=True)
  # Each process caches the features of its own part of the split.
  part = f'.process{jax.process_index()}' if jax.process_count() > 1 else ''
  path = os.path.join(directory, f'{name}{part}.npy')
  with atomic_open(path, 'wb') as f:
    np.save(f, features)
  return np.load(path, mmap_mode='r')


def _cached_evaluator(case, data, extract, state, head):
  """`evaluate(head_state)` over the eval split's features, computed now and kept on
  the devices, batched and masked as evaluation reads them."""
  batches, num_examples = data.evaluation(case.eval_split)
  cached = [{'image': extract(state, b), 'label': b['label'], 'mask': b['mask']} for b in batches]
  jax.block_until_ready(cached)
  eval_sums = jax.jit(steps.make_eval_sums(head, case.loss))
  return lambda head_state: build.exact_metrics(eval_sums, head_state, cached, num_examples,
                                                case.eval_split)


def trainer(name, case, mesh, data, workdir, steps_per_epoch, resume, epoch=None,
            on_built=lambda built: None):
  """A Trainer of the head on cached features: its Built counts the full model's
  parameters and compiles the head's step. `resume(target)` may restore the head's
  state (see build.initial_state); `epoch` (pipeline.Input.epoch) ends each pass in a
  smaller batch. `on_built` hears the Built of the parameters before the cache is made."""
  model = build.model_of(case)
  frozen = transfer.frozen_layers(case, model, tuple(case.image_shape))
  backbone, head = model.backbone_and_head()
  tx = optimizers.create(case, build.total_steps(case, steps_per_epoch))
  state = build.initial_state(case, mesh, model, tx, frozen)
  params = build.count_params(state, frozen)
  on_built(build.Built(params))

  t0 = time.perf_counter()
  extract = jax.jit(lambda state, batch: backbone.apply(
      without_top({'params': state.params, 'batch_stats': state.batch_stats}),
      steps.model_input(batch['image'], case.normalization), train=False))
  batches, _ = data.evaluation(case.train_split)
  features, labels = _features(extract, state, batches)
  ids = data.example_ids(case.train_split)
  if len(ids) != len(features):
    raise RuntimeError(f'{len(features)} cached features for {len(ids)} examples')
  if case.cache_features == 'disk':
    features = _on_disk(workdir, name, features)
  evaluate = _cached_evaluator(case, data, extract, state, head) if case.eval_split else None
  cache_s = time.perf_counter() - t0

  # The head's state is the full model's top: same parameters, optimizer state and key.
  head_state = jax.jit(lambda s: s.replace(params={'top': s.params['top']}, batch_stats={}),
                       out_shardings=NamedSharding(mesh, P()))(state)
  head_state = resume(checkpoints.abstract(head_state)) or head_state
  stream = data.cached_stream(case.train_split, ids, features, labels,
                              start=int(head_state.step), epoch=epoch)
  first = next(stream)
  full = build.batch_like(case, mesh, first, case.batch_size)  # `first` may be a last batch
  head_step = steps.make_train_step(head, tx, frozenset(), case.loss, parallel.axis_name(case))
  compiled, compilation = build.compile_into(case, mesh, head_step, head_state, full, True)
  compiled = build.with_last_batch(case, mesh, compiled, head_step, head_state, full, epoch,
                                   True)

  def variables(head_state):
    return {'params': {**state.params, 'top': head_state.params['top']},
            'batch_stats': state.batch_stats}

  return Trainer(compiled, head_state, itertools.chain([first], stream), evaluate, variables,
                 build.Built(params, step=compilation), cache_s, int(features.nbytes))
