"""Training checkpoints (orbax CheckpointManager) and state fingerprints.

A training case's checkpoints live in WORKDIR/checkpoints/CASE/STEP/, each with
two items:
  state     the TrainState: parameters, BatchNorm statistics, optimizer state,
            step and dropout key (its raw key data: orbax stores plain arrays);
  progress  JSON of the rest of the loop (bench/train/training.py): epoch history, the
            current epoch's losses so far, early-stopping state, every timer
            sample, earlier saves. The input pipeline's position is the state's
            step: a resumed stream skips that many batches.

Saves are asynchronous: `save` returns once the arrays are copied off the
devices, and orbax writes them in a background thread while training goes on.
Each save records how long training was blocked (including any wait for the
previous save) and how long the save took in all. Orbax writes into a temporary
directory and renames it when complete, so a save killed midway leaves no step
directory; a step directory that still cannot be read (a truncated file) is
skipped with a warning, moved to CASE.unreadable/, and the previous one restored.

The last `keep` checkpoints are kept, plus the best one (`best_step`: the end
of the early-stopping metric's best epoch, which `restore_best` reloads).
"""

import hashlib
import os
import shutil
import time

from absl import logging
import jax
import numpy as np

from bench.core import interrupt
from bench.core import parallel
from bench.core.errors import UserError
from bench.workload import pretrained

STATE, PROGRESS = 'state', 'progress'
# Errors that are not a damaged checkpoint. Reading one raises file, JSON and
# tensorstore errors, which orbax rewraps as plain Exceptions: the rest are those.
_NOT_DAMAGE = (UserError, TypeError, AttributeError, NameError, AssertionError)


def _path_str(path):
  """'params/Conv_0/kernel' for a key path (dict keys, attributes, sequence indices)."""
  return '/'.join(str(getattr(k, 'key', getattr(k, 'name', getattr(k, 'idx', k)))) for k in path)


def _flat(tree):
  return {_path_str(path): leaf for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}


def fingerprint(variables):
  """sha256 (hex) of a model's variables: every leaf's path, dtype, shape and bytes,
  in path order. Equal fingerprints mean bitwise equal weights and statistics."""
  digest = hashlib.sha256()
  for path, leaf in sorted(_flat(jax.device_get(variables)).items()):
    array = np.ascontiguousarray(leaf)
    digest.update(f'{path}|{array.dtype.str}|{array.shape}|'.encode())
    digest.update(array.tobytes())
  return digest.hexdigest()


def abstract(tree):
  """ShapeDtypeStructs of `tree`'s arrays, with their shardings."""
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), tree)


def _storable(state):
  """The TrainState with its typed PRNG key as raw key data (concrete or abstract)."""
  rng = state.rng
  if isinstance(rng, jax.ShapeDtypeStruct):
    data = jax.eval_shape(jax.random.key_data, rng)
    return state.replace(rng=jax.ShapeDtypeStruct(data.shape, data.dtype, sharding=rng.sharding))
  return state.replace(rng=jax.random.key_data(rng))


class _KeepBest:
  """Orbax preservation policy: keeps `owner.best_step`."""

  def __init__(self, owner):
    self._owner = owner

  def should_preserve(self, checkpoints, *, context):
    del context
    return [info.step == self._owner.best_step for info in checkpoints]


class Checkpoints:
  """One training case's checkpoints in `directory` (see the module docstring)."""

  def __init__(self, directory, keep, asynchronous):
    import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top  (slow import)
    self._ocp = ocp
    self.directory = os.path.abspath(directory)
    # {'step', 'epoch', 'reason', 'blocking_s', 'total_s'} per save, oldest first; a
    # resumed run starts with the saves of the runs before it.
    self.saves = []
    self._in_flight = None  # (save record, start time) of the async save being written
    self._asynchronous = asynchronous
    self.best_step = None  # kept by the preservation policy; a resumed run sets it again
    policies = ocp.checkpoint_managers
    options = ocp.CheckpointManagerOptions(
        enable_async_checkpointing=asynchronous,
        cleanup_tmp_directories=True,  # what a save killed midway left
        preservation_policy=policies.AnyPreservationPolicy([
            policies.LatestN(n=keep), _KeepBest(self)]),
        async_options=(ocp.AsyncOptions(post_finalization_callback=self._finished)
                       if asynchronous else None))
    self._manager = ocp.CheckpointManager(
        self.directory, options=options,
        item_handlers={STATE: ocp.StandardCheckpointHandler(),
                       PROGRESS: ocp.JsonCheckpointHandler()})

  def _finished(self):
    """Called by orbax's writer thread when a save's files are complete."""
    record, start = self._in_flight
    record['total_s'] = time.perf_counter() - start

  def save(self, step, epoch, reason, state, progress, best=False):
    """Starts saving `state` and `progress(saves)` (JSON; `saves` lists every save up
    to this one) as checkpoint `step`, after `epoch` finished epochs; returns as soon
    as training may go on. `best`: this is now the best checkpoint, kept whatever
    its age. A step already saved is not saved again."""
    if best:
      self.best_step = step
    if step in self._manager.all_steps():
      return
    start = time.perf_counter()
    self._manager.wait_until_finished()  # the previous save: training waits for it too
    record = {'step': step, 'epoch': epoch, 'reason': reason, 'blocking_s': None,
              'total_s': None}
    self._in_flight = (record, start)
    # This save is listed in its own progress without times: a run resumed from it
    # reports the save, but its times went with the process that measured them.
    saves = [dict(save) for save in self.saves + [record]]
    args = self._ocp.args.Composite(**{
        STATE: self._ocp.args.StandardSave(_storable(state)),
        PROGRESS: self._ocp.args.JsonSave(progress(saves))})
    self._manager.save(step, args=args, force=True)
    record['blocking_s'] = time.perf_counter() - start
    if not self._asynchronous:
      record['total_s'] = record['blocking_s']
    self.saves.append(record)
    interrupt.fault('save', step)

  def wait(self):
    """Blocks until the last save is on disk."""
    self._manager.wait_until_finished()

  def close(self):
    self._manager.wait_until_finished()
    self._manager.close()

  def _discard(self, step, error):
    """Moves unreadable checkpoint `step` out of the way (to DIRECTORY.unreadable/)."""
    aside = os.path.join(f'{self.directory}.unreadable', str(step))
    logging.warning('checkpoint %s/%d cannot be read (%s: %s); moved to %s, trying the one '
                    'before', self.directory, step, type(error).__name__, str(error)[:300], aside)
    if parallel.is_primary():
      shutil.rmtree(aside, ignore_errors=True)
      os.makedirs(os.path.dirname(aside), exist_ok=True)
      os.replace(os.path.join(self.directory, str(step)), aside)
    parallel.barrier(f'discard {self.directory}/{step}')
    self._manager.reload()

  def _check_shapes(self, step, target):
    """UserError if checkpoint `step` holds other variables than `target` (abstract)."""
    stored = self._manager.item_metadata(step)[STATE]
    def layout(tree):
      return {k: (tuple(v.shape), np.dtype(v.dtype)) for k, v in _flat(tree).items()}
    for part in ('params', 'batch_stats'):
      ours, theirs = layout(getattr(target, part)), layout(stored[part])
      if ours == theirs:
        continue
      where = f'checkpoint {self.directory}/{step} holds a different model'
      fix = 'pass --restart to start this workdir over, or use another --workdir'
      differing = sorted(k for k in ours.keys() & theirs.keys() if ours[k] != theirs[k])
      if differing:
        k = differing[0]
        raise UserError(f'{where}: {part}/{k} is {theirs[k][1]}{list(theirs[k][0])} there and '
                        f'{ours[k][1]}{list(ours[k][0])} here; {fix}')
      k = sorted(ours.keys() ^ theirs.keys())[0]
      only = 'checkpoint' if k in theirs else 'case'
      raise UserError(f'{where}: {part}/{k} is only in the {only}; {fix}')

  def _restore(self, step, target):
    restored = self._manager.restore(step, args=self._ocp.args.Composite(**{
        STATE: self._ocp.args.StandardRestore(_storable(target)),
        PROGRESS: self._ocp.args.JsonRestore()}))
    # Orbax gives back containers of its own choosing: refill the target's structure.
    leaves = jax.tree.leaves(restored[STATE])
    state = jax.tree.unflatten(jax.tree.structure(_storable(target)), leaves)
    return state.replace(rng=jax.random.wrap_key_data(state.rng)), restored[PROGRESS]

  def restore_latest(self, target):
    """(state, progress) of the latest readable checkpoint, placed as `target` (a
    TrainState of ShapeDtypeStructs with the current shardings, so a checkpoint
    written on another device count fits), or None if there is none. UserError if
    it holds a different model."""
    for step in sorted(self._manager.all_steps(), reverse=True):
      try:
        self._check_shapes(step, target)
        # Damage found by reading every value in turn, before orbax restores (a second
        # read, from the page cache): orbax's own failed restore leaves coroutines that
        # print "Exception ignored" tracebacks (pretrained.read_every_value).
        pretrained.read_every_value(os.path.join(self.directory, str(step), STATE))
        return self._restore(step, target)
      except Exception as e:  # pylint: disable=broad-except
        if isinstance(e, _NOT_DAMAGE):
          raise
        self._discard(step, e)  # a truncated or missing file: fall back to the one before
    return None

  def restore(self, step, target):
    """The state of checkpoint `step` (which must be readable), placed as `target`."""
    return self._restore(step, target)[0]
