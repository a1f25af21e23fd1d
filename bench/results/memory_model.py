"""What predicts a step's peak memory: the compiled program's buffers against
parameter count, judged on model families it never saw.

Measured: a case's host step peak (bench/measure/host_memory.py), what its timed
steps held resident on a CPU, where the device's memory is the process's. (On a
GPU, JAX's peak_bytes_in_use cannot be reset between cases, so a case's own peak
is not known: no table.)

Predictors, each judged leave-one-family-out as the proxies of step time are
(predictors.FAMILIES):
  * parameters, fitted log-log on the other families: the claim's baseline;
  * XLA's buffer assignment, as is, no fit: arguments + outputs - what donation
    aliases + temporaries (memory_analysis of the compiled step), what the step
    needs at once;
  * the same buffers fitted as a * buffers + b on the other families: b is what
    a run holds besides (runtime, the convolution library's workspace), a what
    the buffer assignment misses in proportion.
"""

import numpy as np

from bench.results import predictors
from bench.results import fits
from bench.results import formatting

PARAMS, BUFFERS, BUFFERS_FIT = 'params', 'xla_buffers', 'xla_buffers_fit'
LABELS = {PARAMS: 'parameters (log-log fit)',
          BUFFERS: "XLA's buffers: arguments + outputs - aliased + temps (no fit)",
          BUFFERS_FIT: "a * XLA's buffers + b"}
KEYS = (PARAMS, BUFFERS, BUFFERS_FIT)
_STEPS = ('train_step', 'eval_step', 'forward')
# Cases whose buffers are smaller are not judged: there the in-process measurement's
# own spread (some 20 MiB either way, bench/measure/host_memory.py) is as large as what
# is measured. Chosen on the buffers, what is predicted from, not on the outcome.
MIN_BUFFERS = 32 * 2 ** 20


def buffers(case):
  """What the compiled step's buffers hold at once, per device, in bytes; None unknown."""
  m = case['memory']
  parts = (m['argument_bytes'], m['output_bytes'], m['alias_bytes'], m['temp_bytes'])
  if any(p is None for p in parts):
    return None
  return parts[0] + parts[1] - parts[2] + parts[3]


def usable(report):
  """The report's timed step cases with a measured step peak and buffers of at least
  MIN_BUFFERS, on one CPU device: there the step's buffers are what the process holds
  (a GPU's are not in its resident memory; several CPU devices' buffers are per
  device, the process's peak is all of theirs)."""
  if report['environment'].get('backend') != 'cpu':
    return []
  return [c for c in report['cases']
          if c['status'] == 'ok' and c['config'].get('benchmark') in _STEPS
          and c.get('num_devices') == 1
          and c['memory'].get('host_step_peak_bytes') and (buffers(c) or 0) >= MIN_BUFFERS]


def fit(cases):
  """(a, b) >= 0 of peak = a * buffers + b, least relative squares over `cases`."""
  return tuple(float(v) for v in fits.two_term_fit(
      np.array([[buffers(c), 1.0] for c in cases], float),
      np.array([c['memory']['host_step_peak_bytes'] for c in cases], float)))


def predict(coefficients, buffer_bytes):
  a, b = coefficients
  return a * buffer_bytes + b


def _predictor(key, fitted):
  """Predicts a case's peak bytes from `key`, fitted on the cases `fitted`."""
  if key == BUFFERS:
    return buffers
  if key == BUFFERS_FIT:
    coefficients = fit(fitted)
    return lambda case: predict(coefficients, buffers(case))
  measured = np.array([c['memory']['host_step_peak_bytes'] for c in fitted], float)
  line = fits.loglog_fit(np.array([c['params']['total'] for c in fitted], float), measured)
  return lambda case: fits.loglog_predict(line, case['params']['total'])


def missing(report):
  """Why `report` has no peak memory section (a line), or None where it can."""
  backend = report['environment'].get('backend')
  if backend != 'cpu':
    return ('"What predicts peak memory" needs a run on CPU: a step\'s peak is measured '
            f'there only; this report ran on {backend}.')
  have = predictors.too_few_families(usable(report), 'such cases')
  if have is None:
    return None
  return (f'"What predicts peak memory" needs timed cases on one CPU device whose step '
          f'buffers take at least {_mib(MIN_BUFFERS)} MiB, of {predictors.MIN_FAMILIES} or more '
          f'model families; {have}')


def leave_one_family_out(report):
  """Each usable case's peak predicted by each predictor fitted on the other families;
  None with fewer than predictors.MIN_FAMILIES. Returns {'cases': [{name, family,
  params, buffers, measured, predicted: {key: bytes}}], 'proxies': [{proxy, label,
  median, worst, n}], 'fit': (a, b) of a * buffers + b fitted on every case}."""
  cases = usable(report)
  families = predictors.families_of(cases)
  if len(families) < predictors.MIN_FAMILIES:
    return None
  rows = []
  for held_out in families:
    fitted = [c for c in cases if predictors.family(c['config']['model']) != held_out]
    by_key = {key: _predictor(key, fitted) for key in KEYS}
    rows += [{'name': c['name'], 'family': held_out, 'params': c['params']['total'],
              'buffers': buffers(c), 'measured': c['memory']['host_step_peak_bytes'],
              'predicted': {key: predict(c) for key, predict in by_key.items()}}
             for c in cases if predictors.family(c['config']['model']) == held_out]
  return {'cases': rows, 'proxies': predictors.errors(rows, KEYS, LABELS, 'measured'),
          'fit': fit(cases)}


def _mib(value):
  return formatting.fmt(value, 2 ** -20)


def markdown(result):
  """report.md's section on leave_one_family_out's `result`: lines, from a blank one;
  empty without a result."""
  if result is None:
    return []
  lines = ['', '## What predicts peak memory (leave one family out)', '',
           f'{len(result["cases"])} timed cases whose step buffers take at least '
           f'{_mib(MIN_BUFFERS)} MiB. Measured: the resident peak of each case\'s '
           'timed steps over what the process held without it (host step peak, MiB). Each '
           'case is predicted by a fit on other families only, or with no fit by XLA\'s '
           'buffer assignment of the compiled step. Fold error: max(predicted / measured, '
           'measured / predicted).', '']
  lines += predictors.errors_table(result['proxies'])
  lines += ['', 'Per case (MiB):', '']
  lines += formatting.table(
      ('case', 'family', 'parameters (M)', 'measured', *(LABELS[k] for k in KEYS),
       'fold error of XLA\'s buffers'),
      [[r['name'], r['family'], formatting.fmt(r['params'], 1e-6), _mib(r['measured']),
        *(_mib(r['predicted'][k]) for k in KEYS),
        formatting.times(fits.fold_error(r['predicted'][BUFFERS], r['measured']))]
       for r in sorted(result['cases'], key=lambda r: r['measured'])])
  a, b = result['fit']
  lines += ['', f'Fitted on every case: peak = {a:.3g} * buffers + {_mib(b)} MiB.']
  return lines
