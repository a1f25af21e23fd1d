"""report.md's tables, one function per section, each over the cases it shows."""

from bench.results import schema
from bench.results import significance
from bench.results.analysis import roofline
from bench.results.formatting import fmt, percent, table, times


def _spread_ms(st):
  return 'n/a' if st['p10'] is None else f'{fmt(st["p10"], 1e3)}-{fmt(st["p90"], 1e3)}'


def timed_table(cases):
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


def utilization_table(cases, peaks):
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


def input_table(cases):
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


def _trained(case):
  """What the evaluated weights were trained for in this run: a training run's epochs, a
  train step benchmark's warm-up and timed steps, or nothing (initial or loaded weights)."""
  if case['training']['epochs_run'] is not None:
    return f'{case["training"]["epochs_run"]} epochs'
  timing = case['timing']
  if case['config'].get('benchmark') != 'train_step':
    return 'none'
  if timing['warmup_steps'] is None or timing['timed_steps'] is None:
    return 'n/a'
  return f'{timing["warmup_steps"] + timing["timed_steps"]} steps'


def eval_table(cases):
  """Exact metrics per case, the accuracy's 95% interval and what guessing scores."""
  rows = []
  for case in cases:
    ev, classes = case['eval'], case['dataset']['num_classes']
    interval = significance.accuracy_interval(ev['accuracy'], ev['num_examples'])
    rows.append([case['name'], case['dataset']['name'], ev['split'], ev['num_examples'],
                 _trained(case), fmt(ev['loss']), percent(ev['accuracy']),
                 'n/a' if interval is None else '-'.join(map(percent, interval)),
                 percent(1 / classes if classes else None), fmt(ev['wall_s'])])
  return table(('case', 'data', 'split', 'examples', 'trained here', 'loss', 'accuracy',
                 '95% interval', 'chance (1/classes)', 'wall s'), rows)


def compile_table(cases):
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
        fmt(fwd, 1e-9), fmt(train, 1e-9), times(schema.ratio(train, fwd)),
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


def training_table(cases):
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


def checkpoint_table(cases):
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


def scaling_table(rows):
  return table(
      ('case', 'mode', 'parallel', 'devices', 'global batch', 'per device', 'median step ms',
       'examples/s', 'speed-up', 'efficiency', 'collective MB/step'),
      [[row['case'], row['mode'], row['parallel'], row['devices'], row['batch_size'],
        row['per_device_batch'], fmt(row['step_time_s'], 1e3), fmt(row['examples_per_s']),
        times(row['speedup']), percent(row['efficiency']),
        fmt(row['collective_bytes'], 1e-6)] for row in rows])


def _curve(values, scale=1.0):
  return ' '.join(fmt(v, scale) for v in values) or 'n/a'


def curves(case):
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


def profiles(cases, peaks):
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
