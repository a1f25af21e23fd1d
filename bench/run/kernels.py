"""Kernels measured alone into the kernel database, and the predictors learned from
them (bench/kernels.py is the command line; bench/results/kernel_store.py the store).

A session starts by probing the machine (`start`): its peaks, disturbed when far
below the best this machine recorded (kernel_store.Store.disturbed: its
measurements are marked and taken again by the next run), and the call
overhead of a kernel alone. `sample` draws random kernels of every kind
(bench/run/kernel_sampler.py) and measures each (bench/measure/kernel_bench.py:
in a loop of its own, as it runs in a step), recording it as soon as it is timed:
a killed run keeps what it measured, and the next one goes on from there.
`Predictor` predicts a compiled step from its kernels by the Model fitted on
sampled kernels only (bench/results/kernel_model.py): never on a kernel of a
config's model.
"""

import dataclasses
import hashlib
import importlib.metadata
import math
import os
import pathlib
import pickle
import time

import numpy as np

from bench.core import machine
from bench.core.errors import UserError
from bench.measure import environment
from bench.measure import hlo
from bench.measure import kernel_bench
from bench.measure import kernels as kernels_lib
from bench.measure import peaks as peaks_lib
from bench.results import kernel_model
from bench.results import kernel_store
from bench.run import kernel_sampler

SAMPLE = 'sample'  # the source of sampled kernels: the only rows a predictor learns from
# Distinct kernels of a kind sampled before its predictor's error steers the sampling:
# twice what a kind needs to be fitted at all, so its first held-out error means something.
FIRST_PER_KIND = 2 * kernel_model.MIN_SIGNATURES
# Kernels measured between two refits that steer the sampling, at the least; and at
# least a quarter of the rows so far (a fit of 550 rows took 6-10 s here).
REFIT_EVERY = 25
# A sampled kernel one execution of which takes longer is timed only by the calls
# that found it out (one execution, once): timed fully, a few such (depthwise
# convolution gradients at 0.07 GFLOP/s took 0.7-5 s) ate most of a sampling
# budget; left out, the predictors never saw the slow regimes models do run (a 3x3
# convolution over a 2x2 input of 512 channels at batch 32: 255 ms, 1 GFLOP/s, in
# ResNet-18's step at 64x64, predicted at 20 ms without them).
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
  does not compile alone: recorded so, with the reason; whether alone it compiled to
  the same kernel). One execution over `limit_s` is timed by the calls that found it
  out (one, or a few), and its `why` says so."""
  try:
    summary, check = kernel_bench.measure(kernel, session.probe_s, min_time_s=min_time_s,
                                          limit_s=limit_s)
  except kernel_bench.TooSlow as e:  # timed coarsely, by the calls that found it out
    summary, check = e.summary, dataclasses.replace(
        e.check, why='; '.join(filter(None, (e.check.why, str(e)))))
  except kernel_bench.KernelError as e:
    summary, check = None, kernel_bench.Check(False, f'does not compile alone: {e}', ())
  store.add(session.identity, kernel, summary, check, session.probe_s, session.peaks, source,
            session.disturbed)
  return summary['median'] if summary else None, check.same


def tried(store, machine_key):
  """{key: (median or None: it does not compile alone, same)} of every kernel the
  machine of `machine_key` has an undisturbed measurement of in `store`."""
  return {k: (r['median_s'], r['same']) for k, r in store.measured(machine_key).items()}


def measure_missing(store, session, found, known, source, min_time_s=kernel_bench.MIN_TIME_S):
  """Measures each distinct kernel of `found` that `known` (`tried`'s, updated here)
  lacks, under `source`; returns those it measured. A kernel measured in this session
  counts once, even when the session is disturbed."""
  new = list({k.key: k for k in found if k.key not in known}.values())
  for kernel in new:
    known[kernel.key] = measure_kernel(store, session, kernel, source, min_time_s)
  return new


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


def _digest(rows):
  """What a fit depends on: the rows' keys and medians, the code that turns them into
  features and fits them (kernel_model.py and the HLO parser it reads modules with),
  and the library versions that pickle the Model."""
  digest = hashlib.sha256()
  for module in (kernel_model, hlo):
    digest.update(pathlib.Path(module.__file__).read_bytes())
  digest.update(f'{importlib.metadata.version("scikit-learn")} {np.__version__}'.encode())
  for row in sorted(rows, key=lambda r: r['key']):
    digest.update(f'{row["key"]} {row["median_s"]!r}\n'.encode())
  return digest.hexdigest()


def fitted(store, machine_key, rows=None):
  """(kernel_model.Model fitted on this machine's sampled kernels (`rows`, when the
  caller has read them), the median call overhead its sampling sessions probed: what
  a step costs beyond its kernels). The fit `store` keeps for the same rows and code
  is loaded instead of refitted; a new one is kept. A UserError when nothing was
  sampled on this machine."""
  rows = sampled_rows(store, machine_key) if rows is None else rows
  if not rows:
    raise UserError(f'the kernel database has no kernel sampled on this machine '
                    f'({machine_key[:8]}); run `flax-bench kernels sample` (--budget='
                    'MINUTES) first, on this machine')
  digest = _digest(rows)
  kept = store.fit(machine_key, digest)
  try:
    model = pickle.loads(kept) if kept else None
  except (pickle.UnpicklingError, AttributeError, ImportError, EOFError):
    model = None  # kept by another version of a library: refitted
  if model is None:
    model = kernel_model.fit(rows)
    store.keep_fit(machine_key, digest, pickle.dumps(model))
  return model, float(np.median([r['probe_s'] for r in rows]))


def for_run(flag=None):
  """(the Predictor of this machine, '') from the kernel database `flag` names
  (kernel_store.path), or (None, why there is none): off, no file, a file that is
  not a readable kernel database, nothing sampled on this machine. A run goes on
  without predictions: they are not what it measures."""
  file = kernel_store.path(flag, optional=True)
  if file is None:
    return None, f'the kernel database is {kernel_store.OFF}'
  if not os.path.exists(file):
    return None, f'no kernel database at {file} (`flax-bench kernels sample` makes one)'
  key = machine.key(machine.identity(environment.collect()))
  try:
    with kernel_store.connect(file) as store:
      return Predictor(store, key, file), ''
  except UserError as e:
    return None, str(e)


class Predictor:
  """A step's time from its compiled program, without running it: the sum over its
  kernels of the predicted seconds of one execution (a Model `fitted` on sampled
  kernels only) times its executions, plus what a step pays beyond its kernels,
  probed on this machine (`overhead`)."""

  def __init__(self, store, machine_key, database):
    rows = sampled_rows(store, machine_key)
    self.model, self.probe_s = fitted(store, machine_key, rows)
    self.database = database
    self.sampled = len(rows)
    # The kernels tried alone on this machine (`tried`): the kernel sum's; a caller
    # that measures more adds them.
    self.measured = tried(store, machine_key)
    self._fresh = {}  # temp bytes -> seconds: each size probed once per process

  def overhead(self, compiled):
    """Seconds a step of `compiled` pays beyond its kernels: a call's dispatch (the
    sampling sessions' probe) and the first writes into its temporary buffers,
    allocated anew at every call (kernel_bench.fresh_memory of XLA's temp size, past
    FRESH_LINEAR_FROM scaled from that size)."""
    temp = compiled.memory_analysis().temp_size_in_bytes
    if not temp:
      return self.probe_s
    probed = min(temp, kernel_bench.FRESH_LINEAR_FROM)
    if probed not in self._fresh:
      self._fresh[probed] = kernel_bench.fresh_memory(probed, self.probe_s)
    return self.probe_s + self._fresh[probed] * temp / probed

  def step(self, compiled):
    """(the kernels of `compiled` in program order, {count, distinct, predicted_s,
    low_s, high_s, overhead_s, tried, unmeasurable, sum_s}): the interval the sum of
    each kernel's (its kind's held-out 10th and 90th percentile, so as wide as the
    kernels' errors all leaning one way); tried, unmeasurable and sum_s `kernel_sum`'s
    of the kernels measured alone so far."""
    found = kernels_lib.kernels(compiled.as_text())
    distinct = list({k.key: k for k in found}.values())  # a ResNet-50 runs 2,083, 640 distinct
    by_key = dict(zip((k.key for k in distinct),
                      self.model.predict_all([dataclasses.asdict(k) for k in distinct])))
    overhead = self.overhead(compiled)
    return found, {
        'count': len(found), 'distinct': len(distinct),
        **{column: overhead + sum(by_key[k.key][i] * k.executions for k in found)
           for i, column in enumerate(('predicted_s', 'low_s', 'high_s'))},
        'overhead_s': overhead, **kernel_sum(found, self.measured, overhead)}


def kernel_sum(found, measured, overhead_s):
  """{tried, unmeasurable, sum_s} of the kernels `found`: how many distinct ones were
  tried alone (have an entry in `measured`: {key: (median or None, same)}), how many
  of those do not compile alone (no median), and, once every one was tried, the
  kernel sum: `overhead_s` + each measured median x its executions (what a step
  would take if each kernel ran as it ran alone: the check of additivity); None
  before."""
  distinct = {k.key for k in found}
  tried = [key for key in distinct if key in measured]
  return {'tried': len(tried), 'unmeasurable': sum(measured[key][0] is None for key in tried),
          'sum_s': overhead_s + sum((measured[k.key][0] or 0.0) * k.executions for k in found)
          if len(tried) == len(distinct) else None}
