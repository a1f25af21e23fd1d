"""A config's step times predicted from a compile, not a run (bench/predict.py is its
command line), and the kernels its cases run measured alone (bench/kernels.py's
`measure`).

Each case's step is built and compiled as bench.main would (on synthetic batches of
its shape: the values read do not change the program), nothing is timed, and its
step time predicted from its kernels (bench/run/kernels.py Predictor: each kernel by
its kind's predictor learned from randomly sampled kernels only, plus the overhead a
step pays beyond them, probed on this machine), with the interval the kernels'
held-out errors give. The memory a step needs is XLA's buffer assignment:
arguments + outputs - what donation aliases + temporaries, per device; given a
report whose step peaks were measured (`memory_fit`), also the peak a run holds,
a * buffers + b fitted on that report (bench/results/memory_model.py), with the
10th-90th percentile of its leave-one-family-out errors, flagged where a case's
buffers are outside the sizes the fit saw.
"""

import time

import ml_collections
import numpy as np

from bench.core import machine
from bench.core import parallel
from bench.core.errors import UserError
from bench.measure import environment
from bench.measure import kernel_bench
from bench.measure import kernels as kernels_lib
from bench.results import case_record
from bench.results import memory_model
from bench.run import kernels
from bench.run import suite as suite_lib
from bench.workload import build

# What a case's prediction is of: the step its benchmark times (a compile-only or a
# training case: its train step). An input-pipeline case has no step.
_STEP = {'compile': 'train_step', 'train': 'train_step'}


def memory_fit(report):
  """{'fit': (a, b) of peak = a * buffers + b fitted on `report`'s measured step peaks,
  'interval': (low, high) factors, the 10th and 90th percentiles of measured /
  predicted over its leave-one-family-out predictions, 'seen': (smallest, largest)
  buffers it was fitted on}; a UserError where the report has too few such cases."""
  judged = memory_model.leave_one_family_out(report)
  if judged is None:
    raise UserError(memory_model.missing(report))
  ratios = [r['measured'] / r['predicted'][memory_model.BUFFERS_FIT] for r in judged['cases']]
  sizes = [memory_model.buffers(c) for c in memory_model.usable(report)]
  return {'fit': judged['fit'], 'seen': (min(sizes), max(sizes)),
          'interval': tuple(float(q) for q in np.percentile(ratios, (10, 90)))}


def _dataset_classes(name, case):
  """The class count of a real-data case's dataset, as the runner takes it for
  num_classes=0 (it sizes the model's last layer); UserError where the data is missing."""
  # Imported here: TensorFlow takes seconds to import, and most predictions need no data.
  from input_pipeline import datasets  # pylint: disable=import-outside-toplevel
  try:
    return datasets.open_source(case.dataset, case.data_dir, case.download).num_classes
  except UserError as e:
    raise UserError(f'case {name!r}: {e}') from None


def step_cases(config):
  """[(name, case)] of `config`'s cases with a step, each as its step compiles without
  data: synthetic batches of its shape (the values read do not change the program),
  its dataset's class count for num_classes=0 (as a run takes it), a training case's
  train step. A UserError when no case has a step, or a real-data case's data is
  missing (before anything is compiled or measured)."""
  suite = suite_lib.expand(config)
  cases = [(name, case) for name, case in suite.cases if case.benchmark != 'input']
  if not cases:
    raise UserError('the config has no case with a step to predict (input-pipeline cases '
                    'have none)')
  classes = {name: case.num_classes or _dataset_classes(name, case) for name, case in cases}
  return [(name, ml_collections.ConfigDict({
      **case.to_dict(), 'num_classes': classes[name],
      'benchmark': _STEP.get(case.benchmark, case.benchmark),
      'dataset': 'synthetic', 'init_from': '', 'profile': False})) for name, case in cases]


def compile_step(case):
  """(mesh, state, compiled, built, seconds it took) of a `step_cases` case: its step
  built and compiled as bench.main would, nothing run."""
  mesh = parallel.mesh(case.num_devices)
  t0 = time.perf_counter()
  _, state, _, compiled, built = build.build(case, mesh)
  return mesh, state, compiled, built, time.perf_counter() - t0


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
  cases = step_cases(config)
  session = kernels.start(store)
  on_start(session)
  source = f'config:{config.name}'
  known = kernels.tried(store, session.machine_key)
  results = []
  for name, case in cases:
    t0 = time.perf_counter()
    _, _, compiled, _, _ = compile_step(case)
    found = kernels_lib.kernels(compiled.as_text())
    distinct = {k.key for k in found}
    new = kernels.measure_missing(store, session, found, known, source, min_time_s)
    summed = kernels.kernel_sum(found, known, 0.0)
    result = {
        'name': name,
        'kernels': [{'name': k.name, 'key': k.key, 'kind': k.kind, 'executions': k.executions,
                     'median_s': known[k.key][0]} for k in found],
        'distinct': len(distinct), 'new': len(new), 'kernel_sum_s': summed['sum_s'],
        'unmeasurable': summed['unmeasurable'],
        'not_same': sum(not known[key][1] for key in distinct),
        'seconds': time.perf_counter() - t0}
    results.append(result)
    on_case(result)
  return results


def predict(config, store, measure=False, on_case=lambda row: None, memory=None):
  """Per case of `config` (handed to `on_case` as each compiles): its step predicted
  from its kernels (kernels.Predictor.step), examples/s, XLA's buffers and, with a
  `memory` fit (memory_fit's), the peak a run holds; with `measure`, also the kernel
  sum: each kernel measured alone (once per machine, as `measure_config` does)
  instead of predicted. Rows: {name, model, batch_size, devices, kernels, predicted_s,
  low_s, high_s, overhead_s, kernel_sum_s (None without `measure`; kernels that do not
  compile alone count 0 in it: `unmeasurable` of them), examples_per_s,
  memory_bytes, peak_bytes, peak_low_bytes, peak_high_bytes (None without `memory`),
  peak_outside (the buffers are outside the sizes the memory fit saw), compile_s}."""
  cases = step_cases(config)
  key = machine.key(machine.identity(environment.collect()))
  predictor = kernels.Predictor(store, key, None)
  session = kernels.start(store) if measure else None
  known = predictor.measured
  rows = []
  for name, case in cases:
    mesh, _, compiled, built, compile_s = compile_step(case)
    found, step = predictor.step(compiled)
    if measure:
      kernels.measure_missing(store, session, found, known, f'config:{config.name}')
      step.update(kernels.kernel_sum(found, known, step['overhead_s']))
    record = case_record.assemble(name, case.to_dict(), mesh.size,
                                  build.per_device_batch(case, mesh), built=built)
    buffers = memory_model.buffers(record)
    peak = memory_model.predict(memory['fit'], buffers) if memory else None
    row = {'name': name, 'model': case.model, 'batch_size': case.batch_size,
           'devices': mesh.size, 'kernels': step['count'],
           **{k: step[k] for k in ('predicted_s', 'low_s', 'high_s', 'overhead_s')},
           'kernel_sum_s': step['sum_s'] if measure else None,
           'unmeasurable': step['unmeasurable'] if measure else None,
           'examples_per_s': case.batch_size / step['predicted_s'],
           'memory_bytes': buffers, 'peak_bytes': peak,
           'peak_low_bytes': peak * memory['interval'][0] if peak else None,
           'peak_high_bytes': peak * memory['interval'][1] if peak else None,
           'peak_outside': bool(memory) and not (
               memory['seen'][0] <= buffers <= memory['seen'][1]),
           'compile_s': compile_s}
    rows.append(row)
    on_case(row)
  return rows
