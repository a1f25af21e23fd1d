"""The pure functions that are timed: train step, eval step, forward pass.

Each is `fn(state, batch) -> output`, jitted once by the runner. The train step
returns `(new_state, metrics)` and is compiled with the state donated, so the
update happens in place; metrics stay on device and are read after timing.
"""

import flax
import flax.struct
import jax
import jax.numpy as jnp
from jax import lax
import optax

from bench.workload import transfer
from input_pipeline import options
from models.layers import cross_device_batch_norm

# Per-example losses by config name: softmax cross-entropy, or the multiclass hinge
# (Crammer-Singer) of a linear SVM, for linear probes.
LOSSES = {
    'cross_entropy': optax.softmax_cross_entropy_with_integer_labels,
    'hinge': optax.losses.multiclass_hinge_loss,
}


@flax.struct.dataclass
class TrainState:
  """Everything a train step reads and writes, as a plain pytree (orbax-friendly)."""
  step: jax.Array
  params: dict
  batch_stats: dict  # empty for models without BatchNorm
  opt_state: optax.OptState
  rng: jax.Array  # base key; step k uses fold_in(rng, k) for dropout


def train_state_init(model, tx, image_shape, sharding, frozen=frozenset()):
  """The jitted `rng -> TrainState`: parameters and optimizer state created directly
  with `sharding` (no host copy); the optimizer state covers only the layers not
  in `frozen` (bench/workload/transfer.py). jax.eval_shape of it gives the state's shapes."""
  def init(rng):
    init_rng, state_rng = jax.random.split(rng)
    variables = model.init(init_rng, jnp.zeros((1, *image_shape), jnp.float32), train=False)
    params = variables['params']
    return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                      batch_stats=variables.get('batch_stats', {}),
                      opt_state=tx.init(transfer.split(params, frozen)[0]), rng=state_rng)
  return jax.jit(init, out_shardings=sharding)


# XLA options for a program that runs once (initialisation) on a CPU: LLVM's
# optimisations make the random initialisers' program take as long to compile as
# the train step (9 s against 2 s for ResNet18), for no speed that matters once;
# the values are bitwise the same (tests/test_train.py).
_RUN_ONCE_OPTIONS = {'xla_backend_optimization_level': 0,
                     'xla_llvm_disable_expensive_passes': True}


def run_once(jitted, *args):
  """`jitted(*args)`, compiled for a single call: without the backend's expensive
  optimisations on a CPU (elsewhere as jit would)."""
  options = _RUN_ONCE_OPTIONS if jax.default_backend() == 'cpu' else None
  return jitted.lower(*args).compile(compiler_options=options)(*args)


def with_variables(state, tx, variables, sharding, frozen=frozenset()):
  """`state` with `variables` ({'params', 'batch_stats'}, host arrays) placed with
  `sharding`, and optimizer state initialised for their layers not in `frozen`."""
  def replace(state, variables):
    return state.replace(params=variables['params'], batch_stats=variables['batch_stats'],
                         opt_state=tx.init(transfer.split(variables['params'], frozen)[0]))
  return jax.jit(replace, out_shardings=sharding)(state, variables)


def model_input(images, normalization):
  """The model's float input: uint8 images (config device_normalize) are normalised
  here, inside the step, with the case's `normalization`; float images arrive
  normalised by the host pipeline."""
  if images.dtype != jnp.uint8:
    return images
  if normalization is None:
    raise ValueError('uint8 images need the normalization the step applies')
  return options.normalize(images.astype(jnp.float32), normalization)


def _apply(model, state, params, images, train, rng=None, normalization=None):
  """Logits, plus the updated batch_stats when training a model that has them."""
  images = model_input(images, normalization)
  variables = {'params': params}
  if state.batch_stats:
    variables['batch_stats'] = state.batch_stats
  if train and state.batch_stats:
    logits, updates = model.apply(variables, images, train=True, mutable=['batch_stats'],
                                  rngs={'dropout': rng})
    return logits, updates['batch_stats']
  rngs = {'dropout': rng} if train else {}
  return model.apply(variables, images, train=train, rngs=rngs), state.batch_stats


def _per_example(logits, labels, loss):
  """Loss and correctness (float32) per example."""
  logits = logits.astype(jnp.float32)  # the loss is always reduced in float32
  return (LOSSES[loss](logits, labels),
          (jnp.argmax(logits, -1) == labels).astype(jnp.float32))


def _metrics(logits, labels, loss):
  losses, correct = _per_example(logits, labels, loss)
  return {'loss': losses.mean(), 'accuracy': correct.mean()}


def _mean_over(axis_name, tree):
  """`tree` averaged over the devices of a pmap axis (unchanged without one)."""
  return lax.pmean(tree, axis_name) if axis_name else tree


def make_train_step(model, tx, frozen=frozenset(), loss='cross_entropy', axis_name=None,
                    normalization=None):
  """The train step; layers in `frozen` neither train nor update their BatchNorm
  statistics, and no gradient is computed for them (see bench/workload/transfer.py).

  With `axis_name` it is the per-device step of a pmap (bench/core/parallel.py): it
  sees this device's part of the batch, averages gradients and metrics over the
  axis, and its BatchNorm layers use the moments of the whole batch, so every
  device ends the step with the same state, the one a jit step computes.
  Dropout keys differ per device (folded with the device's index): the masks
  then differ from a jit step's, which draws one mask for the global batch.
  Every step normalises uint8 images with `normalization` (model_input).
  """
  def train_step(state, batch):
    rng = jax.random.fold_in(state.rng, state.step)
    if axis_name:
      rng = jax.random.fold_in(rng, lax.axis_index(axis_name))
    trainable, fixed = transfer.split(state.params, frozen)

    def loss_fn(trainable):
      with transfer.frozen_batchnorm(frozen), cross_device_batch_norm(axis_name):
        logits, batch_stats = _apply(model, state, {**fixed, **trainable}, batch['image'], True,
                                     rng, normalization)
      metrics = _metrics(logits, batch['label'], loss)
      return metrics['loss'], (metrics, batch_stats)

    grads, (metrics, batch_stats) = jax.grad(loss_fn, has_aux=True)(trainable)
    # Each device's loss is the mean over its equal share of the batch, so the
    # mean of their gradients is the gradient of the global batch's mean loss.
    grads, metrics = _mean_over(axis_name, (grads, metrics))
    updates, opt_state = tx.update(grads, state.opt_state, trainable)
    trainable = optax.apply_updates(trainable, updates)
    # Frozen statistics are passed through from the old state, not from the model's
    # output, so they stay bitwise what they were.
    batch_stats = {k: state.batch_stats[k] if k in frozen else v for k, v in batch_stats.items()}
    new_state = state.replace(step=state.step + 1, params={**fixed, **trainable},
                              batch_stats=batch_stats, opt_state=opt_state)
    return new_state, metrics
  return train_step


def make_eval_step(model, loss='cross_entropy', axis_name=None, normalization=None):
  def eval_step(state, batch):
    logits, _ = _apply(model, state, state.params, batch['image'], False,
                       normalization=normalization)
    return _mean_over(axis_name, _metrics(logits, batch['label'], loss))
  return eval_step


def make_forward(model, normalization=None):
  def forward(state, batch):
    logits, _ = _apply(model, state, state.params, batch['image'], False,
                       normalization=normalization)
    return logits
  return forward


def make_eval_sums(model, loss='cross_entropy', normalization=None):
  """Sums of loss and correct predictions over the examples of a batch whose 'mask' is
  set, and their count: padded examples count for nothing."""
  def eval_sums(state, batch):
    logits, _ = _apply(model, state, state.params, batch['image'], False,
                       normalization=normalization)
    losses, correct = _per_example(logits, batch['label'], loss)
    mask = batch['mask'].astype(jnp.float32)
    return {'loss': (losses * mask).sum(), 'correct': (correct * mask).sum(), 'count': mask.sum()}
  return eval_sums


def evaluate(eval_sums, state, batches):
  """Exact metrics over every masked-in example of `batches`: {'loss', 'accuracy',
  'num_examples'}. The per-batch sums stay on device until the end (no sync per
  batch) and are added on the host in float64."""
  sums = [eval_sums(state, batch) for batch in batches]
  totals = {key: sum(float(s[key]) for s in jax.device_get(sums)) for key in sums[0]}
  return {'loss': totals['loss'] / totals['count'],
          'accuracy': totals['correct'] / totals['count'],
          'num_examples': int(totals['count'])}
