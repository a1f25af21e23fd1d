"""What predicts step time: the kernel predictor, which never saw a model, beside the
proxies a fit on other model families gives.

The kernel predictor's figures are a run's own (the case record's `kernels` block,
bench/run/kernels.py Predictor): a step is the sum of its kernels, each predicted
by its kind's predictor learned from randomly sampled kernels only, plus what a
step pays beyond its kernels, probed on the machine; its interval adds up the
kernels' held-out errors. Nothing of it is fitted on a case, so it is judged on
every case as it is. Where each of a case's kernels was also measured alone
(`flax-bench kernels measure`), the kernel sum is there too: what the step would
take if each kernel ran as it ran alone, the check of additivity.

The proxies are judged leave-one-family-out: each model family (FAMILIES) is
predicted by a fit on the others only: a log-log fit of parameters, XLA FLOPs,
bytes accessed or compiled temp bytes, and the two-term a * FLOPs + b * bytes.
(bench/results/analysis.py's correlations judge the same proxies leave-one-out,
case by case, which flatters them: a family's other sizes are in the fit.)
Fold error: max(predicted / measured, measured / predicted).
"""

import numpy as np

from bench.results import analysis
from bench.results import fits
from bench.results import formatting

# A case's family, from its model's name: the first prefix that matches; any other
# model is a family of its own.
FAMILIES = (('seed_mlp', 'MLPs'), ('seed_cnn', 'seed CNN'), ('seed_cifar', 'CIFAR nets'),
            ('width_', 'width nets'), ('resnet', 'ResNets'), ('mobilenet', 'MobileNetV2'),
            ('xception', 'Xception'))
# Families a leave-one-family-out judgement needs at the least: one to hold out, two to fit.
MIN_FAMILIES = 3
# Proxies fitted log-log: bench/results/analysis.py's (key, label, where a case has it).
PROXIES = tuple(p for p in analysis.PROXIES if p[0] in ('params', 'flops', 'bytes', 'temp'))
TWO_TERM, KERNELS, KERNEL_SUM = 'two_term', 'kernels', 'kernel_sum'
LABELS = {**{key: label for key, label, _ in PROXIES}, TWO_TERM: 'a * FLOPs + b * bytes',
          KERNELS: 'kernel predictor (sampled kernels only)',
          KERNEL_SUM: 'kernel sum (each kernel measured alone)'}
FITTED = tuple(k for k, _, _ in PROXIES) + (TWO_TERM,)
KEYS = (KERNELS, KERNEL_SUM) + FITTED
# How each predictor was judged, for the table.
JUDGED = {KERNELS: 'never fitted on a model', KERNEL_SUM: 'measured, not fitted',
          **{key: 'leave one family out' for key in FITTED}}
# Within this factor a prediction counts as good (the goal's bar).
GOOD = 1.2


def family(model):
  return next((name for prefix, name in FAMILIES if model.startswith(prefix)), model)


def families_of(cases):
  """The model families of `cases`, sorted."""
  return sorted({family(c['config']['model']) for c in cases})


def too_few_families(cases, what):
  """'this report has N WHAT of K families: a, b.' where `cases` (N of them, called
  WHAT) span fewer than MIN_FAMILIES model families, what a leave-one-family-out
  judgement needs; None where they span enough."""
  families = families_of(cases)
  if len(families) >= MIN_FAMILIES:
    return None
  return f'this report has {len(cases)} {what}' + (
      f' of {len(families)} {"family" if len(families) == 1 else "families"}: '
      f'{", ".join(families)}.' if cases else '.')


def kernel_block(case):
  """The case's kernel predictor figures; {} for a report written before it had them."""
  return case.get('kernels') or {}


def usable(report):
  """The report's cases a step time is predicted for: ok, timed, not input-pipeline."""
  return [c for c in report['cases'] if c['status'] == 'ok' and c['step_time_s']['median']
          and c['config'].get('benchmark') != 'input']


def _inputs(key, case):
  """The figures proxy `key` predicts `case` from, as an array; None where it lacks one
  (a compile that gave no count, a failed measurement) or one is not positive."""
  if key == TWO_TERM:
    values = (case['xla']['flops'], case['xla']['bytes_accessed'])
  else:
    values = (next(get for k, _, get in PROXIES if k == key)(case),)
  if any(v is None or not v > 0 for v in values):
    return None
  return np.array(values, float)


def _proxy_predictor(key, fitted):
  """Predicts a case's time from the proxy `key`, fitted on those of `fitted` that have
  its figures; None if it cannot be fitted. The predictor gives None for a case
  without them."""
  fitted = [(x, c['step_time_s']['median']) for x, c in
            ((_inputs(key, c), c) for c in fitted) if x is not None]
  if len(fitted) < 2:
    return None
  x = np.array([x for x, _ in fitted])
  t = np.array([t for _, t in fitted], float)
  if key == TWO_TERM:
    coefficients = fits.two_term_fit(x, t)
    model = lambda values: fits.two_term_predict(coefficients, values)
  else:
    line = fits.loglog_fit(x[:, 0], t)
    if line is None:
      return None
    model = lambda values: fits.loglog_predict(line, values[0])

  def predict(case):
    values = _inputs(key, case)
    return None if values is None else model(values)
  return predict


def judge(report):
  """Each usable case predicted by the kernel predictor (as the run recorded it), its
  kernel sum where measured, and every proxy fitted on the other families only (with
  MIN_FAMILIES or more). None where there is neither a kernel prediction nor enough
  families. Returns {'cases': [{name, family, measured_s, predicted: {key: s}, low_s,
  high_s}], 'proxies': errors over KEYS, 'inside': cases measured inside the kernel
  interval, 'judged': cases with one, 'why': why the others have none}."""
  cases = usable(report)
  families = families_of(cases)
  lofo = len(families) >= MIN_FAMILIES
  if not cases or not (lofo or any(kernel_block(c).get('predicted_s') for c in cases)):
    return None
  rows = []
  for c in cases:
    block = kernel_block(c)
    rows.append({'name': c['name'], 'family': family(c['config']['model']),
                 'measured_s': c['step_time_s']['median'],
                 'predicted': {KERNELS: block.get('predicted_s'), KERNEL_SUM: block.get('sum_s')},
                 'low_s': block.get('low_s'), 'high_s': block.get('high_s')})
  for held_out in families if lofo else ():
    fitted = [c for c in cases if family(c['config']['model']) != held_out]
    for key in FITTED:
      predictor = _proxy_predictor(key, fitted)
      for case, row in zip(cases, rows):
        if row['family'] == held_out:
          row['predicted'][key] = predictor(case) if predictor else None
  intervals = [r for r in rows if r['low_s'] is not None]
  return {'cases': rows, 'proxies': errors(rows),
          'inside': sum(r['low_s'] <= r['measured_s'] <= r['high_s'] for r in intervals),
          'judged': len(intervals),
          'why': sorted({kernel_block(c).get('why') for c in cases} - {None, ''})}


def missing(report):
  """Why `report` has no "What predicts step time" section (a line), or None where it
  can."""
  if judge(report) is not None:
    return None
  cases = usable(report)
  why = sorted({kernel_block(c).get('why') for c in cases} - {None, ''})
  return ('"What predicts step time" needs kernel predictions (a run on a machine whose '
          'kernel database has sampled kernels: `flax-bench kernels sample`) or timed cases '
          f'of {MIN_FAMILIES} or more model families for the proxies; '
          + (too_few_families(cases, 'timed cases') or '')
          + (f' No kernel prediction: {"; ".join(why)}.' if why else ''))


def errors(rows, keys=KEYS, labels=None, measured='measured_s'):
  """[{proxy, label, n, median, worst, within}]: each predictor's fold errors over
  `rows` ({measured: figure, 'predicted': {key: figure}}); within: the share within
  GOOD."""
  labels = labels or LABELS
  out = []
  for key in keys:
    found = [e for e in (fits.fold_error(r['predicted'].get(key), r[measured]) for r in rows)
             if e is not None]
    out.append({'proxy': key, 'label': labels[key], 'n': len(found),
                'median': float(np.median(found)) if found else None,
                'worst': max(found) if found else None,
                'within': float(np.mean([e <= GOOD for e in found])) if found else None})
  return out


def verdict(result):
  """One sentence: which predictor predicts these cases best, by median fold error."""
  ranked = sorted((row for row in result['proxies']
                   if row['n'] and row['proxy'] != KERNEL_SUM), key=lambda row: row['median'])
  if not ranked:
    return 'No predictor could be judged on these cases.'
  best = ranked[0]
  kernel = next(row for row in result['proxies'] if row['proxy'] == KERNELS)
  if best['proxy'] == KERNELS:
    others = ranked[1:]
    return (f'The kernel predictor, which never saw these models, predicts them best: median '
            f'fold error {formatting.times(best["median"])} over {best["n"]} cases (worst '
            f'{formatting.times(best["worst"])})' + (
                f', against {formatting.times(others[0]["median"])} for the best proxy '
                f'fitted on the other families ({others[0]["label"]}).' if others else '.'))
  return (f'{best["label"].capitalize()}, fitted on the other families, predicts these cases '
          f'best: median fold error {formatting.times(best["median"])} over {best["n"]} cases'
          + (f'; the kernel predictor, which never saw these models, '
             f'{formatting.times(kernel["median"])}.' if kernel['n'] else
             '; the run had no kernel predictions.'))


# ------------------------------------------------------------------------ Markdown

def _percent(value):
  return 'n/a' if value is None else f'{value:.0%}'


def errors_table(proxies, judged=None):
  """Markdown lines: each predictor's cases, median and worst fold error and the share
  within GOOD (`errors`); with `judged` ({key: how}), how each was judged."""
  return formatting.table(
      ('predictor', *(('judged',) if judged else ()), 'cases', 'median fold error',
       'worst fold error', f'within {GOOD:g}x'),
      [[row['label'], *((judged[row['proxy']],) if judged else ()), row['n'],
        formatting.times(row['median']), formatting.times(row['worst']), _percent(row['within'])]
       for row in proxies])


def _ms(seconds):
  return formatting.fmt(seconds, 1e3)


def markdown(result):
  """report.md's section on judge's `result`: lines, from a blank one (it follows
  another section's table), empty without a result."""
  if result is None:
    return []
  keys = [k for k in KEYS if any(r['predicted'].get(k) is not None for r in result['cases'])]
  proxies = [row for row in result['proxies'] if row['proxy'] in keys]
  kernels = ('The kernel predictor sums the case\'s kernels (the instructions XLA compiled '
             'its step into), each predicted by its kind\'s predictor learned from randomly '
             'sampled kernels only, plus what a step pays beyond its kernels, probed on this '
             'machine: no case, no model was ever fitted on.' if result['judged'] else
             f'No kernel predictions: {"; ".join(result["why"]) or "none recorded"}.')
  lines = ['', '## What predicts step time', '', verdict(result), '',
           f'{len(result["cases"])} timed cases. {kernels} The proxies are fitted log-log (or '
           'a * FLOPs + b * bytes) on the other model families only. Fold error: '
           'max(predicted / measured, measured / predicted).', '']
  lines += errors_table(proxies, JUDGED)
  if result['judged']:
    lines += ['', f'Measured inside the kernel predictor\'s interval (its kernels\' held-out '
              f'10th-90th percentile errors added up): {result["inside"]} of '
              f'{result["judged"]} cases.']
  lines += ['', 'Per case (ms per step):', '']
  lines += formatting.table(
      ('case', 'family', 'measured', *(LABELS[k] for k in keys),
       *(('kernel interval', 'kernel fold error') if result['judged'] else ())),
      [[r['name'], r['family'], _ms(r['measured_s']), *(_ms(r['predicted'].get(k)) for k in keys),
        *((f'{_ms(r["low_s"])}-{_ms(r["high_s"])}' if r['low_s'] is not None else 'n/a',
           formatting.times(fits.fold_error(r['predicted'][KERNELS], r['measured_s'])))
          if result['judged'] else ())]
       for r in sorted(result['cases'], key=lambda r: r['measured_s'])])
  return lines
