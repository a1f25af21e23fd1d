"""Which cost predicts step time here: correlations, a roofline, a fitted model.

Over the timed cases of a report (status ok, with a median step time):
  * each proxy (parameters, trainable parameters, XLA FLOPs, XLA bytes accessed,
    activation bytes, compiled temp bytes) against step time: Spearman's rank
    correlation with its permutation p (significance.py), Pearson's r of log time on
    log proxy with its R^2 and slope, and
    the median fold error of that log-log fit predicting each case from the
    others (leave-one-out), so a proxy is not judged on the case it was fitted to;
  * the roofline: predicted time = max(FLOPs / peak FLOP/s, bytes / peak
    bandwidth), with the peaks measured in the same run (environment.peaks), and
    its error per case. Nothing is fitted: it says how far each case is from what
    the device could do;
  * time ~ a * FLOPs + b * bytes (a, b >= 0, least squares on relative errors so
    that slow cases do not outweigh fast ones), judged leave-one-out.
Fold error: max(predicted / measured, measured / predicted), 1 = exact (fits.py).
Cases are compared in pairs only where they do the same work per step (`work`).

Its command line is bench/analysis.py (python -m bench.analysis REPORT.json).
"""

import collections
import itertools
import math

import numpy as np

from bench.core.stats import median as _median
from bench.results import fits
from bench.results import formatting
from bench.results import significance

# Proxies: key, label, and where a case record holds it.
PROXIES = (
    ('params', 'parameters', lambda c: c['params']['total']),
    ('trainable', 'trainable parameters', lambda c: c['params']['trainable']),
    ('flops', 'XLA FLOPs', lambda c: c['xla']['flops']),
    ('bytes', 'XLA bytes accessed', lambda c: c['xla']['bytes_accessed']),
    ('activations', 'activation bytes (leaf layer outputs)',
     lambda c: c['memory']['activation_bytes']),
    ('temp', 'compiled temp bytes', lambda c: c['memory']['temp_bytes']),
)
LABELS = dict((key, label) for key, label, _ in PROXIES)
# Fewer timed cases than this: no analysis (a correlation of three points says little).
MIN_CASES = 4
# How many cases and pairs the verdict names.
_NAMED = 3


def points(report):
  """One dict per analysable case: name, dtype, time (median step, s) and each proxy."""
  rows = []
  for case in report['cases']:
    time = case['step_time_s']['median']
    if case['status'] != 'ok' or not time or case['config'].get('benchmark') == 'input':
      continue
    row = {'name': case['name'], 'dtype': case['config'].get('dtype'), 'time': time,
           'dominant': dominant(case), 'work': work(case)}
    row.update({key: get(case) for key, _, get in PROXIES})
    rows.append(row)
  return rows


def work(case):
  """What a step of `case` processes: (batch, input shape, dtype, devices). Two cases' time
  ratio says what their models cost only where these are the same."""
  cfg = case['config']
  return (cfg.get('batch_size'), tuple(cfg.get('image_shape') or ()), cfg.get('dtype'),
          case.get('num_devices'))


def dominant(case):
  """The category of a profiled case's step that took the most time (idle included):
  {category, share, flops_per_s, bytes_per_s}; None without a profile."""
  p = case.get('profile') or {}
  if not p.get('steps') or not p['step_s']:
    return None
  top = max(p['categories'], key=lambda row: row['time_s'])
  t = top['time_s']
  return {'category': top['category'], 'share': t / p['step_s'],
          'flops_per_s': top['flops'] / t if t else None,
          'bytes_per_s': top['bytes'] / t if t else None}


def _dominant_text(row):
  """'; 61% of its profiled step in pooling (...) at 2.1 GB/s and 0.5 GFLOP/s' ('' without
  a profile)."""
  top = row.get('dominant')
  if not top:
    return ''
  text = f'; {top["share"]:.0%} of its profiled step in {top["category"]}'
  if top['bytes_per_s']:
    text += (f' at {_fmt(top["bytes_per_s"], 1e-9)} GB/s and {_fmt(top["flops_per_s"], 1e-9)} '
             'GFLOP/s')
  return text


def _finite(value):
  value = float(value)
  return value if math.isfinite(value) else None


def _agreement(x, t):
  """Spearman's rho and its permutation p (significance.spearman), Pearson's r of log t
  on log x, its R^2 and slope, and whether x points the wrong way: more of it going with
  less time (a negative rho or slope), where a high R^2 measures that inverse trend, not
  a cost."""
  if len(t) < 3 or np.ptp(np.log(x)) < fits.MIN_SPREAD:
    return {'spearman': None, 'spearman_p': None, 'pearson_log': None, 'r2_log': None,
            'slope': None, 'wrong_way': None}
  rho, p = significance.spearman(x, t)
  with np.errstate(invalid='ignore', divide='ignore'):  # constant times: r is nan, then None
    r = np.corrcoef(np.log(x), np.log(t))[0, 1]
  slope = float(fits.loglog_fit(x, t)[0])
  return {'spearman': rho, 'spearman_p': p, 'pearson_log': _finite(r),
          'r2_log': _finite(r * r), 'slope': slope,
          'wrong_way': bool((rho or 0) < 0 or slope < 0)}


def _proxy_row(key, rows):
  usable = [r for r in rows if r[key] and r[key] > 0]
  x = np.array([r[key] for r in usable], dtype=np.float64)
  t = np.array([r['time'] for r in usable], dtype=np.float64)
  row = {'proxy': key, 'label': LABELS[key], 'n': len(usable), **_agreement(x, t)}
  predictions = {}
  if row['slope'] is not None:
    predictions = dict(zip((r['name'] for r in usable),
                           fits.leave_one_out(fits.loglog_fit, fits.loglog_predict, x, t)))
  row['fold_error'] = _median(fits.fold_error(predictions.get(r['name']), r['time'])
                              for r in usable)
  return row, predictions


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


def case_roofline(row, peaks):
  """(predicted seconds, 'compute' or 'memory') of a case, or (None, None) without
  its FLOPs, bytes or a peak for its dtype."""
  if not (row['flops'] and row['bytes']):
    return None, None
  return roofline(row['flops'], row['bytes'], row['dtype'], peaks)


def _predictor_row(key, label, rows, predictions):
  usable = [r for r in rows if (predictions.get(r['name']) or 0) > 0]
  x = np.array([predictions[r['name']] for r in usable], dtype=np.float64)
  t = np.array([r['time'] for r in usable], dtype=np.float64)
  return {'proxy': key, 'label': label, 'n': len(usable), **_agreement(x, t),
          'fold_error': _median(fits.fold_error(predictions[r['name']], r['time']) for r in usable)}


def _inverted_pairs(rows):
  """Pairs doing the same work (batch, input, dtype, devices) where the case with fewer
  parameters is slower, most inverted first (by time ratio over parameter ratio), each
  case named first at most once."""
  pairs = []
  for a, b in itertools.permutations(rows, 2):
    if (a['work'] == b['work'] and a['params'] and b['params'] and a['params'] < b['params']
        and a['time'] > b['time']):
      pairs.append({'case': a['name'], 'other': b['name'],
                    'params_ratio': a['params'] / b['params'], 'time_ratio': a['time'] / b['time']})
  pairs.sort(key=lambda p: p['time_ratio'] / p['params_ratio'], reverse=True)
  chosen, named = [], set()
  for pair in pairs:
    if pair['case'] not in named:
      named.add(pair['case'])
      chosen.append(pair)
  return chosen


def missing(report):
  """Why `report` has no analysis section (a line), or None where it has one."""
  n = len(points(report))
  if n >= MIN_CASES:
    return None
  return (f'"Does parameter count predict step time?" needs {MIN_CASES} or more timed cases '
          f'with status ok (input-only cases do not count); this report has {n}.')


def analyze(report):
  """The analysis of `report` as plain data, or None with fewer than MIN_CASES cases."""
  rows = points(report)
  if len(rows) < MIN_CASES:
    return None
  peaks = report['environment'].get('peaks') or {}
  proxies, by_params = [], {}
  for key, _, _ in PROXIES:
    row, predictions = _proxy_row(key, rows)
    proxies.append(row)
    if key == 'params':
      by_params = predictions
  roof = {r['name']: case_roofline(r, peaks) for r in rows}
  fitted = [r for r in rows if r['flops'] and r['bytes']]
  x = np.array([[r['flops'], r['bytes']] for r in fitted], dtype=np.float64).reshape(-1, 2)
  t = np.array([r['time'] for r in fitted], dtype=np.float64)
  two_term, coefficients = {}, None
  if len(fitted) >= 3:
    coefficients = [float(c) for c in fits.two_term_fit(x, t)]
    two_term = dict(zip((r['name'] for r in fitted),
                        fits.leave_one_out(fits.two_term_fit, fits.two_term_predict, x, t)))
  predictors = [
      _predictor_row('roofline', 'roofline max(FLOPs / peak, bytes / bandwidth)', rows,
                     {name: predicted for name, (predicted, _) in roof.items()}),
      _predictor_row('two_term', 'a * FLOPs + b * bytes (leave-one-out)', rows, two_term)]
  cases = []
  for r in rows:
    predicted, bound = roof[r['name']]
    cases.append({**r, 'roofline_s': predicted, 'bound': bound,
                  'measured_over_roofline': predicted and r['time'] / predicted,
                  'two_term_s': two_term.get(r['name']), 'params_fit_s': by_params.get(r['name'])})
  return {'peaks': peaks, 'proxies': proxies, 'predictors': predictors, 'cases': cases,
          'two_term': None if coefficients is None else {'a_s_per_flop': coefficients[0],
                                                         'b_s_per_byte': coefficients[1]},
          'inverted_pairs': _inverted_pairs(rows)[:_NAMED]}


# ------------------------------------------------------------------------ Markdown

_fmt, _times = formatting.fmt, formatting.times


def _direction(row):
  if row['wrong_way'] is None:
    return 'n/a'
  return '**points the wrong way**' if row['wrong_way'] else 'more, slower'


def _correlation_table(result):
  return formatting.table(
      ('proxy or predictor', 'cases', 'direction', 'Spearman rho', 'p (rho = 0)',
       'Pearson r (log-log)', 'R^2 (log-log)', 'slope (log-log)', 'median fold error'),
      [[row['label'], row['n'], _direction(row), _fmt(row['spearman']), _p(row['spearman_p']),
        _fmt(row['pearson_log']),
        _fmt(row['r2_log']), _fmt(row['slope']), _times(row['fold_error'])]
       for row in result['proxies'] + result['predictors']])


def _p(value):
  return 'n/a' if value is None else f'{value:.2g}'


def _case_table(result):
  rows = []
  for c in sorted(result['cases'], key=lambda c: c['time']):
    rows.append([c['name'], _count(c['params']), _fmt(c['flops'], 1e-9), _fmt(c['bytes'], 1e-6),
                 _fmt(c['activations'], 1e-6), _fmt(c['temp'], 1e-6), _fmt(c['time'], 1e3),
                 _fmt(c['roofline_s'], 1e3), c['bound'] or 'n/a',
                 _times(c['measured_over_roofline']), _fmt(c['two_term_s'], 1e3),
                 _fmt(c['params_fit_s'], 1e3)])
  return formatting.table(
      ('case', 'params', 'GFLOP', 'MB accessed', 'activation MB', 'temp MB', 'measured ms',
       'roofline ms', 'bound', 'measured / roofline', 'a*F+b*B ms (LOO)',
       'from params ms (LOO)'), rows)


def _count(value):
  return 'n/a' if value is None else f'{value:,}'


def _slower(predicted, measured):
  ratio = measured / predicted
  return f'{_fmt(ratio)}x slower' if ratio >= 1 else f'{_fmt(1 / ratio)}x faster'


def _rate(name, seconds_per_unit, unit):
  if not seconds_per_unit:
    return f'{name} = 0 (the other term explains the times alone)'
  return f'{name} = 1 / ({_fmt(1 / seconds_per_unit, 1e-9)} {unit})'


def _verdict(result):
  by_key = {row['proxy']: row for row in result['proxies'] + result['predictors']}
  # A proxy pointing the wrong way is never the best, whatever its R^2.
  ranked = sorted((row for row in result['proxies']
                   if row['r2_log'] is not None and not row['wrong_way']),
                  key=lambda row: row['r2_log'], reverse=True)
  wrong = [row['label'] for row in result['proxies'] if row['wrong_way']]
  params = by_key['params']
  lines = []
  if params['wrong_way']:
    lines.append(
        f'- **Parameter count points the wrong way**: here the cases with more parameters '
        f'took less time per step (Spearman rho = {_fmt(params["spearman"])}, log-log slope '
        f'{_fmt(params["slope"])}). Its R^2 = {_fmt(params["r2_log"])} measures that inverse '
        'trend; it is not parameters costing time. The log-log fit on the other cases, '
        'with its negative slope, predicts a case\'s time within a median factor of '
        f'{_times(params["fold_error"])}.')
  elif params['r2_log'] is not None:
    lines.append(
        f'- **Parameter count** explains R^2 = {_fmt(params["r2_log"])} of the variance of log '
        f'step time (Spearman rho = {_fmt(params["spearman"])}); fitted on the other cases it '
        f'predicts a case\'s time within a median factor of {_times(params["fold_error"])}.')
  elif params['n'] < 3:
    lines.append(f'- **Parameter count** is known for {params["n"]} of these cases: too few '
                 'to correlate with step time.')
  else:
    lines.append('- **Parameter count** does not vary over these cases: it cannot predict '
                 'their step times.')
  if ranked:
    best = ranked[0]
    lines.append(
        f'- The best single proxy here is **{best["label"]}**: R^2 = {_fmt(best["r2_log"])}, '
        f'rho = {_fmt(best["spearman"])}, median fold error {_times(best["fold_error"])}. '
        'R^2 by proxy: ' + ', '.join(f'{row["label"]} {_fmt(row["r2_log"])}'
                                     for row in ranked) + '.')
  elif wrong:
    lines.append('- No proxy here points the right way (more of it, more time): none predicts '
                 'these step times.')
  if wrong:
    lines.append('- Pointing the wrong way (more of it, less time), so left out of the ranking: '
                 + ', '.join(wrong) + '.')
  measured = [c['measured_over_roofline'] for c in result['cases'] if c['measured_over_roofline']]
  if measured:
    peaks = result['peaks']
    flops = ', '.join(f'{_fmt(v, 1e-9)} GFLOP/s ({d})'
                      for d, v in sorted(peaks['matmul_flops_per_s'].items()))
    memory_bound = sum(c['bound'] == 'memory' for c in result['cases'])
    lines.append(
        f'- **Roofline** with the peaks measured in this run (matmul {flops}; copy '
        f'{_fmt(peaks["copy_bytes_per_s"], 1e-9)} GB/s): measured time is a median '
        f'{_times(_median(measured))} the roofline time (from {_times(min(measured))} to '
        f'{_times(max(measured))}); {memory_bound} of {len(measured)} cases are memory-bound '
        f'by it. Its rank correlation with time is rho = {_fmt(by_key["roofline"]["spearman"])}.')
    beat = collections.Counter(c['bound'] for c in result['cases']
                               if c['measured_over_roofline'] and c['measured_over_roofline'] < 1)
    if beat['memory']:
      lines.append(f'  {beat["memory"]} memory-bound cases ran faster than their roofline: '
                   'XLA\'s bytes accessed counts every operand read and write, including those '
                   'a cache serves, so the memory term overestimates cases whose working set '
                   'fits in cache.')
    if beat['compute']:
      lines.append(f'  {beat["compute"]} compute-bound case{"s" * (beat["compute"] > 1)} beat '
                   'the measured matmul peak.')
  if result['two_term']:
    a, b = result['two_term']['a_s_per_flop'], result['two_term']['b_s_per_byte']
    lines.append(
        f'- **time = a * FLOPs + b * bytes** fitted on all cases: {_rate("a", a, "GFLOP/s")}, '
        f'{_rate("b", b, "GB/s")}. Left out of the fit, each case is predicted within a '
        f'median factor of {_times(by_key["two_term"]["fold_error"])}.')
  mislead = sorted((c for c in result['cases'] if c['params_fit_s']),
                   key=lambda c: fits.fold_error(c['params_fit_s'], c['time']), reverse=True)
  if mislead:
    lines.append('- **Where parameters mislead most** (time predicted from the parameter '
                 'count by the log-log fit on the other cases):')
    lines += [f'  - {c["name"]}: {_count(c["params"])} parameters predict '
              f'{_fmt(c["params_fit_s"], 1e3)} ms; it takes {_fmt(c["time"], 1e3)} ms, '
              f'{_slower(c["params_fit_s"], c["time"])}{_dominant_text(c)}.'
              for c in mislead[:_NAMED]]
  by_name = {c['name']: c for c in result['cases']}
  for pair in result['inverted_pairs']:
    lines.append(f'- {pair["case"]} has {_times(pair["params_ratio"])} the parameters of '
                 f'{pair["other"]} and takes {_times(pair["time_ratio"])} its time per step '
                 '(same batch and input shape)'
                 f'{_dominant_text(by_name[pair["case"]])}.')
  return lines


def markdown(result):
  """report.md's verdict section: lines, empty without an analysis."""
  if result is None:
    return []
  return (['## Does parameter count predict step time?', '',
           f'{len(result["cases"])} timed cases; each proxy against the median step time. '
           'Fold error: max(predicted / measured, measured / predicted), median over the cases, '
           'for the log-log fits and a*F+b*B predicting each case from the others '
           '(leave-one-out). Plots, written when the run ends (or by python -m bench.analysis '
           '--plots=DIR): proxies.png, roofline.png.', '']
          + _correlation_table(result) + ['', significance.P_NOTE, ''] + _verdict(result)
          + ['', 'Per case:', ''] + _case_table(result))
