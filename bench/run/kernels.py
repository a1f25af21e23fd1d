"""The kernels a config's cases run, measured alone into the kernel database
(bench/kernels.py's `measure`; bench/results/kernel_store.py is the store).

Each case's step is compiled as bench.predict compiles it (bench/run/predict.py:
synthetic batches of its shape, nothing run), its kernels read from the compiled
program (bench/measure/kernels.py), and each distinct kernel this machine has no
undisturbed measurement of is compiled alone and timed (bench/measure/
kernel_bench.py), less the session's call overhead, and recorded as soon as it is
timed: a killed run keeps what it measured, and the next one goes on from there.

A session starts by probing the machine (`start`): its peaks, disturbed when far
below the best this machine recorded (kernel_store.Store.disturbed: its
measurements are marked and taken again by the next run), and the call
overhead of a kernel alone. Per case the result holds its kernels with their
executions and medians, and the case's "kernel sum": the sum over its kernels of
median x executions, what a step would take if each of its kernels ran as it ran
alone (the check of additivity against a timed step).
"""

import dataclasses
import time

from bench.core import machine
from bench.measure import environment
from bench.measure import kernel_bench
from bench.measure import kernels as kernels_lib
from bench.measure import peaks as peaks_lib
from bench.run import predict


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


def measure_kernel(store, session, kernel, source, min_time_s=kernel_bench.MIN_TIME_S):
  """Times `kernel` alone and records it in `store` under `source` ('sample',
  'config:NAME'); returns (its median seconds per call, or None where its module
  does not compile alone: recorded so, with the compiler's reason; whether alone it
  compiled to the same kernel)."""
  try:
    summary, check = kernel_bench.measure(kernel, session.probe_s, min_time_s=min_time_s)
  except kernel_bench.KernelError as e:
    summary, check = None, kernel_bench.Check(False, f'does not compile alone: {e}', ())
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
