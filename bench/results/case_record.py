"""A case's record assembled from what was measured: the one writer of its blocks.

The code that measures returns values (bench/workload/build.py Built, Timed and
Metrics; bench/train/training.py Trained; trace.profile's block); the runner hands
them to `assemble`, which maps them onto the keys bench/results/schema.py defines and
derives the figures the schema defines from them (flops_per_example, mfu and hfu,
throughput, the training run's sums, the checkpoint totals).
"""

import numpy as np

from bench.results import schema


def synthetic_dataset(num_classes):
  """The dataset block of synthetic data (a real dataset's is pipeline.Input.describe())."""
  return {**dict.fromkeys(schema.CASE_BLOCKS['dataset']), 'name': 'synthetic',
          'num_classes': num_classes}


def assemble(name, config, devices=None, per_device_batch=None, *, status='failed', error=None,
             dataset=None, built=None, timed=None, trained=None, evaluation=None,
             final_metrics=None, fingerprint=None, profile=None, device_peaks=None,
             host_peak_rss_bytes=None, host_step_peak_bytes=None, kernels=None):
  """A case record from what was measured: schema.new_case's, with each block that a value
  was given for filled in (the others null). The values are those the code that
  measured them returns: built (bench/workload/build.py Built), timed (build.Timed),
  trained (bench/train/training.py Trained), evaluation and final_metrics (build.Metrics),
  dataset (pipeline.Input.describe() or synthetic_dataset), profile (trace.profile's
  block), device_peaks (costs.device_peak_bytes) and kernels (the runner's
  kernel_figures: the keys it has). `devices` and `per_device_batch`
  (a global batch over devices) must come with built or timed."""
  case = schema.new_case(name, config)
  case.update(status=status, error=error, num_devices=devices, per_device_batch=per_device_batch,
              fingerprint=fingerprint)
  # What the config asked for; a training run's timed steps are all it ran (timed).
  case['timing'].update({key: config.get(key) for key in ('benchmark', 'sync', 'warmup_steps',
                                                          'timed_steps')})
  memory = case['memory']
  memory.update(host_peak_rss_bytes=host_peak_rss_bytes,
                host_step_peak_bytes=host_step_peak_bytes)
  if device_peaks is not None:
    memory.update(device_peak_bytes=max(device_peaks) if device_peaks else None,
                  device_peak_bytes_per_device=device_peaks)
  for block, value in (('dataset', dataset), ('profile', profile), ('kernels', kernels)):
    if value is not None:
      case[block].update(value)
  if built is not None:
    _built(case, built, devices, per_device_batch)
  if timed is not None:
    _timed(case, timed, devices)
  if trained is not None:
    _trained(case, trained, timed)
  for block, metrics in (('eval', evaluation), ('final_metrics', final_metrics)):
    if metrics is not None:
      case[block].update({key: getattr(metrics, key) for key in case[block]})
  return case


def _built(case, built, devices, per_device_batch):
  """The params, compile, xla, memory and utilization blocks; a Built whose step did not
  compile (a failed case) has its parameters and activations only."""
  case['params'].update(built.params)
  case['memory'].update(activation_bytes=built.activation_bytes)
  step = built.step
  if step is None:
    return
  case.update(lower_s=step.lower_s, compile_s=step.compile_s, compile_cache=step.cache)
  for block, costs in (('xla', step.costs), ('xla_forward', built.forward_costs)):
    if costs is not None:
      # XLA's cost analysis describes the per-device program, which sees one device's share.
      case[block].update(costs, flops_per_example=None if costs['flops'] is None
                         else costs['flops'] / per_device_batch)
  case['memory'].update(step.memory)
  flops = step.costs['flops']
  case['utilization'].update(
      device_kind=step.device_kind, dtype=step.dtype, peak_flops_per_s=step.peak[0],
      peak_source=step.peak[1], model_flops=step.model_flops, normalize_flops=step.normalize_flops,
      hardware_flops=None if flops is None else flops * devices)


def _timed(case, timed, devices):
  """The step-time, data-wait, timing and throughput blocks, and mfu and hfu."""
  case['step_time_s'].update(timed.step_time)
  case['data_wait_s'].update(timed.data_wait)
  case['timing'].update(warmup_steps=timed.warmup_steps, timed_steps=timed.timed_steps,
                        total_s=timed.total_s)
  median, flops, use = timed.step_time['median'], case['xla']['flops'], case['utilization']
  if use['peak_flops_per_s']:  # of what the devices' datasheets promise, over the median step
    available = use['peak_flops_per_s'] * devices * median
    use['mfu'] = use['model_flops'] / available
    use['hfu'] = None if use['hardware_flops'] is None else use['hardware_flops'] / available
  case['throughput'].update(
      examples_per_s=timed.batch_size / median,
      examples_per_s_per_device=timed.batch_size / devices / median,
      # Over the whole timed loop: what an epoch would see, bursts and stalls included.
      examples_per_s_total=timed.examples / timed.samples_s,
      # Every device runs the per-device program: the achieved rate is over all of them.
      flops_per_s=None if flops is None else flops * devices / median)


def _trained(case, trained, timed):
  """The training and checkpoint blocks: the run's figures and sums over its history, and
  the checkpoint policy of its config."""
  history = trained.history
  complete = [row for row in history if row['train_s'] is not None]

  def best(key, pick):
    values = [row[key] for row in history if row[key] is not None]
    return pick(values) if values else None

  def total(key):
    return sum(row[key] or 0.0 for row in history)

  case['training'].update(
      epochs_run=len(history), steps_run=sum(row['steps'] for row in history),
      steps_per_epoch=trained.steps_per_epoch, examples_per_epoch=trained.examples_per_epoch,
      last_batch=trained.last_batch, stop_reason=trained.stop_reason,
      diverged_at_step=trained.diverged_at_step, best_epoch=trained.best_epoch,
      min_train_loss=best('train_loss', min), min_eval_loss=best('eval_loss', min),
      best_eval_accuracy=best('eval_accuracy', max), train_s=timed.total_s,
      eval_s=total('eval_s'), data_wait_s=total('data_wait_s'),
      mean_step_s=timed.step_time['mean'],
      epoch_s=float(np.mean([row['train_s'] for row in complete])) if complete else None,
      setup_s=trained.setup_s, feature_cache_s=trained.feature_cache_s,
      feature_cache_bytes=trained.feature_cache_bytes, history=history)
  saves = trained.saves
  timed_saves = [save for save in saves if save['total_s'] is not None]
  blocking = sum(save['blocking_s'] for save in timed_saves)
  spent = sum(save['total_s'] for save in timed_saves)
  config = case['config']  # the checkpoint policy the run followed
  case['checkpoint'].update(
      directory=trained.checkpoint_directory, every_steps=config['checkpoint_every_steps'],
      every_epochs=config['checkpoint_every_epochs'], keep=config['checkpoint_keep'],
      asynchronous=config['checkpoint_async'], resumed_from_step=trained.resumed_from_step,
      resumes=trained.resumes, saves=saves, blocking_s=blocking, total_s=spent,
      blocking_share=blocking / spent if spent else None, export=trained.export)
