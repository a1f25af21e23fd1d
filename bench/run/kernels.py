"""The kernels a config's cases run, measured alone into the kernel database
(bench/kernels.py's `measure`; bench/results/kernel_store.py is the store).

Each case's step is compiled as bench.predict compiles it (bench/run/predict.py:
synthetic batches of its shape, nothing run), its kernels read from the compiled
program (bench/measure/kernels.py), and each distinct kernel this machine has no
undisturbed measurement of is compiled alone and timed (bench/measure/
kernel_bench.py: in a loop of its own, as it runs in a step), and recorded as soon
as it is timed: a killed run keeps what it measured, and the next one goes on from there.

A session starts by probing the machine (`start`): its peaks, disturbed when far
below the best this machine recorded (kernel_store.Store.disturbed: its
measurements are marked and taken again by the next run), and the call
overhead of a kernel alone. Per case the result holds its kernels with their
executions and medians, and the case's "kernel sum": the sum over its kernels of
median x executions, what a step would take if each of its kernels ran as it ran
alone (the check of additivity against a timed step).
"""

import dataclasses
import math
import time

import numpy as np

from bench.core import machine
from bench.core.errors import UserError
from bench.measure import environment
from bench.measure import kernel_bench
from bench.measure import kernels as kernels_lib
from bench.measure import peaks as peaks_lib
from bench.results import case_record
from bench.results import kernel_model
from bench.results import memory_model
from bench.run import kernel_sampler
from bench.run import predict
from bench.workload import build

SAMPLE = 'sample'  # the source of sampled kernels: the only rows a predictor learns from
# Distinct kernels of a kind sampled before its predictor's error steers the sampling:
# twice what a kind needs to be fitted at all, so its first held-out error means something.
FIRST_PER_KIND = 2 * kernel_model.MIN_SIGNATURES
# Kernels measured between two refits that steer the sampling, at the least; and at
# least a quarter of the rows so far (a fit of 550 rows took 6-10 s here).
REFIT_EVERY = 25
# A sampled kernel one execution of which takes longer is recorded unmeasured: a few
# such (depthwise convolution gradients at 0.07 GFLOP/s took 0.7-5 s) ate most of a
# sampling budget, and a kind's predictor learns its rates from the many others.
SAMPLE_LIMIT_S = 0.1


@dataclasses.dataclass(frozen=True)
class Session:
  identity: dict    # machine.identity of this machine
  machine_key: str  # machine.key of it
  peaks: dict       # the peaks.measure block taken at the start
  probe_s: float    # median seconds of a call of the probe program: subtracted per kernel
  disturbed: str    # why this session is disturbed; '' when it is not


def start(store):
  """The Session of this process on this machine: its peaks and call overhead probed,
  judged against the best peaks `store` recorded for it."""
  identity = machine.identity(environment.collect())
  key = machine.key(identity)
  peaks = peaks_lib.measure({'float32'})
  probe_s = kernel_bench.overhead()['median']
  return Session(identity, key, peaks, probe_s, store.disturbed(key, peaks))


def measure_kernel(store, session, kernel, source, min_time_s=kernel_bench.MIN_TIME_S,
                   limit_s=None):
  """Times `kernel` alone and records it in `store` under `source` ('sample',
  'config:NAME'); returns (its median seconds per execution, or None where its module
  does not compile alone or one execution takes over `limit_s`: recorded so, with the
  reason; whether alone it compiled to the same kernel)."""
  try:
    summary, check = kernel_bench.measure(kernel, session.probe_s, min_time_s=min_time_s,
                                          limit_s=limit_s)
  except kernel_bench.KernelError as e:
    why = str(e) if isinstance(e, kernel_bench.TooSlow) else f'does not compile alone: {e}'
    summary, check = None, kernel_bench.Check(False, why, ())
  store.add(session.identity, kernel, summary, check, session.probe_s, session.peaks, source,
            session.disturbed)
  return summary['median'] if summary else None, check.same


def measure_config(config, store, on_start=lambda session: None, on_case=lambda result: None,
                   min_time_s=kernel_bench.MIN_TIME_S):
  """Measures the kernels of every case of `config` that this machine has no
  undisturbed measurement of in `store` (each distinct kernel once), under source
  'config:NAME'. The session starts (`start`; handed to `on_start`) once the config's
  cases and data are checked. Returns, and hands `on_case` as each case finishes,
  per case:
  {name, kernels: [{name, key, kind, executions, median_s}] in program order,
  distinct, new (measured now), kernel_sum_s, unmeasurable (distinct kernels that
  do not compile alone), not_same (distinct kernels that alone compile to another
  kernel), seconds (compile and measure)}."""
  cases = predict.step_cases(config)
  session = start(store)
  on_start(session)
  source = f'config:{config.name}'
  # (median or None: not measurable alone, same) of each kernel measured, before or now:
  # one measured in this session counts once, even when the session is disturbed.
  known = {key: (row['median_s'], row['same'])
           for key, row in store.measured(session.machine_key).items()}
  results = []
  for name, case in cases:
    t0 = time.perf_counter()
    _, _, compiled, _, _ = predict.compile_step(case)
    found = kernels_lib.kernels(compiled.as_text())
    distinct = {k.key: k for k in found}
    new = [k for key, k in distinct.items() if key not in known]
    for kernel in new:
      known[kernel.key] = measure_kernel(store, session, kernel, source, min_time_s)
    medians = {key: known[key][0] for key in distinct}
    result = {
        'name': name,
        'kernels': [{'name': k.name, 'key': k.key, 'kind': k.kind, 'executions': k.executions,
                     'median_s': medians[k.key]} for k in found],
        'distinct': len(distinct), 'new': len(new),
        'kernel_sum_s': sum(medians[k.key] * k.executions for k in found
                            if medians[k.key] is not None),
        'unmeasurable': sum(medians[key] is None for key in distinct),
        'not_same': sum(not known[key][1] for key in distinct),
        'seconds': time.perf_counter() - t0}
    results.append(result)
    on_case(result)
  return results


def sampled_rows(store, machine_key):
  """The undisturbed rows of kernels sampled on the machine of `machine_key` that were
  measured alone (what a predictor is fitted on: never a kernel of a config's model)."""
  return [r for r in store.rows(machine_key, source=SAMPLE)
          if not r['disturbed'] and r['median_s'] is not None]


def _next_kind(kinds, rows, model, rng):
  """The kind to sample next: the one with the fewest distinct kernels while any has
  fewer than FIRST_PER_KIND; then one drawn with weight its predictor's held-out 90th
  percentile log error (more samples where the predictor is least sure, and some
  everywhere)."""
  counts = {kind: len({r['key'] for r in rows if r['kind'] == kind}) for kind in kinds}
  fewest = min(kinds, key=lambda kind: counts[kind])
  if counts[fewest] < FIRST_PER_KIND or model is None:
    return fewest
  errors = model.errors()
  weights = np.array([math.log(max((errors.get(kind) or {}).get('p90') or 2.0, 1.01))
                      for kind in kinds])
  return kinds[int(rng.choice(len(kinds), p=weights / weights.sum()))]


def sample(store, budget_s, seed=0, on_start=lambda session: None,
           on_kernel=lambda kind, median_s, rows: None, most=None):
  """Samples random kernels (kernel_sampler.generate) into `store` for `budget_s`
  seconds, measuring each one this machine has no undisturbed measurement of, under
  source SAMPLE; adaptive (_next_kind) and resumable (a later call draws other
  programs: its generator is seeded by `seed` and the rows already sampled). Kinds
  this backend never makes are dropped when a draw finds none. Returns {kinds:
  {kind: distinct kernels sampled}, new: kernels measured now, dropped: [kinds],
  errors: the last fitted Model's errors() or None}. `most`: at most that many kernels
  measured (a test's bound that no machine's speed moves)."""
  deadline = time.monotonic() + budget_s
  session = start(store)
  on_start(session)
  rows = sampled_rows(store, session.machine_key)
  known = set(store.measured(session.machine_key))
  rng = np.random.default_rng([seed, len(rows)])
  kinds, dropped, new, model, since_fit = list(kernel_sampler.SOURCES), [], 0, None, 0

  def more():
    return time.monotonic() < deadline and (most is None or new < most)

  while kinds and more():
    kind = _next_kind(kinds, rows, model, rng)
    found = [k for k in kernel_sampler.generate(kind, rng) if k.key not in known]
    if not found and not any(r['kind'] == kind for r in rows):
      kinds.remove(kind)
      dropped.append(kind)
      continue
    for kernel in found:
      if not more():
        break
      median, _ = measure_kernel(store, session, kernel, SAMPLE, limit_s=SAMPLE_LIMIT_S)
      known.add(kernel.key)
      new += 1
      since_fit += 1
      if median is not None and not session.disturbed:
        rows.append({**dataclasses.asdict(kernel), 'median_s': median})
      on_kernel(kernel.kind, median, len(rows))
    if since_fit >= max(REFIT_EVERY, len(rows) // 4):
      model, since_fit = kernel_model.fit(rows), 0
  model = kernel_model.fit(rows) if rows else None
  return {'kinds': {kind: len({r['key'] for r in rows if r['kind'] == kind})
                    for kind in kernel_sampler.SOURCES if kind not in dropped},
          'new': new, 'dropped': dropped, 'errors': model.errors() if model else None}


def fitted(store, machine_key):
  """(kernel_model.Model fitted on this machine's sampled kernels, the median call
  overhead its sampling sessions probed: what a step costs beyond its kernels). A
  UserError when nothing was sampled on this machine."""
  rows = sampled_rows(store, machine_key)
  if not rows:
    raise UserError(f'the kernel database has no kernel sampled on this machine '
                    f'({machine_key[:8]}); run `flax-bench kernels sample` (--budget='
                    'MINUTES) first, on this machine')
  return kernel_model.fit(rows), float(np.median([r['probe_s'] for r in rows]))


def _span(predictions, found, overhead_s, column):
  return overhead_s + sum(p[column] * k.executions for p, k in zip(predictions, found))


def step_overhead(compiled, probe_s):
  """Seconds a step of `compiled` pays beyond its kernels, from the probes: a call's
  dispatch (`probe_s`) and the first writes into its temporary buffers, allocated
  anew at every call (kernel_bench.fresh_memory of XLA's temp size)."""
  temp = compiled.memory_analysis().temp_size_in_bytes
  return probe_s + (kernel_bench.fresh_memory(temp, probe_s) if temp else 0.0)


def predict_config(config, store, measure=False, on_case=lambda row: None):
  """Per case of `config` (handed to `on_case` as each compiles): its step time as the
  sum over its kernels of the predicted seconds of one execution (the model `fitted`
  on sampled kernels only) times its executions, plus the call overhead of a step;
  the interval the sum of each kernel's (its kind's held-out 10th and 90th
  percentile, so as wide as the kernels' errors all leaning one way); the step's
  overhead beyond its kernels probed on this machine (`step_overhead`); with
  `measure`, also the kernel sum: each kernel measured alone (once per machine, as
  `measure_config` does) instead of predicted.
  Rows: {name, model, batch_size, devices, kernels, predicted_s, low_s, high_s,
  overhead_s, examples_per_s, memory_bytes (XLA's buffers), peak_bytes (None), compile_s,
  kernel_sum_s (None without `measure`)}."""
  cases = predict.step_cases(config)
  key = machine.key(machine.identity(environment.collect()))
  model, overhead_s = fitted(store, key)
  session = start(store) if measure else None
  known = {k: (r['median_s'], r['same']) for k, r in store.measured(key).items()}
  rows = []
  for name, case in cases:
    mesh, _, compiled, built, compile_s = predict.compile_step(case)
    found = kernels_lib.kernels(compiled.as_text())
    distinct = list({k.key: k for k in found}.values())  # a ResNet-50 runs 2,083, 640 distinct
    by_key = dict(zip((k.key for k in distinct),
                      model.predict_all([dataclasses.asdict(k) for k in distinct])))
    predictions = [by_key[k.key] for k in found]
    overhead = step_overhead(compiled, overhead_s)
    seconds = _span(predictions, found, overhead, 0)
    kernel_sum = None
    if measure:
      for kernel in {k.key: k for k in found if k.key not in known}.values():
        known[kernel.key] = measure_kernel(store, session, kernel, f'config:{config.name}')
      kernel_sum = overhead + sum((known[k.key][0] or 0.0) * k.executions for k in found)
    record = case_record.assemble(name, case.to_dict(), mesh.size,
                                  build.per_device_batch(case, mesh), built=built)
    row = {'name': name, 'model': case.model, 'batch_size': case.batch_size,
           'devices': mesh.size, 'kernels': len(found), 'predicted_s': seconds,
           'low_s': _span(predictions, found, overhead, 1),
           'high_s': _span(predictions, found, overhead, 2), 'overhead_s': overhead,
           'examples_per_s': case.batch_size / seconds,
           'memory_bytes': memory_model.buffers(record), 'peak_bytes': None,
           'compile_s': compile_s, 'kernel_sum_s': kernel_sum}
    rows.append(row)
    on_case(row)
  return rows
