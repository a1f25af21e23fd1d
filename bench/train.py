"""train_and_evaluate: a case trained for epochs, with an exact evaluation after each.

Each epoch's steps run through the one timer (bench/timer.py), so a training run
reports the same step-time distribution and data wait as a single timed step,
and its per-epoch wall time splits into train, eval and data wait. The loop
never blocks on the host per step: every step's loss stays on the device until
the epoch ends, then all are read at once.

An epoch whose loss is not finite ends the case as `diverged` at the first such
step; the suite goes on. Early stopping follows Keras's EarlyStopping exactly
(same patience and min_delta arithmetic) so a seed's run can be replayed.

Metrics go to TensorBoard (WORKDIR/metrics/CASE/) and to JSON lines
(WORKDIR/metrics/CASE.jsonl), one record per epoch; the final weights to
WORKDIR/checkpoints/CASE (an orbax checkpoint that init_from='orbax:...' and
bench.visualize read).
"""

import dataclasses
import json
import os
import shutil
import time
from typing import Callable, Optional

from absl import logging
from clu import metric_writers
import jax
import jax.numpy as jnp
import numpy as np

from bench import build
from bench import optimizers
from bench import pretrained
from bench import timer
from bench.fileio import atomic_write_text
from bench.progress import Progress

CACHE_MODES = ('none', 'memory', 'disk')
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


class JsonlWriter(metric_writers.MetricWriter):
  """clu MetricWriter of one JSON object per write: {"step": k, name: value, ...}.

  The whole file is rewritten atomically on flush, so it is always complete.
  Scalars, texts and hyperparameters are kept; arrays (images, histograms, audio,
  video) belong in TensorBoard, which the MultiWriter next to this one receives.
  """

  def __init__(self, path):
    self._path, self._lines = path, []

  def write_scalars(self, step, scalars):
    self._lines.append(json.dumps({'step': int(step), **{k: float(v) for k, v in scalars.items()}}))

  def write_texts(self, step, texts):
    self._lines.append(json.dumps({'step': int(step), **texts}))

  def write_hparams(self, hparams):
    self._lines.append(json.dumps({'hparams': dict(hparams)}, default=str))

  def write_summaries(self, step, values, metadata=None):
    del step, values, metadata

  def write_images(self, step, images):
    del step, images

  def write_videos(self, step, videos):
    del step, videos

  def write_audios(self, step, audios, *, sample_rate):
    del step, audios, sample_rate

  def write_histograms(self, step, arrays, num_buckets=None):
    del step, arrays, num_buckets

  def flush(self):
    atomic_write_text(self._path, ''.join(line + '\n' for line in self._lines))

  def close(self):
    self.flush()


@dataclasses.dataclass
class Trainer:
  """What the epoch loop drives: `step(state, batch) -> (state, metrics)` compiled,
  its state and endless batches, `evaluate(state)` -> {'loss', 'accuracy',
  'num_examples'} (None without an eval split), and `variables(state)` -> the full
  model's {'params', 'batch_stats'} (a cached-feature trainer holds only the head)."""
  step: Callable
  state: object
  batches: object
  evaluate: Optional[Callable]
  variables: Callable


def image_trainer(case, mesh, record, data, steps_per_epoch):
  """A Trainer over the case's images (or synthetic batches)."""
  step, state, batches = build.build(case, mesh, record, data, steps_per_epoch)
  evaluate = build.evaluator(case, data) if case.eval_split else None
  return Trainer(step, state, batches, evaluate,
                 lambda s: {'params': s.params, 'batch_stats': s.batch_stats})


def _empty_row(epoch):
  return {'epoch': epoch, 'steps': 0, 'train_loss': None, 'train_accuracy': None,
          'eval_loss': None, 'eval_accuracy': None, 'train_s': None, 'eval_s': None,
          'data_wait_s': None, 'step_time_median_s': None, 'learning_rate': None}


def _summary(history, reason, diverged_at, stopper, steps_per_epoch, samples):
  complete = [row for row in history if row['train_s'] is not None]

  def best(key, pick):
    values = [row[key] for row in history if row[key] is not None]
    return pick(values) if values else None

  return {
      'epochs_run': len(history),
      'steps_run': sum(row['steps'] for row in history),
      'steps_per_epoch': steps_per_epoch,
      'stop_reason': reason,
      'diverged_at_step': diverged_at,
      'best_epoch': stopper.best_epoch if stopper else None,
      'min_train_loss': best('train_loss', min),
      'min_eval_loss': best('eval_loss', min),
      'best_eval_accuracy': best('eval_accuracy', max),
      'train_s': sum(row['train_s'] or 0.0 for row in history),
      'eval_s': sum(row['eval_s'] or 0.0 for row in history),
      'data_wait_s': sum(row['data_wait_s'] or 0.0 for row in history),
      'mean_step_s': float(np.mean(samples)) if samples else None,
      'epoch_s': (float(np.mean([row['train_s'] for row in complete])) if complete else None),
  }


def _save(workdir, name, variables, metadata):
  directory = os.path.join(workdir, 'checkpoints', name)
  # A rerun replaces the earlier run's weights (orbax will not write over them).
  if os.path.exists(directory):
    shutil.rmtree(directory)
  pretrained.save_orbax(directory, jax.device_get(variables), metadata)
  return directory


def _writer(workdir, name):
  os.makedirs(os.path.join(workdir, 'metrics'), exist_ok=True)
  return metric_writers.MultiWriter([
      metric_writers.SummaryWriter(os.path.join(workdir, 'metrics', name)),
      JsonlWriter(os.path.join(workdir, 'metrics', f'{name}.jsonl'))])


def train_and_evaluate(name, case, mesh, record, data, workdir):
  """Trains `case` for its epochs, evaluating after each; fills record['training']
  (and the step-time, data-wait, eval and final-metric blocks). Returns the case's
  status: 'ok', or 'diverged'."""
  # Imported here: feature caching needs the input pipeline, and so TensorFlow.
  from bench import feature_cache  # pylint: disable=import-outside-toplevel
  steps_per_epoch = case.steps_per_epoch or data.steps_per_epoch(case.train_split)
  t_setup = time.perf_counter()
  if case.cache_features != 'none':
    trainer = feature_cache.trainer(name, case, mesh, record, data, workdir, steps_per_epoch)
  else:
    trainer = image_trainer(case, mesh, record, data, steps_per_epoch)
  setup_s = time.perf_counter() - t_setup
  lr = optimizers.schedule(case, build.total_steps(case, steps_per_epoch))
  stopper = (EarlyStopping(case.early_stop_metric, case.early_stop_mode,
                           case.early_stop_patience, case.early_stop_min_delta)
             if case.early_stop_metric else None)
  writer = _writer(workdir, name)
  writer.write_hparams({key: case[key] for key in ('model', 'optimizer', 'learning_rate',
                                                   'batch_size', 'transfer', 'dtype')})
  progress = Progress(case.epochs * steps_per_epoch, f'{name} training')
  state, best_state, best_eval = trainer.state, None, None
  history, samples_all, waits_all = [], [], []
  reason, diverged_at, done = 'completed', None, 0
  try:
    for epoch in range(1, case.epochs + 1):
      outs = []

      def collecting(state, batch):
        state, out = trainer.step(state, batch)
        outs.append(out)
        return state, out

      t0 = time.perf_counter()
      state, _, samples, waits = timer.time_steps(
          collecting, state, trainer.batches, warmup_steps=0, timed_steps=steps_per_epoch,
          sync=case.sync, on_sample=lambda i, done=done: progress.update(done + i))
      row = _empty_row(epoch)
      row.update(steps=steps_per_epoch, train_s=time.perf_counter() - t0,
                 data_wait_s=float(np.sum(waits)), step_time_median_s=float(np.median(samples)),
                 learning_rate=float(lr(done + steps_per_epoch - 1)))
      samples_all += samples
      waits_all += waits
      metrics = jax.device_get(outs)
      losses = np.array([m['loss'] for m in metrics], np.float64)
      bad = np.flatnonzero(~np.isfinite(losses))
      if bad.size:
        # The row keeps no loss: a non-finite one has no place in strict JSON.
        reason, diverged_at = 'diverged', done + int(bad[0]) + 1
        history.append(row)
        logging.warning('case %s diverged: loss %s at step %d (epoch %d)', name,
                        losses[bad[0]], diverged_at, epoch)
        break
      done += steps_per_epoch
      row.update(train_loss=float(losses.mean()),
                 train_accuracy=float(np.mean([m['accuracy'] for m in metrics])))
      if trainer.evaluate:
        t0 = time.perf_counter()
        evaluation = trainer.evaluate(state)
        row.update(eval_loss=build.finite(evaluation['loss']),
                   eval_accuracy=build.finite(evaluation['accuracy']),
                   eval_s=time.perf_counter() - t0)
      history.append(row)
      writer.write_scalars(epoch, {k: v for k, v in row.items() if v is not None})
      writer.flush()
      logging.info('%s epoch %d/%d: train loss %.4g, eval accuracy %s, %.1f s train + %s eval',
                   name, epoch, case.epochs, row['train_loss'],
                   'n/a' if row['eval_accuracy'] is None else f'{row["eval_accuracy"]:.4f}',
                   row['train_s'], 'n/a' if row['eval_s'] is None else f'{row["eval_s"]:.1f} s')
      if stopper:
        improved, stop = stopper.update(row[case.early_stop_metric])
        if improved:
          best_eval = row
          if case.restore_best:  # a copy: the next step donates `state`'s buffers
            best_state = jax.tree.map(jnp.copy, state)
        if stop:
          reason = 'early_stopping'
          break
  finally:
    progress.close()
    writer.close()
  if best_state is not None:
    state = best_state
  final = best_eval if best_state is not None else (history[-1] if history else None)
  record['training'].update(_summary(history, reason, diverged_at, stopper, steps_per_epoch,
                                     samples_all), history=history, setup_s=setup_s)
  build.record_timing(record, case, mesh, samples_all, waits_all,
                      record['training']['train_s'])
  record['timing'].update(warmup_steps=0, timed_steps=len(samples_all))
  if final is not None and reason != 'diverged':
    record['final_metrics'] = {'loss': final['train_loss'], 'accuracy': final['train_accuracy']}
  if trainer.evaluate and final is not None and final['eval_s'] is not None:
    record['eval'] = {'split': case.eval_split, 'num_examples': data.check(case.eval_split, False),
                      'loss': final['eval_loss'], 'accuracy': final['eval_accuracy'],
                      'wall_s': final['eval_s']}
  if case.checkpoint and reason != 'diverged':
    record['training']['checkpoint'] = _save(
        workdir, name, trainer.variables(state),
        {'case': name, 'epochs_run': len(history), 'step': int(jax.device_get(state.step))})
  return 'diverged' if reason == 'diverged' else 'ok'
