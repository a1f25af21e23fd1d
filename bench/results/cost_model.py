"""What predicts step time: a cost model of the compiled program's ops, judged on
model families it never saw.

A step's time on one device is modelled as

  sum over its ops o of  max(F_o / pi_c(o), B_o / beta_c(o)) + lam_c(o),  plus  mu * n + t0

F_o, B_o: an op's FLOPs and bytes per step, counted from the compiled HLO
(bench/profile/hlo_ops.py), so known before anything runs; c(o): its category;
n: the ops executed per step. pi_c and beta_c: the FLOP/s and bytes/s category c
achieves on this device (a convolution's kernel gradient is not a dot, nor a
max-pool a copy); lam_c: what an op of category c costs beyond its work (its
launch, its threads: a convolution's on Eigen's pool is not an elementwise
fusion's); mu and t0: the time in which no op runs (idle), per op and per step.
Summed per op, not per category: a category's many small ops and its few large
ones are bound by different rates. One lam for all categories was tried first:
fitted on the batch-32 study, it bought a slow op's time with an absurd rate
(0.003 GB/s for 'other'), which then predicted the same study at batch 8 and at
64x64 up to 47x and 60x off; with a lam per category, at most 4.95x and 4.96x.

Fitted on profiled cases. A profile splits each step's time among its ops and
idle; scaled to add up to the case's timed median step (so the tracer's own
overhead, large on millisecond steps, falls out), each op is one observation:
pi_c, beta_c and lam by least squares on log time, each op weighted by the
square root of its share of its step (an op taking 0.1% of a step hardly
counts) with a soft-L1 loss (one odd op does not drag its category along); mu
and t0 by non-negative least squares on the idle time's relative error.

Judged leave-one-family-out: each model family (FAMILIES) is predicted by a fit
on the others only, and so is each proxy it is compared with (a log-log fit of
parameters, XLA FLOPs, bytes accessed or compiled temp bytes; the two-term
a * FLOPs + b * bytes). Fold error: max(predicted / measured, measured / predicted).
"""

import math

import numpy as np

from bench.core.errors import UserError
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
TWO_TERM, COST_MODEL = 'two_term', 'cost_model'
LABELS = {**{key: label for key, label, _ in PROXIES},
          TWO_TERM: 'a * FLOPs + b * bytes', COST_MODEL: 'cost model (ops, rates per category)'}


def family(model):
  return next((name for prefix, name in FAMILIES if model.startswith(prefix)), model)


def features(case):
  """[(category, FLOPs, bytes, executions)] per step, one per op of a profiled case;
  None without a profile. The figures are the compiled HLO's, not measured."""
  p = case.get('profile') or {}
  if not p.get('steps'):
    return None
  return [(r['category'], r['flops'], r['bytes'], r['count']) for r in p['ops']]


def observations(case):
  """A profiled case's measured time per op (in features' order) and idle, per step,
  scaled to add up to its timed median step: ([seconds], idle seconds)."""
  p = case['profile']
  scale = case['step_time_s']['median'] / p['step_s']
  return [r['time_s'] * scale for r in p['ops']], p['idle_s'] * scale


def _op_time(log_pi, log_beta, log_lam, flops, nbytes, count):
  """max(F / pi, B / beta) + lam * executions, vectorised over ops."""
  compute = np.where(flops > 0, flops * np.exp(-log_pi), 0.0)
  memory = np.where(nbytes > 0, nbytes * np.exp(-log_beta), 0.0)
  return np.maximum(compute, memory) + count * np.exp(log_lam)


def _start(work, measured):
  """A category's median achieved rate (FLOP/s or bytes/s), where it did any work."""
  rates = work / measured
  return math.log(max(float(np.median(rates[rates > 0])) if (rates > 0).any() else 1.0, 1.0))


_BOUNDS = ('compute_bound', 'memory_bound', 'overhead_bound')


def fit(cases):
  """The cost model fitted on profiled `cases` (report case records), or None with
  too few: {'categories': {category: {pi, beta, per_op_s (lam_c), compute_bound,
  memory_bound, overhead_bound}}, 'idle_per_op_s', 'idle_fixed_s', 'cases': the names
  fitted}, where the *_bound count the ops of the fit whose largest term is their
  FLOPs, their bytes or their fixed cost (a rate that bounds none is a guess the fit
  never tested)."""
  from scipy import optimize  # pylint: disable=import-outside-toplevel  (a second to import)
  cases = [c for c in cases if features(c)]
  if len(cases) < 2:
    return None
  rows = []  # (category, F, B, executions, measured s, share of the step)
  idle = []  # (executions, idle s, step s)
  for case in cases:
    measured, idle_s = observations(case)
    step = case['step_time_s']['median']
    ops = features(case)
    rows += [(*op, t, t / step) for op, t in zip(ops, measured) if t > 0]
    idle.append((sum(op[3] for op in ops), idle_s, step))
  categories = sorted({r[0] for r in rows})
  index = {c: i for i, c in enumerate(categories)}
  cat = np.array([index[r[0]] for r in rows])
  flops, nbytes, count, measured, share = (np.array([r[k] for r in rows], dtype=np.float64)
                                           for k in range(1, 6))

  # x: log pi, log beta, log lam of each category in turn.
  def residuals(x):
    predicted = _op_time(x[0::3][cat], x[1::3][cat], x[2::3][cat], flops, nbytes, count)
    return np.sqrt(share) * (np.log(np.maximum(predicted, 1e-30)) - np.log(measured))

  # Each category starts at its median achieved rates, an op's own cost at a microsecond.
  x0 = [value for c in categories
        for value in (_start(flops[cat == index[c]], measured[cat == index[c]]),
                      _start(nbytes[cat == index[c]], measured[cat == index[c]]),
                      math.log(1e-6))]
  solution = optimize.least_squares(residuals, np.array(x0), loss='soft_l1', f_scale=0.1)
  log_pi, log_beta, log_lam = solution.x[0::3], solution.x[1::3], solution.x[2::3]
  a = np.array([[n / s, 1 / s] for n, _, s in idle])
  b = np.array([i / s for _, i, s in idle])
  (mu, t0), _ = optimize.nnls(a, b)
  # Which term of its time is an op's largest: its FLOPs, its bytes or its fixed cost.
  terms = np.stack([flops * np.exp(-log_pi[cat]), nbytes * np.exp(-log_beta[cat]),
                    count * np.exp(log_lam[cat])])
  largest = terms.argmax(axis=0)
  return {'categories': {c: {'pi': float(np.exp(log_pi[index[c]])),
                             'beta': float(np.exp(log_beta[index[c]])),
                             'per_op_s': float(np.exp(log_lam[index[c]])),
                             **{key: int(((largest == k) & (cat == index[c])).sum())
                                for k, key in enumerate(_BOUNDS)}}
                         for c in categories},
          'idle_per_op_s': float(mu),
          'idle_fixed_s': float(t0), 'cases': [c['name'] for c in cases]}


def fit_on(report):
  """The cost model fitted on `report`'s usable cases; UserError when it has too few."""
  model = fit(usable(report))
  if model is None:
    raise UserError('fewer than 2 profiled cases to fit the cost model on; run its config '
                    'with --config.profile=True')
  return model


def predict(model, ops):
  """Predicted seconds per step of the ops [(category, FLOPs, bytes, executions)]. A
  category the fit never saw is costed at the slowest rates and the largest cost per
  op it did see (a guess, on the safe side)."""
  known = model['categories'].values()
  slowest = {'pi': min(r['pi'] for r in known), 'beta': min(r['beta'] for r in known),
             'per_op_s': max(r['per_op_s'] for r in known)}
  total, executions = model['idle_fixed_s'], 0
  for category, flops, nbytes, count in ops:
    rates = model['categories'].get(category, slowest)
    total += max(flops / rates['pi'], nbytes / rates['beta']) + count * rates['per_op_s']
    executions += count
  return total + executions * model['idle_per_op_s']


def _proxy_predictor(key, fitted):
  """Predicts a case's time from the proxy `key`, fitted on `fitted`; None if it cannot."""
  if key == COST_MODEL:
    model = fit(fitted)
    return None if model is None else (lambda case: predict(model, features(case)))
  if key == TWO_TERM:
    x = np.array([[c['xla']['flops'], c['xla']['bytes_accessed']] for c in fitted], float)
    coefficients = fits.two_term_fit(x, np.array([c['step_time_s']['median'] for c in fitted],
                                                 float))
    return lambda case: fits.two_term_predict(
        coefficients, np.array([case['xla']['flops'], case['xla']['bytes_accessed']], float))
  get = next(g for k, _, g in PROXIES if k == key)
  x = np.array([get(c) for c in fitted], float)
  line = None if (x <= 0).any() else fits.loglog_fit(
      x, np.array([c['step_time_s']['median'] for c in fitted], float))
  if line is None:
    return None
  return lambda case: fits.loglog_predict(line, get(case)) if get(case) else None


def usable(report):
  """The report's cases a cost model can fit and judge: ok, timed, profiled."""
  return [c for c in report['cases'] if c['status'] == 'ok' and c['step_time_s']['median']
          and c['config'].get('benchmark') != 'input' and features(c)]


KEYS = tuple(k for k, _, _ in PROXIES) + (TWO_TERM, COST_MODEL)


def leave_one_family_out(report):
  """Each usable case predicted by every proxy and the cost model fitted on the other
  families only; None with fewer than MIN_FAMILIES families. Returns {'cases': [{name,
  family, measured_s, predicted: {key: s}}], 'proxies': [{proxy, label, median, worst,
  n}], 'model': the cost model fitted on every case}."""
  cases = usable(report)
  families = families_of(cases)
  if len(families) < MIN_FAMILIES:
    return None
  predicted = {c['name']: {} for c in cases}
  for held_out in families:
    fitted = [c for c in cases if family(c['config']['model']) != held_out]
    for key in KEYS:
      predictor = _proxy_predictor(key, fitted)
      for case in cases:
        if family(case['config']['model']) == held_out:
          predicted[case['name']][key] = predictor(case) if predictor else None
  rows = [{'name': c['name'], 'family': family(c['config']['model']),
           'measured_s': c['step_time_s']['median'], 'predicted': predicted[c['name']]}
          for c in cases]
  return {'cases': rows, 'proxies': errors(rows), 'model': fit(cases)}


def families_of(cases):
  """The model families of `cases`, sorted."""
  return sorted({family(c['config']['model']) for c in cases})


def too_few_families(cases, what):
  """'this report has N WHAT of K families: a, b.' where `cases` (N of them, called
  WHAT) span fewer than MIN_FAMILIES model families, what a leave-one-family-out
  section needs; None where they span enough."""
  families = families_of(cases)
  if len(families) >= MIN_FAMILIES:
    return None
  return f'this report has {len(cases)} {what}' + (
      f' of {len(families)} {"family" if len(families) == 1 else "families"}: '
      f'{", ".join(families)}.' if cases else '.')


def missing(report):
  """Why `report` has no leave-one-family-out section (a line), or None where it can."""
  have = too_few_families(usable(report), 'profiled cases')
  if have is None:
    return None
  return (f'"What predicts step time" needs profiled cases (--config.profile=True) of '
          f'{MIN_FAMILIES} or more model families, one to predict and two to fit on; {have}')


def judge(model, report):
  """The cost model `model` (fitted on another report: another batch or input size)
  predicting this report's usable cases: the same shape as leave_one_family_out's,
  with the cost model alone. UserError when `report` has no profiled case to predict."""
  cases = usable(report)
  if not cases:
    raise UserError('no profiled timed cases for the cost model to predict; run its config '
                    'with --config.profile=True')
  rows = [{'name': c['name'], 'family': family(c['config']['model']),
           'measured_s': c['step_time_s']['median'],
           'predicted': {COST_MODEL: predict(model, features(c))}} for c in cases]
  return {'cases': rows, 'proxies': errors(rows, keys=(COST_MODEL,)), 'model': model}


def errors(rows, keys=KEYS, labels=None, measured='measured_s'):
  """[{proxy, label, n, median, worst}]: each predictor's fold errors over `rows`
  ({measured: figure, 'predicted': {key: figure}})."""
  labels = labels or LABELS
  out = []
  for key in keys:
    errors = [e for e in (fits.fold_error(r['predicted'].get(key), r[measured]) for r in rows)
              if e is not None]
    out.append({'proxy': key, 'label': labels[key], 'n': len(errors),
                'median': float(np.median(errors)) if errors else None,
                'worst': max(errors) if errors else None})
  return out


# ------------------------------------------------------------------------ Markdown

def errors_table(proxies):
  """Markdown lines: each predictor's cases, median and worst fold error (`errors`)."""
  return formatting.table(
      ('predictor', 'cases', 'median fold error', 'worst fold error'),
      [[row['label'], row['n'], formatting.times(row['median']), formatting.times(row['worst'])]
       for row in proxies])


def _ms(seconds):
  return formatting.fmt(seconds, 1e3)


def _rate(value, bounds):
  """A fitted rate in G/s; one that bounds no op of the fit is untested: not shown."""
  return formatting.fmt(value, 1e-9) if bounds else 'not binding'


def markdown(result, title='What predicts step time (leave one family out)'):
  """report.md's section on `result` (leave_one_family_out's or judge's): lines, from a
  blank one (it follows another section's table), empty without a result."""
  if result is None:
    return []
  keys = [row['proxy'] for row in result['proxies']]
  lines = ['', '## ' + title, '',
           f'{len(result["cases"])} profiled cases. Each case is predicted by a fit on other '
           'families only (or on another report), from what the compiled program says: '
           'parameters, XLA FLOPs or bytes, compiled temp bytes (log-log fits), a * FLOPs + '
           'b * bytes, and the cost model: per op, max(FLOPs / FLOP/s, bytes / bytes/s) at '
           'its category\'s fitted rates + its category\'s cost per op, plus idle time per op '
           'and per step. Fold error: max(predicted / measured, measured / predicted).', '']
  lines += errors_table(result['proxies'])
  lines += ['', 'Per case (ms per step; fold error of the cost model):', '']
  lines += formatting.table(
      ('case', 'family', 'measured', *(LABELS[k] for k in keys), 'cost model fold error'),
      [[r['name'], r['family'], _ms(r['measured_s']),
        *(_ms(r['predicted'].get(k)) for k in keys),
        formatting.times(fits.fold_error(r['predicted'].get(COST_MODEL), r['measured_s']))]
       for r in sorted(result['cases'], key=lambda r: r['measured_s'])])
  model = result['model']
  if model:
    lines += ['', f'The cost model fitted on all {len(model["cases"])} cases: idle '
              f'{formatting.fmt(model["idle_per_op_s"], 1e6)} us per op and '
              f'{formatting.fmt(model["idle_fixed_s"], 1e6)} us per step; per category:', '']
    lines += formatting.table(
        ('category', 'achieved GFLOP/s', 'ops it bounds', 'achieved GB/s', 'ops it bounds',
         'cost per op us', 'ops it bounds'),
        [[c, _rate(r['pi'], r['compute_bound']), r['compute_bound'],
          _rate(r['beta'], r['memory_bound']), r['memory_bound'],
          formatting.fmt(r['per_op_s'], 1e6), r['overhead_bound']]
         for c, r in sorted(model['categories'].items())])
  return lines
