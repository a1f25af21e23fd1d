"""The report's schema: its field names and version.

A case's record is assembled in one place, bench/results/case_record.py `assemble`,
from the values the measuring code returns; the report around the cases by `build`
here. A few of those values come keyed as their block is (bench/measure/timer.py's
and costs.py's summaries, trace.profile's block, pipeline.Input.describe(), the
training history and checkpoint-save rows); `validate` holds them to these keys.

A run writes DIR/report.json (the record), DIR/report.md (tables to read) and
DIR/report.csv (one row per case), each atomically (bench/results/writer.py).
docs/report.md documents every key; `validate` enforces them, and `SCHEMA_VERSION`
changes when they change. The renderings (markdown.py, tables.py, writer.py) read
a report through the keys defined here.
"""

import json
import math

from bench.core import machine
from bench.core.errors import UserError

SCHEMA_VERSION = 12
# Older versions this one reads: a 11 report lacks the cases' `kernels` block (LATER_BLOCKS).
READS = (11, SCHEMA_VERSION)
LATER_BLOCKS = ('kernels',)

# The blocks of a case record and their keys. Every key is always present; a
# figure that was not measured (failed case, backend without it) is null.
# XLA's cost analysis of one device's compiled program; collective_bytes and
# collective_ops count the cross-device collectives in its optimised HLO (result
# bytes of all-reduce, all-gather, reduce-scatter, all-to-all, collective-permute,
# collective-broadcast): 0 for jit on one device (pmap keeps a one-member all-reduce).
XLA_KEYS = ('flops', 'bytes_accessed', 'transcendentals', 'flops_per_example',
            'collective_bytes', 'collective_ops')
CASE_BLOCKS = {
    'params': ('total', 'trainable', 'non_trainable'),
    'xla': XLA_KEYS,
    # The forward pass of a compile case (whose `xla` is its train step); null otherwise.
    'xla_forward': XLA_KEYS,
    # The compiled program's memory analysis (argument ... generated_code_bytes);
    # activation_bytes: the outputs of the model's leaf layers in one forward pass on
    # one device's share of the batch (bench/measure/costs.py); device_peak_bytes: the
    # largest of device_peak_bytes_per_device (the backend's peak_bytes_in_use per
    # device of the case, since the process started; null on CPU); host_peak_rss_bytes:
    # the process's peak resident size so far; host_step_peak_bytes: the resident peak
    # of the case's timed steps over what the process held without the case
    # (bench/measure/host_memory.py; train_step, eval_step and forward cases on Linux).
    'memory': ('argument_bytes', 'output_bytes', 'alias_bytes', 'temp_bytes',
               'generated_code_bytes', 'activation_bytes', 'device_peak_bytes',
               'device_peak_bytes_per_device', 'host_peak_rss_bytes', 'host_step_peak_bytes'),
    # How much of the devices' datasheet peak the step used (bench/workload/build.py). Per step
    # over the global batch: model_flops, the matrix products and convolutions the
    # code asks for (costs.model_flops: no rematerialisation, no elementwise);
    # hardware_flops, XLA's count on every device (everything it runs);
    # normalize_flops, normalising the uint8 images (device_normalize) once: XLA's
    # count of a train step holds it twice (input_pipeline/options.py).
    # peak_flops_per_s: one device's dense peak in `dtype` (bench/measure/peaks.py DATASHEET),
    # null with the reason in peak_source for a device or dtype without one. mfu and
    # hfu: model_flops and hardware_flops over (median step time x peak x devices).
    'utilization': ('device_kind', 'dtype', 'peak_flops_per_s', 'peak_source', 'model_flops',
                    'hardware_flops', 'normalize_flops', 'mfu', 'hfu'),
    'step_time_s': ('median', 'mean', 'min', 'max', 'p10', 'p90', 'iqr', 'iqr_over_median',
                    'n', 'samples'),
    # Time each timed step waited for its batch (part of its step time), and the
    # total wait over the total step time.
    'data_wait_s': ('median', 'mean', 'p90', 'max', 'total', 'share'),
    'timing': ('benchmark', 'sync', 'warmup_steps', 'timed_steps', 'total_s'),
    'throughput': ('examples_per_s', 'examples_per_s_per_device', 'examples_per_s_total',
                   'flops_per_s'),
    'final_metrics': ('loss', 'accuracy'),
    # What was read: examples in the splits over all processes, files an image folder
    # ignored (no image extension), tf.data's private thread pool (threads) and the
    # batches transferred to the devices ahead of the step (prefetch); location, counts
    # and depths are null for synthetic data.
    'dataset': ('name', 'location', 'num_classes', 'train_examples', 'eval_examples',
                'ignored_files', 'threads', 'prefetch'),
    # Exact metrics over config.eval_split after timing; wall_s includes compiling.
    'eval': ('split', 'num_examples', 'loss', 'accuracy', 'wall_s'),
    # A training run (benchmark 'train', bench/train/training.py); null otherwise. `eval`
    # then holds the final (or restored best) epoch's evaluation, and step_time_s
    # and data_wait_s every training step. history: one row per epoch (HISTORY_KEYS).
    # examples_per_epoch: what one epoch trains on, over all processes; last_batch: the
    # examples of its last, smaller batch (0: the split divides evenly, drop_remainder,
    # or steps_per_epoch set).
    'training': ('epochs_run', 'steps_run', 'steps_per_epoch', 'examples_per_epoch',
                 'last_batch', 'stop_reason',
                 'diverged_at_step', 'best_epoch', 'min_train_loss', 'min_eval_loss',
                 'best_eval_accuracy', 'train_s', 'eval_s', 'data_wait_s', 'mean_step_s',
                 'epoch_s', 'setup_s', 'feature_cache_s', 'feature_cache_bytes', 'history'),
    # A training run's checkpoints (bench/train/checkpoints.py); null otherwise. saves: one
    # row per save over every run of the case (SAVE_KEYS): blocking_s is how long
    # training waited, total_s how long until the save was on disk (both null for
    # the save a rerun resumed from: they went with the process that measured them);
    # blocking_s, total_s and blocking_share of the block sum the timed saves.
    # export: the final weights' directory.
    'checkpoint': ('directory', 'every_steps', 'every_epochs', 'keep', 'asynchronous',
                   'resumed_from_step', 'resumes', 'saves', 'blocking_s', 'total_s',
                   'blocking_share', 'export'),
    # Where the time goes (config profile, bench/profile/trace.py); null otherwise. Per
    # profiled step: step_s = op_s (at least one HLO op running) + idle_s (none);
    # profiled_median_s: the median of the profiled steps' own timings; tracer_s: what
    # recording the trace added to a step (its events per step at the tracer's cost per
    # event, measured on a probe program); coverage: step_s - tracer_s over the timed
    # median step time; wall_s: what profiling cost, tracing
    # and reading included. directory and trace are relative to the workdir. ops,
    # layers and categories are rows (PROFILE_ROWS), most time first; phases:
    # {forward, backward, update: seconds per step}.
    'profile': ('directory', 'trace', 'steps', 'step_s', 'op_s', 'idle_s',
                'profiled_median_s', 'tracer_s', 'coverage', 'wall_s', 'ops', 'layers',
                'categories', 'phases'),
    # The step predicted from its kernels (bench/run/kernels.py Predictor) by the
    # predictors of the kernel database `database`, learned from its `sampled` kernels
    # sampled on this machine (none of a model); why: why not ('' when predicted).
    # count and distinct: the kernels the step runs; predicted_s: their predictions
    # summed plus overhead_s, what a step pays beyond its kernels (a call, its
    # temporaries' first writes), probed; low_s and high_s: the interval, the kernels'
    # held-out errors added up; tried: distinct kernels measured alone so far (`flax-bench
    # kernels measure`), unmeasurable: those that do not compile alone; sum_s: once
    # every one was tried, overhead_s + each measured median x its executions.
    'kernels': ('database', 'sampled', 'count', 'distinct', 'predicted_s', 'low_s', 'high_s',
                'overhead_s', 'tried', 'unmeasurable', 'sum_s', 'why'),
}
# Rows of a profile, per step: time_s (wall time shared among the ops running at once),
# flops and bytes (bench/measure/hlo.py), count (executions), ops (distinct ops in the row).
PROFILE_ROWS = {
    'ops': ('op', 'category', 'layer', 'phase', 'time_s', 'count', 'flops', 'bytes'),
    'layers': ('layer', 'time_s', 'flops', 'bytes', 'ops'),
    'categories': ('category', 'time_s', 'flops', 'bytes', 'ops'),
}
# The figures of a case that only the code, XLA and the device count decide: equal in
# every run of one program, so compare diffs them exactly and the history lists their
# changes. Not memory.generated_code_bytes (machine code size depends on the host
# CPU's instruction set), not the measured peaks nor the fingerprint (the final
# weights depend on the floating-point order of backend and host).
DETERMINISTIC = {'params': CASE_BLOCKS['params'], 'xla': XLA_KEYS, 'xla_forward': XLA_KEYS,
                 'utilization': ('model_flops', 'normalize_flops'),
                 'memory': ('argument_bytes', 'output_bytes', 'alias_bytes', 'temp_bytes',
                            'activation_bytes')}
HISTORY_KEYS = ('epoch', 'steps', 'train_loss', 'train_accuracy', 'eval_loss', 'eval_accuracy',
                'train_s', 'eval_s', 'data_wait_s', 'step_time_median_s', 'learning_rate')
SAVE_KEYS = ('step', 'epoch', 'reason', 'blocking_s', 'total_s')
# fingerprint: sha256 of the final parameters and statistics (bench/train/checkpoints.py);
# equal in two reports means bitwise equal weights.
# num_devices: devices the batch was split over; per_device_batch: batch_size / num_devices.
# compile_cache: whether the timed step's executable came from the persistent
# compilation cache ('hit': compile_s is a read, not a compile), was compiled and
# stored ('miss'), or the cache was off ('off'); bench/measure/timer.py.
CASE_SCALARS = ('name', 'status', 'error', 'config', 'num_devices', 'per_device_batch', 'lower_s',
                'compile_s', 'compile_cache', 'fingerprint')
STATUSES = ('ok', 'failed', 'diverged')
REPORT_KEYS = ('schema_version', 'suite', 'environment', 'cases', 'ratios', 'scaling')
# A scaling study's rows (config `scaling`), one per case run: `case` is the run, `of`
# the config case it scales. speedup: its examples/s over the same mode's run on
# the fewest devices; efficiency: speedup / (devices / those devices).
SCALING_KEYS = ('case', 'of', 'mode', 'devices', 'batch_size', 'per_device_batch', 'parallel',
                'step_time_s', 'examples_per_s', 'speedup', 'efficiency', 'collective_bytes')
SCALING_MODES = ('weak', 'strong')
# bench/measure/environment.py's block: what produced the numbers. machine_id (hashed),
# cpu_signature and memory_bytes (bench/core/machine.py) came after schema 11's first
# reports (machine.LATER): a report without them (the committed CI baseline) is still
# of schema 11, its machine unknown to compare and the history.
ENVIRONMENT_KEYS = ('python', 'versions', 'backend', 'device_kind', 'device_count',
                    'local_device_count', 'process_count', 'devices_per_process', 'machine_id',
                    'cpu_model', 'cpu_signature', 'cpu_count', 'memory_bytes', 'xla_flags',
                    'compile_cache', 'git_commit', 'git_dirty', 'hostname', 'command', 'peaks',
                    'timestamp_utc')
# environment.peaks (bench/measure/peaks.py; null until the cases are done): the device the
# peaks were measured on, best matmul FLOP/s and its square size per dtype of the
# cases ({dtype: value}), best copy bandwidth (bytes read + written per second) and
# the copied array's bytes, timings taken per measurement (the best is kept), and
# the seconds the measurements took.
PEAK_KEYS = ('device', 'matmul_flops_per_s', 'matmul_size', 'copy_bytes_per_s', 'copy_bytes',
             'repeats', 'seconds')
# suite.status: 'complete' (every case ran, none failed), 'failed' (every case ran, one
# or more failed: bench.main exits 1, the history records it so), 'incomplete' (stopped
# before the end: killed or interrupted; a rerun continues it).
SUITE_KEYS = ('name', 'config_file', 'status', 'notes')
RATIO_KEYS = ('numerator', 'denominator', 'params', 'flops', 'bytes_accessed', 'step_time',
              'epoch_time')
FILES = ('report.json', 'report.md', 'report.csv')


def new_case(name, config):
  """A case record with every key present and nothing measured yet."""
  case = {key: None for key in CASE_SCALARS}
  # Stored as JSON reads it back (tuples become lists), so a loaded report equals the written one.
  case.update(name=name, status='failed', config=json.loads(json.dumps(config)))
  case.update({block: {key: None for key in keys} for block, keys in CASE_BLOCKS.items()})
  return case


def ratio(a, b):
  """a / b, or None without both (or for b = 0)."""
  if a is None or b is None or b == 0:
    return None
  return a / b


def ratios(cases, pairs):
  """Numerator/denominator ratios of params, flops, bytes and median step time.

  Pairs whose cases are not (yet) in `cases` are left out.
  """
  by_name = {case['name']: case for case in cases}
  rows = []
  for num, den in pairs:
    if num not in by_name or den not in by_name:
      continue
    a, b = by_name[num], by_name[den]
    rows.append({
        'numerator': num,
        'denominator': den,
        'params': ratio(a['params']['total'], b['params']['total']),
        'flops': ratio(a['xla']['flops'], b['xla']['flops']),
        'bytes_accessed': ratio(a['xla']['bytes_accessed'], b['xla']['bytes_accessed']),
        'step_time': ratio(a['step_time_s']['median'], b['step_time_s']['median']),
        'epoch_time': ratio(a['training']['epoch_s'], b['training']['epoch_s']),
    })
  return rows


def scaling(cases, runs):
  """The scaling rows of `runs` [(case name, config case, mode, devices)] among `cases`."""
  by_name = {case['name']: case for case in cases}
  rows = []
  for name, of, mode, devices in runs:
    if name not in by_name:
      continue
    case = by_name[name]
    rows.append({
        'case': name, 'of': of, 'mode': mode, 'devices': devices,
        'batch_size': case['config']['batch_size'], 'per_device_batch': case['per_device_batch'],
        'parallel': case['config']['parallel'], 'step_time_s': case['step_time_s']['median'],
        'examples_per_s': case['throughput']['examples_per_s'], 'speedup': None,
        'efficiency': None, 'collective_bytes': case['xla']['collective_bytes']})
  for row in rows:
    base = min((r for r in rows if (r['of'], r['mode']) == (row['of'], row['mode'])
                and r['examples_per_s']), key=lambda r: r['devices'], default=None)
    if base and row['examples_per_s']:
      row['speedup'] = row['examples_per_s'] / base['examples_per_s']
      row['efficiency'] = row['speedup'] / (row['devices'] / base['devices'])
  return rows


def build(suite_name, config_file, environment, cases, pairs, scaling_runs=(), notes=''):
  return {
      'schema_version': SCHEMA_VERSION,
      'suite': {'name': suite_name, 'config_file': config_file, 'status': 'complete',
                'notes': notes},
      'environment': environment,
      'cases': cases,
      'ratios': ratios(cases, pairs),
      'scaling': scaling(cases, scaling_runs),
  }


def _check_keys(what, value, keys, optional=()):
  if not isinstance(value, dict):
    raise ValueError(f'{what} must be an object, got {type(value).__name__}')
  if set(value) != set(keys) - (set(optional) - set(value)):
    missing = sorted(set(keys) - set(optional) - set(value))
    extra = sorted(set(value) - set(keys))
    raise ValueError(f'{what} keys differ from schema {SCHEMA_VERSION}: missing {missing}, '
                     f'unexpected {extra}')


def _number(value):
  return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_figures(report):
  """Raises ValueError where a case's step times or deterministic figures are not
  numbers (or null). Reads the keys it finds, so it checks a report of any schema
  version: the history records older ones."""
  numbers = {'step_time_s': [k for k in CASE_BLOCKS['step_time_s'] if k != 'samples'],
             **DETERMINISTIC}
  for case in report['cases']:
    name = case.get('name')
    for block, keys in numbers.items():
      values = case.get(block)
      if values is not None and not isinstance(values, dict):
        raise ValueError(f'case {name!r} {block} must be an object, got {type(values).__name__}')
      for key in keys if values else ():
        if values.get(key) is not None and not _number(values[key]):
          raise ValueError(f'case {name!r} {block}.{key} is {values[key]!r}, not a number')
    samples = (case.get('step_time_s') or {}).get('samples')
    if samples is not None and not (isinstance(samples, list) and all(
        _number(v) and math.isfinite(v) for v in samples)):
      raise ValueError(f'case {name!r} step_time_s.samples is not a list of numbers')


def validate(report):
  """Raises ValueError where `report` does not follow this schema version."""
  if not isinstance(report, dict) or 'schema_version' not in report:
    raise ValueError('not a benchmark report (no schema_version)')
  if report['schema_version'] not in READS:
    raise ValueError(f'schema_version {report["schema_version"]} is not one of '
                     f'{", ".join(map(str, READS))}')
  later = LATER_BLOCKS if report['schema_version'] < SCHEMA_VERSION else ()
  _check_keys('report', report, REPORT_KEYS)
  _check_keys('suite', report['suite'], SUITE_KEYS)
  _check_keys('environment', report['environment'], ENVIRONMENT_KEYS, machine.LATER)
  if report['environment']['peaks'] is not None:
    _check_keys('environment peaks', report['environment']['peaks'], PEAK_KEYS)
  for case in report['cases']:
    _check_keys('case', case, CASE_SCALARS + tuple(CASE_BLOCKS), later)
    if not isinstance(case['name'], str):
      raise ValueError(f'case name {case["name"]!r} is not a string')
    if case['status'] not in STATUSES:
      raise ValueError(f'case {case["name"]!r} has status {case["status"]!r}')
    for block, keys in CASE_BLOCKS.items():
      if block in case:
        _check_keys(f'case {case["name"]!r} {block}', case[block], keys)
    for row in case['training']['history'] or ():
      _check_keys(f'case {case["name"]!r} training history row', row, HISTORY_KEYS)
    for row in case['checkpoint']['saves'] or ():
      _check_keys(f'case {case["name"]!r} checkpoint save', row, SAVE_KEYS)
    for table_name, keys in PROFILE_ROWS.items():
      for row in case['profile'][table_name] or ():
        _check_keys(f'case {case["name"]!r} profile {table_name} row', row, keys)
  check_figures(report)
  for row in report['ratios']:
    _check_keys('ratio', row, RATIO_KEYS)
  for row in report['scaling']:
    _check_keys('scaling row', row, SCALING_KEYS)


def load(path):
  with open(path, encoding='utf-8') as f:
    report = json.load(f)
  validate(report)
  return report


def read(path):
  """`load` for the tools that read reports users name: a file that is missing,
  unreadable, not JSON, not a report or of another schema version is a UserError
  naming it."""
  try:
    return load(path)
  except OSError as e:
    raise UserError(f'{path}: cannot read it: {e.strerror or e}') from None
  except UnicodeDecodeError:
    raise UserError(f'{path}: not a text file, so not a report (report.json is UTF-8 JSON)'
                    ) from None
  except json.JSONDecodeError as e:
    raise UserError(f'{path}: not valid JSON ({e.msg} at line {e.lineno}); a report is '
                    'always complete JSON, so this file was cut short or is not a report') from None
  except (ValueError, TypeError) as e:  # schema problems
    raise UserError(f'{path}: {e}; this version reads reports of schema {SCHEMA_VERSION}: '
                    'rerun the benchmark that wrote it') from None
