"""A case's input: tf.data on the host, then batches prefetched onto the devices.

Host side, in each process (on several hosts each reads its own even part of the
split, `tfds.even_splits`, and builds its share of the global batch):

  read (files shuffled) -> shuffle buffer -> repeat -> preprocess (parallel,
  deterministic order) -> batch (training drops the remainder) -> prefetch

tf.data runs on a private thread pool of `config.data_threads` threads (0: one
per core this process may use), with AUTOTUNE choosing each stage's parallelism
and buffer within it; the report's dataset block records both depths. With
`config.device_normalize` the images stay uint8 until the step normalises them.

Device side, `device_prefetch` keeps `config.prefetch` batches already
transferred and sharded over the data-parallel devices, so the transfer of
batch k+1 overlaps step k. The host fetches from this iterator; the timer
records how long the device idled while it did (bench/measure/timer.py, data wait).

Evaluation reads the split once, in order, and pads the last batch with masked
examples: every eval batch has the same shape (one compile), and metrics
weighted by the mask are over exactly the split's examples, whatever the batch
size, device and process count.

TF runs on the CPU only: it must not take the accelerators' memory from JAX.
"""

import collections
import itertools
import math
import os

import jax
import tensorflow as tf
import tensorflow_datasets as tfds

from bench.core import parallel
from bench.core.errors import UserError
from input_pipeline import datasets
from input_pipeline import preprocess

tf.config.set_visible_devices([], 'GPU')


def device_prefetch(host_batches, sharding, size, layout=lambda x: x):
  """Yields the host batches as global jax.Arrays with `sharding`, `size` transfers ahead.

  Each host batch is this process's share; together the processes' shares form
  the global batch. `layout` reshapes each array first (pmap's device axis).
  """
  def put(batch):
    return jax.tree.map(
        lambda x: jax.make_array_from_process_local_data(sharding, layout(x)), batch)

  queue = collections.deque()

  def enqueue(n):
    for batch in itertools.islice(host_batches, n):
      queue.append(put(batch))

  enqueue(size)
  while queue:
    yield queue.popleft()
    enqueue(1)


def _element(k, element):
  """An enumerated element without its index."""
  del k
  return element


class Input:
  """The data of one case (`case.dataset`, not 'synthetic'), on `sharding`'s devices."""

  def __init__(self, case, sharding):
    self.case = case
    self.sharding = sharding
    self.source = datasets.open_source(case.dataset, case.data_dir, case.download)
    self.per_process = case.batch_size // jax.process_count()
    self.threads = case.data_threads or len(os.sched_getaffinity(0))

  def _options(self, ds):
    """`ds` on the case's private thread pool, its parallelism autotuned within it."""
    options = tf.data.Options()
    options.threading.private_threadpool_size = self.threads
    options.autotune.enabled = True
    return ds.with_options(options)

  def _parts(self, split):
    """Each process's part of `split` and its number of examples."""
    self.source.num_examples(split)  # a UserError naming the split if it is not valid
    parts = tfds.even_splits(split, n=jax.process_count(), drop_remainder=False)
    counts = [self.source.splits[part].num_examples for part in parts]
    return parts[jax.process_index()], counts

  def check(self, split, full_batches):
    """Number of examples in `split`; UserError if it is invalid, or if `full_batches`
    and some process's part has less than one batch (training drops the remainder)."""
    _, counts = self._parts(split)
    if full_batches and min(counts) < self.per_process:
      raise UserError(f'dataset {self.source.name}: split {split!r} has {min(counts)} examples '
                      f'per process, fewer than one batch of {self.per_process}; use a smaller '
                      f'batch_size or a larger split')
    return sum(counts)

  def epoch(self, split, drop_remainder=False):
    """(full batches, examples of this process in one last smaller batch) of an epoch:
    one pass over `split`. The smallest process part decides, so every process runs
    the same steps. The last batch holds what the full ones leave, rounded down to a
    multiple of this process's devices (a batch is split evenly over them); 0 with
    `drop_remainder`, or when nothing is left."""
    _, counts = self._parts(split)
    full = min(counts) // self.per_process
    rest = 0 if drop_remainder else min(counts) - full * self.per_process
    return full, rest - rest % (self.sharding.mesh.size // jax.process_count())

  def example_ids(self, split):
    """The ids of this process's part of `split`, in the order `evaluation` reads it."""
    part, _ = self._parts(split)
    ids = self.source.read(part, shuffle=False, seed=0).map(lambda ex: ex['id'])
    return list(ids.as_numpy_iterator())

  def _training_order(self, split):
    """This process's examples of `split` as training reads them: files and a buffer
    shuffled with the case's seed, repeated. Every stream of a split with the same
    seed sees its examples in the same order."""
    case = self.case
    part, _ = self._parts(split)
    ds = self.source.read(part, shuffle=True, seed=case.seed)
    return ds.shuffle(case.shuffle_buffer, seed=case.seed, reshuffle_each_iteration=True).repeat()

  def _training_batches(self, split, examples, start, epoch):
    """Batches of `examples` (this process's training order of `split`, enumerated:
    (k, example) -> (k, element)), from batch `start` on.

    Without an `epoch` (timed steps, or steps_per_epoch set) batches of per_process
    run on across the passes, dropping none. With one, each pass is an epoch: its
    `full` batches, then (`rest` > 0) its next `rest` examples as one batch; what is
    left beyond them (drop_remainder, an uneven process part, the rounding to the
    devices) is not read. A resumed run reads the same remaining batches, in the
    same order, as the run it continues: the shuffles are seeded, so only the
    skipped examples' records are read again (not decoded or preprocessed).
    """
    size = self.per_process
    if epoch is None:
      return examples(self._training_order(split).enumerate().skip(start * size)).map(
          _element).batch(size, drop_remainder=True)
    full, rest = epoch
    _, counts = self._parts(split)
    part, steps, kept = counts[jax.process_index()], full + bool(rest), full * size + rest
    ds = self._training_order(split).enumerate().skip(
        start // steps * part + start % steps * size).filter(lambda k, _: k % part < kept)
    # Consecutive examples of one batch share a key; the last batch of a pass is
    # complete at `rest` examples.
    return examples(ds).group_by_window(
        key_func=lambda k, _: k // part * steps + k % part // size,
        reduce_func=lambda _, window: window.map(_element).batch(size),
        window_size_func=lambda key: tf.where(key % steps < full, tf.constant(size, tf.int64),
                                              tf.constant(rest, tf.int64)))

  def cached_stream(self, split, ids, features, labels, start=0, epoch=None):
    """Endless device batches {'image': features row, 'label'} in the training order
    of `split`, from batch `start` on, each `epoch` (see `epoch`) ending in its
    smaller batch: row i of `features` (an array or np.memmap) and `labels` belongs
    to example ids[i]. The images are not decoded; only their ids are looked up."""
    table = tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(tf.constant(ids), tf.range(len(ids), dtype=tf.int64)),
        default_value=-1)
    rows = self._training_batches(
        split, lambda ds: ds.map(lambda k, ex: (k, table.lookup(ex['id']))), start, epoch)
    rows = self._options(rows.prefetch(tf.data.AUTOTUNE))
    host = ({'image': features[r], 'label': labels[r]} for r in rows.as_numpy_iterator())
    return device_prefetch(host, self.sharding, self.case.prefetch, self._layout)

  def _layout(self, x):
    """Timed steps read batches in the case's layout; evaluation always in jit's."""
    return parallel.layout(self.case, self.sharding.mesh.size // jax.process_count(), x)

  def _preprocess(self, training):
    case = self.case
    return preprocess.make(tuple(case.image_shape), resize=case.resize, augment=case.augment,
                           normalization=case.normalization, training=training,
                           on_device=case.device_normalize)

  def stream(self, split, training, start=0, epoch=None):
    """Endless device batches of `split` from batch `start` on: shuffled and augmented
    when `training`, each `epoch` (see `epoch`, training only) ending in its smaller
    batch."""
    case = self.case
    part, _ = self._parts(split)
    fn = self._preprocess(training)
    processes, me = jax.process_count(), jax.process_index()

    def examples(ds):
      # Example k of this process gets seed (seed, global index): no two examples, in
      # any process or epoch, share their random crop and flip.
      return ds.map(
          lambda k, ex: (k, {'image': fn(ex['image'], tf.stack([case.seed, k * processes + me])),
                             'label': tf.cast(ex['label'], tf.int32)}),
          num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)

    if training:
      ds = self._training_batches(split, examples, start, epoch)
    else:
      ds = examples(self.source.read(part, shuffle=False, seed=case.seed).repeat().enumerate()
                    .skip(start * self.per_process)).map(_element).batch(
                        self.per_process, drop_remainder=True)
    ds = self._options(ds.prefetch(tf.data.AUTOTUNE))
    return device_prefetch(ds.as_numpy_iterator(), self.sharding, case.prefetch, self._layout)

  def evaluation(self, split):
    """(device batches of one pass over `split`, with a 'mask', number of examples)."""
    part, counts = self._parts(split)
    mine = counts[jax.process_index()]
    # Every process runs the same number of batches: the collective steps match.
    num_batches = math.ceil(max(counts) / self.per_process)
    fn = self._preprocess(training=False)
    image_shape = tuple(self.case.image_shape)
    ds = tf.data.Dataset.from_tensors({
        'image': tf.zeros(image_shape, tf.uint8 if self.case.device_normalize else tf.float32),
        'label': tf.constant(0, tf.int32),
        'mask': False}).repeat(num_batches * self.per_process - mine)
    if mine:  # a small split can leave a process nothing to read but padding
      examples = self.source.read(part, shuffle=False, seed=0)
      examples = examples.apply(tf.data.experimental.assert_cardinality(mine)).map(
          lambda ex: {'image': fn(ex['image'], tf.constant([0, 0], tf.int64)),
                      'label': tf.cast(ex['label'], tf.int32), 'mask': True},
          num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
      ds = examples.concatenate(ds)
    ds = self._options(ds.batch(self.per_process).prefetch(tf.data.AUTOTUNE))
    return device_prefetch(ds.as_numpy_iterator(), self.sharding, self.case.prefetch), sum(counts)

  def describe(self):
    """The report's `dataset` block (see bench/results/schema.py)."""
    case = self.case
    return {
        'name': self.source.name,
        'location': self.source.location,
        'num_classes': self.source.num_classes,
        'train_examples': self.check(case.train_split, full_batches=False),
        'eval_examples': (self.check(case.eval_split, full_batches=False)
                          if case.eval_split else None),
        'ignored_files': self.source.ignored_files,
        'threads': self.threads,
        'prefetch': case.prefetch,
    }

