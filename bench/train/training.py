"""train_and_evaluate: a case trained for epochs, with an exact evaluation after each.

Each epoch's steps run through the one timer (bench/measure/timer.py), so a training run
reports the same step-time distribution and data wait as a single timed step,
and its per-epoch wall time splits into train, eval and data wait. The loop
never blocks on the host per step: every step's loss stays on the device until
the epoch ends (or a checkpoint every N steps is due), then all are read at once.

An epoch whose loss is not finite ends the case as `diverged` at the first such
step; the suite goes on. Early stopping follows Keras's EarlyStopping exactly
(same patience and min_delta arithmetic) so a seed's run can be replayed.

Metrics go to TensorBoard (WORKDIR/metrics/CASE/) and to JSON lines
(WORKDIR/metrics/CASE.jsonl), one record per epoch; checkpoints for resuming to
WORKDIR/checkpoints/CASE/ (bench/train/checkpoints.py); the final weights to
WORKDIR/weights/CASE (an orbax checkpoint that init_from='orbax:...' and
bench.visualize read).
"""

import dataclasses
import os
import shutil
import time
from typing import Optional

from absl import logging
import jax
import numpy as np

from bench.core import interrupt
from bench.core import parallel
from bench.core.fileio import replace_dir
from bench.core.progress import Progress as ProgressBar
from bench.measure import timer
from bench.results import schema as report
from bench.train import checkpoints
from bench.train import trainer as trainer_lib
from bench.workload import build
from bench.workload import optimizers
from bench.workload import pretrained

CACHE_MODES = ('none', 'memory', 'disk')
# The case fields a run's metrics record as its hyperparameters.
HPARAMS = ('model', 'optimizer', 'learning_rate', 'batch_size', 'transfer', 'dtype')
MONITORED = ('train_loss', 'train_accuracy', 'eval_loss', 'eval_accuracy')
STOP_REASONS = ('completed', 'early_stopping', 'diverged')


class EarlyStopping:
  """Keras's EarlyStopping over per-epoch values (no baseline, no start epoch).

  `update(value)` after each epoch returns (improved, stop). An improvement is a
  value below best - min_delta ('min') or above best + min_delta ('max'); the
  first epoch always improves. Training stops after `patience` epochs in a row
  without one (never after the first epoch).
  """

  def __init__(self, metric, mode, patience, min_delta):
    if mode == 'auto':
      mode = 'max' if metric.endswith('accuracy') else 'min'
    self.mode, self.patience, self.min_delta = mode, patience, min_delta
    self.best, self.best_epoch, self.wait, self.epoch = None, None, 0, 0

  def update(self, value):
    self.epoch += 1
    self.wait += 1
    delta = self.min_delta if self.mode == 'max' else -self.min_delta
    if self.best is None or (value - delta > self.best if self.mode == 'max'
                             else value - delta < self.best):
      self.best, self.best_epoch, self.wait = value, self.epoch, 0
      return True, False
    return False, self.wait >= self.patience and self.epoch > 1


@dataclasses.dataclass
class Progress:
  """Everything of a run that is not the TrainState, as checkpoints store it (JSON).

  step: steps done; history: one row per finished epoch (HISTORY_KEYS); losses,
  accuracies, train_s: the current epoch's so far; samples, waits: every step's
  timer sample and data wait; stopper: EarlyStopping's fields; reason: why
  training ended ('' while it goes on); resumes: restarts from a checkpoint.
  """
  step: int = 0
  history: list = dataclasses.field(default_factory=list)
  losses: list = dataclasses.field(default_factory=list)
  accuracies: list = dataclasses.field(default_factory=list)
  train_s: float = 0.0
  samples: list = dataclasses.field(default_factory=list)
  waits: list = dataclasses.field(default_factory=list)
  stopper: Optional[dict] = None
  reason: str = ''
  diverged_at: Optional[int] = None
  resumes: int = 0


@dataclasses.dataclass(frozen=True)
class Trained:
  """What a training run measured, for bench/results/case_record.py's training and
  checkpoint blocks: its history (one row per epoch, HISTORY_KEYS), steps and examples
  per epoch and the examples of an epoch's last batch, why it stopped (STOP_REASONS),
  the step it diverged at, early stopping's best epoch, the seconds before the first
  step and those of a feature cache (and its bytes); its checkpoints' directory (their
  policy is the case's checkpoint_* fields), the step it resumed from, its resumes and
  saves (SAVE_KEYS rows), and where its final weights were exported."""
  history: list
  steps_per_epoch: int
  examples_per_epoch: int
  last_batch: int
  stop_reason: str
  diverged_at_step: Optional[int]
  best_epoch: Optional[int]
  setup_s: float
  feature_cache_s: Optional[float]
  feature_cache_bytes: Optional[int]
  checkpoint_directory: Optional[str]
  resumed_from_step: Optional[int]
  resumes: int
  saves: list
  export: Optional[str]


def _row(run, epoch, steps_per_epoch):
  """The history row of `epoch` from its steps in `run` so far; the caller adds the
  rest (losses, learning rate, evaluation)."""
  start = (epoch - 1) * steps_per_epoch
  row = dict.fromkeys(report.HISTORY_KEYS)
  row.update(epoch=epoch, steps=run.step - start, train_s=run.train_s,
             data_wait_s=float(np.sum(run.waits[start:])),
             step_time_median_s=float(np.median(run.samples[start:])))
  return row


def _export(workdir, name, variables, metadata):
  """The final weights as WORKDIR/weights/NAME (an orbax checkpoint of {'params',
  'batch_stats'}), replacing an earlier export only once the new one is complete."""
  directory = os.path.join(workdir, 'weights', name)
  fresh = f'{directory}.new'
  if parallel.is_primary():
    shutil.rmtree(fresh, ignore_errors=True)  # what an export killed midway left
  parallel.barrier(f'export {name}')
  # Every process takes part in orbax's save; the first one writes the files.
  pretrained.save_orbax(fresh, jax.device_get(variables), metadata)
  if parallel.is_primary():
    replace_dir(fresh, directory)
  parallel.barrier(f'exported {name}')
  return directory


def _scalars(row):
  return {k: v for k, v in row.items() if v is not None}


def train_and_evaluate(name, case, mesh, data, workdir, on_built=lambda built: None):
  """Trains `case` for its epochs, evaluating after each. Returns what it measured
  as case_record.assemble's keyword arguments: status ('ok', or 'diverged'), built,
  timed (every training step), trained, evaluation and final_metrics (of the final or
  restored best epoch) and fingerprint. `on_built(built)` hears what building measured,
  before compiling and again before training starts, so that a run that fails later
  still reports it.

  With checkpoints on, a rerun continues from the latest one exactly (see
  bench/train/checkpoints.py); a signal (bench/core/interrupt.py) saves one and raises
  interrupt.Interrupted.
  """
  # Imported here: feature caching needs the input pipeline, and so TensorFlow.
  from bench.train import feature_cache  # pylint: disable=import-outside-toplevel
  # An epoch is one pass over the train split: its full batches and, unless
  # drop_remainder, one smaller batch of what they leave (pipeline.Input.epoch).
  epoch = None if case.steps_per_epoch else data.epoch(case.train_split, case.drop_remainder)
  steps_per_epoch = case.steps_per_epoch or epoch[0] + bool(epoch[1])
  full, rest = epoch or (steps_per_epoch, 0)
  last_batch = rest * jax.process_count()  # the epoch's last step's examples; 0: a full one
  ckpt = (checkpoints.Checkpoints(os.path.join(workdir, 'checkpoints', name),
                                  case.checkpoint_keep, case.checkpoint_async)
          if case.checkpoint else None)
  found = {}

  def resume(target):
    latest = ckpt.restore_latest(target) if ckpt else None
    if latest is None:
      return None
    state, found['progress'] = latest
    return state

  try:
    t_setup = time.perf_counter()
    if case.cache_features != 'none':
      trainer = feature_cache.trainer(name, case, mesh, data, workdir, steps_per_epoch, resume,
                                      epoch, on_built)
    else:
      trainer = trainer_lib.image_trainer(case, mesh, data, steps_per_epoch, resume, epoch,
                                          on_built)
    setup_s = time.perf_counter() - t_setup
    on_built(trainer.built)
    run, resumed_from = Progress(), None
    stopper = (EarlyStopping(case.early_stop_metric, case.early_stop_mode,
                             case.early_stop_patience, case.early_stop_min_delta)
               if case.early_stop_metric else None)
    if 'progress' in found:
      saved = dict(found['progress'])
      ckpt.saves = saved.pop('saves')
      run = Progress(**saved)
      run.resumes += 1
      resumed_from = run.step
      if stopper:
        vars(stopper).update(run.stopper)
        if stopper.best_epoch:
          ckpt.best_step = stopper.best_epoch * steps_per_epoch
      logging.info('case %s: resuming from checkpoint step %d (epoch %d)%s', name, run.step,
                   len(run.history) + 1,
                   f'; it ended ({run.reason}), nothing is left to train' if run.reason else '')
    state = _train(name, case, trainer, run, stopper, ckpt, steps_per_epoch, last_batch, workdir)
    final = run.history[-1] if run.history else None
    if case.restore_best and stopper and stopper.best_epoch and run.reason != 'diverged':
      # Its checkpoint is on disk: the best step is exempt from checkpoint_keep.
      final = run.history[stopper.best_epoch - 1]
      state = ckpt.restore(stopper.best_epoch * steps_per_epoch, checkpoints.abstract(state))
  finally:
    if ckpt:
      ckpt.close()
  examples_per_epoch = full * case.batch_size + last_batch
  # Every epoch's last batch may be smaller; a run ends on an epoch's end or inside its
  # full batches.
  epochs, steps = divmod(len(run.samples), steps_per_epoch)
  train_s = sum(row['train_s'] or 0.0 for row in run.history)  # the training block's train_s
  timed = build.timed(case, run.samples, run.waits, train_s, warmup_steps=0,
                      timed_steps=len(run.samples),
                      examples=epochs * examples_per_epoch + steps * case.batch_size)
  final_metrics = evaluation = None
  if final is not None and run.reason != 'diverged':
    final_metrics = build.Metrics(final['train_loss'], final['train_accuracy'])
  if trainer.evaluate and final is not None and final['eval_s'] is not None:
    evaluation = build.Metrics(final['eval_loss'], final['eval_accuracy'], case.eval_split,
                               data.check(case.eval_split, False), final['eval_s'])
  variables = trainer.variables(state)
  fingerprint = checkpoints.fingerprint(variables)
  export = None
  if case.checkpoint and run.reason != 'diverged':
    export = _export(workdir, name, variables, {'case': name, 'epochs_run': len(run.history),
                                                'step': run.step, 'fingerprint': fingerprint})
  trained = Trained(
      run.history, steps_per_epoch, examples_per_epoch, last_batch, run.reason, run.diverged_at,
      stopper.best_epoch if stopper else None, setup_s, trainer.feature_cache_s,
      trainer.feature_cache_bytes, ckpt.directory if ckpt else None, resumed_from, run.resumes,
      ckpt.saves if ckpt else [], export)
  return dict(status='diverged' if run.reason == 'diverged' else 'ok', built=trainer.built,
              timed=timed, trained=trained, evaluation=evaluation, final_metrics=final_metrics,
              fingerprint=fingerprint)


def _train(name, case, trainer, run, stopper, ckpt, steps_per_epoch, last_batch, workdir):
  """The epoch loop, from `run` on: updates `run` and returns the final state. Each
  epoch's last step sees `last_batch` examples (0: a full batch)."""
  lr = optimizers.schedule(case, build.total_steps(case, steps_per_epoch))
  # Imported here: clu's TensorBoard writer imports TensorFlow (seconds), which no
  # other kind of case needs.
  from bench.train import metric_writers  # pylint: disable=import-outside-toplevel
  writer = metric_writers.open_writers(
      workdir, name, {key: case[key] for key in HPARAMS},
      [(row['epoch'], _scalars(row)) for row in run.history])
  bar = ProgressBar(case.epochs * steps_per_epoch, f'{name} training')
  state = trainer.state

  def save(reason, best=False):
    run.stopper = dict(vars(stopper)) if stopper else None
    ckpt.save(run.step, len(run.history), reason, state,
              lambda saves: {**dataclasses.asdict(run), 'saves': saves}, best=best)

  every = case.checkpoint_every_steps if ckpt else 0
  try:
    with interrupt.deferred():
      while not run.reason:
        epoch = len(run.history) + 1
        epoch_end = epoch * steps_per_epoch
        until = min(epoch_end, (run.step // every + 1) * every) if every else epoch_end
        outs = []

        def collecting(state, batch):
          state, out = trainer.step(state, batch)
          outs.append(out)
          interrupt.fault('step', run.step + len(outs))
          return state, out

        t0 = time.perf_counter()
        state, _, samples, waits = timer.time_steps(
            collecting, state, trainer.batches, warmup_steps=0, timed_steps=until - run.step,
            sync=case.sync, on_sample=lambda i, done=run.step: bar.update(done + i),
            stop=interrupt.local_stop())
        run.train_s += time.perf_counter() - t0
        metrics = jax.device_get(outs)
        losses = [float(m['loss']) for m in metrics]
        run.samples += samples
        run.waits += waits
        bad = np.flatnonzero(~np.isfinite(losses))
        if bad.size:
          # The row keeps no loss: a non-finite one has no place in strict JSON.
          run.reason, run.diverged_at = 'diverged', run.step + int(bad[0]) + 1
          run.step += len(samples)
          run.history.append(_row(run, epoch, steps_per_epoch))
          logging.warning('case %s diverged: loss %s at step %d (epoch %d)', name,
                          losses[bad[0]], run.diverged_at, epoch)
          break
        run.step += len(samples)
        run.losses += losses
        run.accuracies += [float(m['accuracy']) for m in metrics]
        if run.step == epoch_end:
          improved = _end_epoch(name, case, trainer, run, stopper, state, lr, writer, epoch,
                                steps_per_epoch, last_batch)
          if ckpt and (run.reason or improved or (case.checkpoint_every_epochs and
                                                   epoch % case.checkpoint_every_epochs == 0)):
            save('end' if run.reason else 'best' if improved else 'epoch', best=improved)
        elif every and run.step % every == 0:
          save('steps')
        signum = interrupt.agreed()
        if signum and not run.reason:
          if ckpt:
            save('preemption')
            ckpt.wait()
          raise interrupt.Interrupted(
              signum, f'case {name} interrupted at step {run.step}: '
              + (f'checkpoint in {ckpt.directory}; rerun the same command to resume' if ckpt
                 else 'checkpoint=False, so a rerun starts the case again'))
  finally:
    bar.close()
    writer.close()
  return state


def _end_epoch(name, case, trainer, run, stopper, state, lr, writer, epoch, steps_per_epoch,
               last_batch):
  """Closes epoch `epoch`: its history row, evaluation, metrics and early stopping.
  Sets run.reason if training ends here; returns whether the monitored metric improved."""
  row = _row(run, epoch, steps_per_epoch)
  # Means over the epoch's examples, as Keras's: a smaller last batch weighs less.
  weights = [case.batch_size] * len(run.losses)
  if last_batch:
    weights[-1] = last_batch
  row.update(learning_rate=float(lr(run.step - 1)),
             train_loss=float(np.average(run.losses, weights=weights)),
             train_accuracy=float(np.average(run.accuracies, weights=weights)))
  run.losses, run.accuracies, run.train_s = [], [], 0.0
  if trainer.evaluate:
    t0 = time.perf_counter()
    evaluation = trainer.evaluate(state)
    row.update(eval_loss=build.finite(evaluation['loss']),
               eval_accuracy=build.finite(evaluation['accuracy']),
               eval_s=time.perf_counter() - t0)
  run.history.append(row)
  writer.write_scalars(epoch, _scalars(row))
  writer.flush()
  logging.info('%s epoch %d/%d: train loss %.4g, eval accuracy %s, %.1f s train + %s eval',
               name, epoch, case.epochs, row['train_loss'],
               'n/a' if row['eval_accuracy'] is None else f'{row["eval_accuracy"]:.4f}',
               row['train_s'], 'n/a' if row['eval_s'] is None else f'{row["eval_s"]:.1f} s')
  improved = False
  if stopper:
    improved, stop = stopper.update(row[case.early_stop_metric])
    if stop:
      run.reason = 'early_stopping'
  if not run.reason and epoch == case.epochs:
    run.reason = 'completed'
  return improved
