"""The report: the one module that knows its schema.

A run writes DIR/report.json (the record), DIR/report.md (tables to read) and
DIR/report.csv (one row per case), each atomically. WORKSPACE.md documents every
key; `validate` enforces them, and `SCHEMA_VERSION` changes when they change.
"""

import collections
import csv
import io
import json
import math
import os

from bench.errors import UserError
from bench.fileio import atomic_write_text

SCHEMA_VERSION = 10

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
    # one device's share of the batch (bench/costs.py); device_peak_bytes: the
    # largest of device_peak_bytes_per_device (the backend's peak_bytes_in_use per
    # device of the case, since the process started; null on CPU).
    'memory': ('argument_bytes', 'output_bytes', 'alias_bytes', 'temp_bytes',
               'generated_code_bytes', 'activation_bytes', 'device_peak_bytes',
               'device_peak_bytes_per_device', 'host_peak_rss_bytes'),
    # How much of the devices' datasheet peak the step used (bench/build.py). Per step
    # over the global batch: model_flops, the matrix products and convolutions the
    # code asks for (costs.model_flops: no rematerialisation, no elementwise);
    # hardware_flops, XLA's count on every device (everything it runs);
    # normalize_flops, normalising the uint8 images (device_normalize) once: XLA's
    # count of a train step holds it twice (input_pipeline/options.py).
    # peak_flops_per_s: one device's dense peak in `dtype` (bench/peaks.py DATASHEET),
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
    # A training run (benchmark 'train', bench/train.py); null otherwise. `eval`
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
    # A training run's checkpoints (bench/checkpoints.py); null otherwise. saves: one
    # row per save over every run of the case (SAVE_KEYS): blocking_s is how long
    # training waited, total_s how long until the save was on disk (both null for
    # the save a rerun resumed from: they went with the process that measured them);
    # blocking_s, total_s and blocking_share of the block sum the timed saves.
    # export: the final weights' directory.
    'checkpoint': ('directory', 'every_steps', 'every_epochs', 'keep', 'asynchronous',
                   'resumed_from_step', 'resumes', 'saves', 'blocking_s', 'total_s',
                   'blocking_share', 'export'),
    # Where the time goes (config profile, bench/profiling.py); null otherwise. Per
    # profiled step: step_s = op_s (at least one HLO op running) + idle_s (none);
    # profiled_median_s: the median of the profiled steps' own timings; coverage:
    # step_s over the timed median step time; wall_s: what profiling cost, tracing
    # and reading included. directory and trace are relative to the workdir. ops,
    # layers and categories are rows (PROFILE_ROWS), most time first; phases:
    # {forward, backward, update: seconds per step}.
    'profile': ('directory', 'trace', 'steps', 'step_s', 'op_s', 'idle_s',
                'profiled_median_s', 'coverage', 'wall_s', 'ops', 'layers', 'categories',
                'phases'),
}
# Rows of a profile, per step: time_s (wall time shared among the ops running at once),
# flops and bytes (bench/hlo.py), count (executions), ops (distinct ops in the row).
PROFILE_ROWS = {
    'ops': ('op', 'category', 'layer', 'phase', 'time_s', 'count', 'flops', 'bytes'),
    'layers': ('layer', 'time_s', 'flops', 'bytes', 'ops'),
    'categories': ('category', 'time_s', 'flops', 'bytes', 'ops'),
}
HISTORY_KEYS = ('epoch', 'steps', 'train_loss', 'train_accuracy', 'eval_loss', 'eval_accuracy',
                'train_s', 'eval_s', 'data_wait_s', 'step_time_median_s', 'learning_rate')
SAVE_KEYS = ('step', 'epoch', 'reason', 'blocking_s', 'total_s')
# fingerprint: sha256 of the final parameters and statistics (bench/checkpoints.py);
# equal in two reports means bitwise equal weights.
# num_devices: devices the batch was split over; per_device_batch: batch_size / num_devices.
# compile_cache: whether the timed step's executable came from the persistent
# compilation cache ('hit': compile_s is a read, not a compile), was compiled and
# stored ('miss'), or the cache was off ('off'); bench/timer.py.
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
# bench/environment.py's block: what produced the numbers.
ENVIRONMENT_KEYS = ('python', 'versions', 'backend', 'device_kind', 'device_count',
                    'local_device_count', 'process_count', 'devices_per_process', 'cpu_model',
                    'cpu_count', 'xla_flags', 'compile_cache', 'git_commit', 'git_dirty',
                    'hostname', 'command', 'peaks', 'timestamp_utc')
# environment.peaks (bench/peaks.py; null until the cases are done): the device the
# peaks were measured on, best matmul FLOP/s and its square size per dtype of the
# cases ({dtype: value}), best copy bandwidth (bytes read + written per second) and
# the copied array's bytes, timings taken per measurement (the best is kept), and
# the seconds the measurements took.
PEAK_KEYS = ('device', 'matmul_flops_per_s', 'matmul_size', 'copy_bytes_per_s', 'copy_bytes',
             'repeats', 'seconds')
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


def _ratio(a, b):
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
        'params': _ratio(a['params']['total'], b['params']['total']),
        'flops': _ratio(a['xla']['flops'], b['xla']['flops']),
        'bytes_accessed': _ratio(a['xla']['bytes_accessed'], b['xla']['bytes_accessed']),
        'step_time': _ratio(a['step_time_s']['median'], b['step_time_s']['median']),
        'epoch_time': _ratio(a['training']['epoch_s'], b['training']['epoch_s']),
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


def _check_keys(what, value, keys):
  if not isinstance(value, dict):
    raise ValueError(f'{what} must be an object, got {type(value).__name__}')
  if set(value) != set(keys):
    missing, extra = sorted(set(keys) - set(value)), sorted(set(value) - set(keys))
    raise ValueError(f'{what} keys differ from schema {SCHEMA_VERSION}: missing {missing}, '
                     f'unexpected {extra}')


def validate(report):
  """Raises ValueError where `report` does not follow this schema version."""
  if not isinstance(report, dict) or 'schema_version' not in report:
    raise ValueError('not a benchmark report (no schema_version)')
  if report['schema_version'] != SCHEMA_VERSION:
    raise ValueError(f'schema_version {report["schema_version"]} is not {SCHEMA_VERSION}')
  _check_keys('report', report, REPORT_KEYS)
  _check_keys('suite', report['suite'], SUITE_KEYS)
  _check_keys('environment', report['environment'], ENVIRONMENT_KEYS)
  if report['environment']['peaks'] is not None:
    _check_keys('environment peaks', report['environment']['peaks'], PEAK_KEYS)
  for case in report['cases']:
    _check_keys('case', case, CASE_SCALARS + tuple(CASE_BLOCKS))
    if not isinstance(case['name'], str):
      raise ValueError(f'case name {case["name"]!r} is not a string')
    if case['status'] not in STATUSES:
      raise ValueError(f'case {case["name"]!r} has status {case["status"]!r}')
    for block, keys in CASE_BLOCKS.items():
      _check_keys(f'case {case["name"]!r} {block}', case[block], keys)
    samples = case['step_time_s']['samples']
    if samples is not None and not (isinstance(samples, list) and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
        for v in samples)):
      raise ValueError(f'case {case["name"]!r} step_time_s.samples is not a list of numbers')
    for row in case['training']['history'] or ():
      _check_keys(f'case {case["name"]!r} training history row', row, HISTORY_KEYS)
    for row in case['checkpoint']['saves'] or ():
      _check_keys(f'case {case["name"]!r} checkpoint save', row, SAVE_KEYS)
    for table_name, keys in PROFILE_ROWS.items():
      for row in case['profile'][table_name] or ():
        _check_keys(f'case {case["name"]!r} profile {table_name} row', row, keys)
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


def write(workdir, report, sections=()):
  """Writes report.md (with `sections`, markdown lines, at its end), report.csv and,
  last, report.json: each complete or not at all."""
  validate(report)
  # Render everything before touching the disk: a rendering error writes nothing.
  texts = {
      'report.md': to_markdown(report, sections),
      'report.csv': to_csv(report),
      # allow_nan=False: a NaN or inf would make the file invalid JSON for strict readers.
      'report.json': json.dumps(report, indent=1, allow_nan=False) + '\n',
  }
  for name, text in texts.items():
    atomic_write_text(os.path.join(workdir, name), text)


# ----------------------------------------------------------------------------- CSV

def _csv_columns():
  columns = [key for key in CASE_SCALARS if key != 'config']
  columns[2:2] = ['model', 'batch_size', 'dtype']
  for block, keys in CASE_BLOCKS.items():
    columns += [f'{block}.{key}' for key in keys
                if key not in ('samples', 'history', 'saves', 'device_peak_bytes_per_device',
                               *PROFILE_ROWS, 'phases')]
  return columns


# The run's identity, first in every row: CSVs of many runs concatenated stay readable.
CSV_IDENTITY = ('suite', 'harness_version', 'git_commit', 'device_kind', 'jax_version')


def _identity(report):
  env = report['environment']
  return [report['suite']['name'], env['versions'].get('flax_bench'), env['git_commit'],
          env['device_kind'], env['versions'].get('jax')]


def _csv_value(value):
  """'' for null; a whole float (XLA's counts, bytes) as an integer."""
  if value is None:
    return ''
  if isinstance(value, float) and value.is_integer():
    return int(value)
  return value


def to_csv(report):
  out = io.StringIO()
  writer = csv.writer(out, lineterminator='\n')
  columns = _csv_columns()
  writer.writerow([*CSV_IDENTITY, *columns])
  identity = _identity(report)
  for case in report['cases']:
    row = list(identity)
    for column in columns:
      if '.' in column:
        block, key = column.split('.')
        value = case[block][key]
      elif column in case:
        value = case[column]
      else:
        value = case['config'].get(column)
      row.append(value)
    writer.writerow([_csv_value(value) for value in row])
  return out.getvalue()


# ------------------------------------------------------------------------ Markdown

# Numbers from here on print in exponent notation: a wild fit's fold error (up to
# exp(700)) would otherwise print as a 300-digit integer.
_MAX_PLAIN = 1e15


def fmt(value, scale=1.0, digits=3):
  """`value` x `scale` with `digits` significant digits (all digits of a large number,
  up to _MAX_PLAIN; beyond it, exponent notation)."""
  if value is None or math.isnan(value):
    return 'n/a'
  value = value * scale
  if value == 0 or math.isinf(value):
    return str(value) if value else '0'
  if abs(value) >= _MAX_PLAIN:
    return f'{value:.{digits}g}'
  return f'{value:.{max(digits - 1 - int(math.floor(math.log10(abs(value)))), 0)}f}'


def times(value):
  return 'n/a' if value is None else f'{fmt(value)}x'


def _environment_line(env):
  versions = env['versions']
  commit = env['git_commit'][:10] if env['git_commit'] else 'no git'
  dirty = ' (dirty)' if env['git_dirty'] else ''
  harness = versions.get('flax_bench')
  return (f'flax-bench {harness or "(version unknown)"}, jax {versions["jax"]}, '
          f'flax {versions["flax"]}, optax {versions["optax"]} on '
          f'{env["backend"]} ({env["device_count"]} x {env["device_kind"]} in '
          f'{env["process_count"]} process{"es" if env["process_count"] > 1 else ""}; CPU: '
          f'{env["cpu_model"]}, {env["cpu_count"]} cores); commit {commit}{dirty}; '
          f'{env["hostname"]}, {env["timestamp_utc"]}')


def _verdict(row):
  p, f, t = row['params'], row['flops'], row['step_time']
  if None in (p, f, t):
    return f'- {row["numerator"]} vs {row["denominator"]}: not comparable (a case failed).'
  direction = ('points the wrong way' if (p - 1) * (t - 1) < 0
               else 'points the right way')
  return (f'- **{row["numerator"]}** has {times(p)} the parameters of '
          f'**{row["denominator"]}**, {times(f)} its XLA FLOPs, and takes {times(t)} its '
          f'time per step. Parameter count {direction}, off by a factor of '
          f'{fmt(max(t / p, p / t))}; FLOPs are off by {fmt(max(t / f, f / t))}.')


def table(columns, rows):
  """Markdown table lines: the header, its rule, and a line per row of cell texts."""
  return ['| ' + ' | '.join(columns) + ' |', '|' + '---|' * len(columns)] + [
      '| ' + ' | '.join(str(cell) for cell in row) + ' |' for row in rows]


def _spread_ms(st):
  return 'n/a' if st['p10'] is None else f'{fmt(st["p10"], 1e3)}-{fmt(st["p90"], 1e3)}'


def percent(value):
  return 'n/a' if value is None else f'{value * 100:.1f}%'


def _timed_table(cases):
  rows = []
  for case in cases:
    cfg, xla, st = case['config'], case['xla'], case['step_time_s']
    rows.append([
        case['name'], case['status'], cfg.get('model'), cfg.get('benchmark'),
        case['dataset']['name'] or cfg.get('dataset'), cfg.get('batch_size'), cfg.get('dtype'),
        case['params']['total'] or 'n/a', case['params']['trainable'] or 'n/a',
        fmt(xla['flops'], 1e-9), fmt(xla['bytes_accessed'], 1e-6), compile_cell(case),
        fmt(st['median'], 1e3), _spread_ms(st), fmt(st['iqr_over_median']),
        percent(case['data_wait_s']['share']), fmt(case['throughput']['examples_per_s']),
        fmt(case['throughput']['flops_per_s'], 1e-9)])
  return table(('case', 'status', 'model', 'benchmark', 'data', 'batch', 'dtype', 'params',
                 'trainable', 'GFLOP/step', 'MB accessed', 'compile s', 'median ms',
                 'p10-p90 ms', 'IQR/median', 'data wait', 'examples/s', 'GFLOP/s'), rows)


def compile_cell(case):
  """compile_s, marked when the executable was read from the compilation cache: that
  is the time to read it, not to compile it."""
  cell = fmt(case['compile_s'])
  return f'{cell} (cached)' if case['compile_cache'] == 'hit' else cell


def _utilization_table(cases, peaks):
  """MFU and HFU against each device's datasheet peak, and MFU against the matmul
  peak measured in this run."""
  measured = (peaks or {}).get('matmul_flops_per_s') or {}
  rows = []
  for case in cases:
    use, median = case['utilization'], case['step_time_s']['median']
    rate = use['model_flops'] / median if median and use['model_flops'] is not None else None
    peak = measured.get(use['dtype'])
    rows.append([
        case['name'], use['device_kind'], use['dtype'], fmt(use['model_flops'], 1e-9),
        fmt(use['hardware_flops'], 1e-9), fmt(use['normalize_flops'], 1e-9),
        fmt(rate, 1e-12), fmt(use['peak_flops_per_s'], 1e-12), percent(use['mfu']),
        percent(use['hfu']), fmt(peak, 1e-12),
        percent(rate / (peak * case['num_devices']) if rate and peak else None)])
  return table(('case', 'device', 'dtype', 'model GFLOP/step', 'XLA GFLOP/step',
                 'normalise GFLOP', 'model TFLOP/s', 'datasheet TFLOP/s/device', 'MFU', 'HFU',
                 'measured TFLOP/s/device', 'MFU of measured'), rows)


def _input_table(cases):
  """Input-only cases: how fast the pipeline delivers batches to the devices."""
  rows = []
  for case in cases:
    cfg, st = case['config'], case['step_time_s']
    shape = 'x'.join(map(str, cfg.get('image_shape') or ()))
    rows.append([
        case['name'], case['status'], case['dataset']['name'] or cfg.get('dataset'),
        cfg.get('train_split'), f'{shape} {cfg.get("resize")}', cfg.get('augment'),
        cfg.get('batch_size'), fmt(st['median'], 1e3), _spread_ms(st),
        fmt(case['throughput']['examples_per_s_total']),
        fmt(case['throughput']['examples_per_s'])])
  return table(('case', 'status', 'data', 'split', 'output', 'augment', 'batch',
                 'median ms/batch', 'p10-p90 ms', 'examples/s (all batches)',
                 'examples/s (median batch)'), rows)


def _eval_table(cases):
  rows = [[case['name'], case['dataset']['name'], case['eval']['split'],
           case['eval']['num_examples'], fmt(case['eval']['loss']),
           percent(case['eval']['accuracy']), fmt(case['eval']['wall_s'])]
          for case in cases]
  return table(('case', 'data', 'split', 'examples', 'loss', 'accuracy', 'wall s'), rows)


def _compile_table(cases):
  """Compile-only cases: what the model costs, per example, without running it."""
  rows = []
  for case in cases:
    cfg, params, mem = case['config'], case['params'], case['memory']
    fwd, train = case['xla_forward']['flops_per_example'], case['xla']['flops_per_example']
    rows.append([
        case['name'], case['status'], cfg.get('model'),
        'x'.join(map(str, cfg.get('image_shape') or ())) or 'n/a', cfg.get('batch_size'),
        params['total'] or 'n/a', params['trainable'] or 'n/a',
        'n/a' if params['non_trainable'] is None else params['non_trainable'],
        fmt(fwd, 1e-9), fmt(train, 1e-9), times(_ratio(train, fwd)),
        fmt(case['xla']['bytes_accessed'], 1e-6), fmt(mem['temp_bytes'], 1e-6),
        fmt(mem['argument_bytes'], 1e-6), compile_cell(case)])
  return table(('case', 'status', 'model', 'input', 'batch', 'params', 'trainable',
                 'non-trainable', 'fwd GFLOP/ex', 'train GFLOP/ex', 'train/fwd',
                 'train MB accessed', 'temp MB', 'argument MB', 'compile s'), rows)


def _stopped(training):
  if training['stop_reason'] == 'diverged':
    return f'diverged at step {training["diverged_at_step"]}'
  if training['stop_reason'] == 'early_stopping':
    return f'early stop (best epoch {training["best_epoch"]})'
  return training['stop_reason'] or 'n/a'


def _training_table(cases):
  """Training runs: the seeds' summary row (min losses, best accuracy, epochs, time)."""
  rows = []
  for case in cases:
    cfg, tr = case['config'], case['training']
    share = (None if not tr['train_s'] or tr['data_wait_s'] is None
             else tr['data_wait_s'] / tr['train_s'])
    rows.append([
        case['name'], case['status'], cfg.get('model'), cfg.get('transfer'),
        case['params']['trainable'] or 'n/a', tr['epochs_run'] or 0,
        f'{tr["steps_per_epoch"]} ({tr["last_batch"]})' if tr['last_batch'] is not None
        else 'n/a', _stopped(tr),
        fmt(tr['min_train_loss']), fmt(tr['min_eval_loss']), percent(tr['best_eval_accuracy']),
        fmt(tr['train_s']), fmt(tr['eval_s']), percent(share), fmt(tr['mean_step_s'], 1e3),
        fmt(tr['epoch_s']), fmt(tr['feature_cache_s'])])
  return table(('case', 'status', 'model', 'transfer', 'trainable', 'epochs',
                 'steps/epoch (last batch)', 'stopped',
                 'min train loss', 'min val loss', 'best val acc', 'train s', 'eval s',
                 'data wait', 'mean step ms', 's/epoch', 'feature cache s'), rows)


def _checkpoint_table(cases):
  """Per case: its saves, what blocked training, and how it resumed."""
  rows = []
  for case in cases:
    ck = case['checkpoint']
    saves = ck['saves'] or []
    rows.append([
        case['name'], len(saves), ', '.join(sorted({s['reason'] for s in saves})) or 'n/a',
        fmt(ck['blocking_s']),
        fmt(max((s['blocking_s'] for s in saves if s['blocking_s'] is not None), default=None)),
        fmt(ck['total_s']), percent(ck['blocking_share']),
        'no' if ck['resumed_from_step'] is None else f'step {ck["resumed_from_step"]}',
        ck['resumes'], (case['fingerprint'] or 'n/a')[:16]])
  return table(('case', 'saves', 'why', 'blocking s', 'max blocking s', 'save total s',
                 'blocking share', 'resumed from', 'resumes', 'fingerprint'), rows)


def _scaling_table(rows):
  return table(
      ('case', 'mode', 'parallel', 'devices', 'global batch', 'per device', 'median step ms',
       'examples/s', 'speed-up', 'efficiency', 'collective MB/step'),
      [[row['case'], row['mode'], row['parallel'], row['devices'], row['batch_size'],
        row['per_device_batch'], fmt(row['step_time_s'], 1e3), fmt(row['examples_per_s']),
        times(row['speedup']), percent(row['efficiency']),
        fmt(row['collective_bytes'], 1e-6)] for row in rows])


def _curve(values, scale=1.0):
  return ' '.join(fmt(v, scale) for v in values) or 'n/a'


def _curves(case):
  history = case['training']['history'] or []
  lines = [f'- **{case["name"]}** train loss: {_curve(r["train_loss"] for r in history)}']
  if any(r['eval_loss'] is not None for r in history):
    lines.append(f'  val loss: {_curve(r["eval_loss"] for r in history)}; val accuracy %: '
                 f'{_curve((r["eval_accuracy"] for r in history), 100)}')
  return lines


# Rows each profile table shows (report.json keeps them all).
_TOP_OPS, _TOP_LAYERS = 10, 12
# A profile whose steps ran outside this ratio of the timed median describes them loosely.
COVERAGE_RANGE = (0.9, 1.1)
_PROFILE_COLUMNS = ('ms/step', 'share', 'GFLOP', 'MB', 'GFLOP/s', 'GB/s', 'bound',
                    'over roofline')


def roofline(flops, nbytes, dtype, peaks):
  """(seconds, 'compute' or 'memory') at the run's measured peaks, or (None, None)
  without them (or with nothing to do)."""
  peaks = peaks or {}
  peak = (peaks.get('matmul_flops_per_s') or {}).get(dtype)
  bandwidth = peaks.get('copy_bytes_per_s')
  if not (peak and bandwidth) or not (flops or nbytes):
    return None, None
  compute, memory = (flops or 0) / peak, (nbytes or 0) / bandwidth
  return max(compute, memory), 'compute' if compute >= memory else 'memory'


def _profile_cells(row, step_s, dtype, peaks):
  """ms/step, share of the step, GFLOP, MB, achieved GFLOP/s and GB/s, roofline bound
  and measured time over the roofline time of one profile row."""
  t = row['time_s']
  roof, bound = roofline(row['flops'], row['bytes'], dtype, peaks)
  rate = (lambda amount: None if not t else amount / t)
  return [fmt(t, 1e3), percent(t / step_s if step_s else None), fmt(row['flops'], 1e-9),
          fmt(row['bytes'], 1e-6), fmt(rate(row['flops']), 1e-9), fmt(rate(row['bytes']), 1e-9),
          bound or 'n/a', times(roof and t / roof)]


def profile_summary(case):
  """One line: what a profile covers, and how its time splits."""
  p, median = case['profile'], case['step_time_s']['median']
  line = (f'**{case["name"]}**: {p["steps"]} profiled steps (trace: `{p["directory"]}`); a '
          f'profiled step took {fmt(p["step_s"], 1e3)} ms against a timed median of '
          f'{fmt(median, 1e3)} ms (coverage {percent(p["coverage"])}). HLO ops ran for '
          f'{percent(p["op_s"] / p["step_s"] if p["step_s"] else None)} of it; '
          + ', '.join(f'{phase} {fmt(s, 1e3)} ms' for phase, s in p['phases'].items()) + '.')
  low, high = COVERAGE_RANGE
  if p['coverage'] is not None and not low <= p['coverage'] <= high:
    line += (f' The profiled steps took {times(p["coverage"])} the timed ones, so they '
             'describe them loosely: read the shares, not the milliseconds.')
  return line


def _profile_section(case, peaks):
  p, dtype = case['profile'], case['config'].get('dtype')

  def cells(row):
    return _profile_cells(row, p['step_s'], dtype, peaks)

  lines = ['', profile_summary(case), '']
  lines += table(('category',) + _PROFILE_COLUMNS,
                 [[row['category']] + cells(row) for row in p['categories']])
  lines += ['', f'Top {_TOP_OPS} ops:', '']
  lines += table(('op', 'category', 'layer', 'phase') + _PROFILE_COLUMNS,
                 [[row['op'], row['category'], row['layer'], row['phase'] or 'n/a'] + cells(row)
                  for row in p['ops'][:_TOP_OPS]])
  shown = (f'top {_TOP_LAYERS} of {len(p["layers"])}' if len(p['layers']) > _TOP_LAYERS
           else f'all {len(p["layers"])}')
  lines += ['', f'Layers ({shown}, most time first):', '']
  lines += table(('layer', 'ops') + _PROFILE_COLUMNS,
                 [[row['layer'], row['ops']] + cells(row) for row in p['layers'][:_TOP_LAYERS]])
  return lines


def _profiles(cases, peaks):
  lines = ['', '## Where the time goes', '',
           'Profiled cases: extra steps after the timed ones, traced with jax.profiler; wall '
           'time shared among the HLO ops running at each instant, joined with the compiled '
           'HLO for category, layer (Flax module path), phase, FLOPs and bytes. idle: no op '
           'of the step was running. Roofline at the peaks measured in this run; GFLOP and '
           'MB per step. Plot: profile.png. Open a trace with `tensorboard --logdir '
           'WORKDIR/profiles/CASE` (the profile plugin, from the xprof package).']
  for case in cases:
    lines += _profile_section(case, peaks)
  return lines


def to_markdown(report, sections=()):
  lines = [f'# Benchmark report: {report["suite"]["name"]}', '',
           _environment_line(report['environment'])]
  if report['suite']['notes']:
    lines += ['', report['suite']['notes']]
  by_benchmark = collections.defaultdict(list)
  for case in report['cases']:
    by_benchmark[case['config'].get('benchmark')].append(case)
  compiled, inputs = by_benchmark.pop('compile', []), by_benchmark.pop('input', [])
  timed = [c for c in report['cases'] if c['config'].get('benchmark') in by_benchmark]
  evaluated = [c for c in report['cases'] if c['eval']['num_examples'] is not None]
  if timed:
    lines += [''] + _timed_table(timed)
    lines += ['', 'data wait: share of the timed step time the device idled waiting for its '
              'next batch. compile s "(cached)": read from the compilation cache, not compiled.']
    measured = [c for c in timed if c['utilization']['model_flops'] is not None
                and c['step_time_s']['median']]
    if measured:
      unknown = sorted({c['utilization']['peak_source'] for c in measured
                        if c['utilization']['peak_flops_per_s'] is None})
      lines += ['', '## Utilisation', '', 'Model FLOPs: the matrix products and convolutions '
                'the step asks for, over the global batch (analytic, from its jaxpr: no '
                'rematerialisation, no elementwise work). XLA FLOPs: what the compiled program '
                'runs on all devices, rematerialisation, elementwise work and the uint8 '
                "normalisation (its share apart) included. MFU = model FLOP/s over the devices' "
                'datasheet peak, HFU the same with XLA FLOPs; MFU of measured: against the '
                'matmul peak measured in this run.'
                + (f' No MFU: {"; ".join(unknown)}.' if unknown else ''), '']
      lines += _utilization_table(measured, report['environment']['peaks'])
  trained = [c for c in report['cases'] if c['training']['epochs_run'] is not None]
  if trained:
    lines += ['', '## Training', '', 'Per case: losses and accuracy over the epochs run (val = '
              'eval_split, exact), wall time in training steps and in evaluation, the data '
              'wait share of training time, the mean step time from the timer, and the '
              'feature cache build time. Curves: training_curves.png.', '']
    lines += _training_table(trained) + ['', 'Per epoch:', '']
    for case in trained:
      lines += _curves(case)
    lines += ['', '## Checkpoints', '', 'Saves of each training case: time training was '
              'blocked (copying the state off the devices, and waiting for the previous save) '
              'against the time until the save was on disk; the fingerprint (sha256 prefix) '
              'of the final weights and statistics.', ''] + _checkpoint_table(trained)
  if evaluated:
    lines += ['', '## Evaluation', '', 'Exact metrics over every example of the split, '
              'after the timed steps.', ''] + _eval_table(evaluated)
  if inputs:
    lines += ['', '## Input pipeline only', '',
              'Batches delivered to the devices per second, no model.', ''] + _input_table(inputs)
  if compiled:
    lines += ['', '## Compile-only cases', '',
              'XLA cost and memory analyses of the compiled train step (the forward pass '
              'for fwd), at the batch shown; nothing was run.', ''] + _compile_table(compiled)
  failed = [case for case in report['cases'] if case['status'] == 'failed']
  if failed:
    lines += ['', '## Failed cases', '']
    lines += [f'- {case["name"]}: {case["error"]}' for case in failed]
  if report['scaling']:
    lines += ['', '## Scaling', '', 'Weak scaling keeps the batch per device, strong scaling '
              'the global batch. Speed-up: examples/s over the same mode on the fewest '
              'devices; efficiency: speed-up over the device ratio. Collective MB: results of '
              'the cross-device collectives in one device\'s compiled step. Plot: '
              'scaling.png.', ''] + _scaling_table(report['scaling'])
  profiled = [c for c in report['cases'] if c['profile']['steps'] is not None]
  if profiled:
    lines += _profiles(profiled, report['environment']['peaks'])
  if report['ratios']:
    lines += ['', '## Parameters vs FLOPs vs time', '']
    lines += table(('ratio', 'params', 'XLA FLOPs', 'bytes accessed', 'median step time',
                     'epoch time'),
                    [[f'{row["numerator"]} / {row["denominator"]}', times(row['params']),
                      times(row['flops']), times(row['bytes_accessed']),
                      times(row['step_time']), times(row['epoch_time'])]
                     for row in report['ratios']])
    lines.append('')
    lines += [_verdict(row) for row in report['ratios']]
  if sections:
    lines += [''] + list(sections)
  return '\n'.join(lines) + '\n'
