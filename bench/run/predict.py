"""A config's step times predicted from a compile, not a run (bench/predict.py is its
command line).

Each case's step is built and compiled as bench.main would (on synthetic batches of
its shape: the values read do not change the program), nothing is timed, and its
ops (bench/profile/hlo_ops.py: the same ops, FLOPs and bytes a profile of a run
reports) are costed by the cost model fitted on a profiled report
(bench/results/cost_model.py), with the spread of that fit's leave-one-family-out
errors as the interval. Without a fitted report, each op is costed at the
device's peaks, measured here first: a roofline, the least the step can take.
The memory a step needs is XLA's buffer assignment: arguments + outputs - what
donation aliases + temporaries, per device; with a fitted report whose step peaks
were measured, also the peak a run holds, fitted on those buffers
(bench/results/memory_model.py), with its interval.
"""

import time

import ml_collections
import numpy as np

from bench.core import parallel
from bench.core.errors import UserError
from bench.measure import hlo
from bench.measure import peaks as peaks_lib
from bench.profile import hlo_ops
from bench.profile import trace
from bench.results import case_record
from bench.results import cost_model
from bench.results import memory_model
from bench.run import suite as suite_lib
from bench.workload import build

# What a case's prediction is of: the step its benchmark times (a compile-only or a
# training case: its train step). An input-pipeline case has no step.
_STEP = {'compile': 'train_step', 'train': 'train_step'}


def ops_of(compiled, params):
  """[(category, FLOPs, bytes, executions)] per step of the ops a compiled program runs
  (a loop body's as often as its known trip count): what cost_model.features reads
  from a profile of it."""
  ops = hlo_ops.ops(compiled.as_text(), trace.kernel_shapes(params))
  return [(op.category, op.flops * op.executions, op.bytes * op.executions, op.executions)
          for op in ops.values() if op.opcode not in hlo.FREE_OPS]


def interval(judged, key=cost_model.COST_MODEL, measured='measured_s'):
  """(low, high) factors on a prediction: the 10th and 90th percentiles of measured /
  predicted by `key` over the leave-one-family-out predictions of `judged` (the cost
  model's, or memory_model's with key and measured its own); None without."""
  ratios = [r[measured] / r['predicted'][key] for r in judged['cases']
            if r['predicted'].get(key)] if judged else []
  if len(ratios) < 2:
    return None
  return tuple(float(q) for q in np.percentile(ratios, (10, 90)))


def roofline_model(measured):
  """A cost model with no fit: every op at the device's measured matmul peak and copy
  bandwidth (float32), no cost per op, no idle."""
  peak = measured['matmul_flops_per_s'].get('float32') or max(
      measured['matmul_flops_per_s'].values())
  rates = {'pi': peak, 'beta': measured['copy_bytes_per_s'], 'per_op_s': 0.0}
  return {'categories': {c: rates for c in hlo_ops.CATEGORIES}, 'idle_per_op_s': 0.0,
          'idle_fixed_s': 0.0}


def model_from(report):
  """{'time': (the cost model fitted on `report`'s profiled cases, its interval),
  'memory': (memory_model's a * buffers + b fitted on its measured step peaks, its
  interval) or None where it has too few}; UserError when it has too few profiled
  cases."""
  judged = cost_model.leave_one_family_out(report)  # its model is fitted on every case
  memory = memory_model.leave_one_family_out(report)
  return {'time': (judged['model'] if judged else cost_model.fit_on(report), interval(judged)),
          'memory': memory and (memory['fit'], interval(memory, memory_model.BUFFERS_FIT,
                                                        'measured'))}


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


def predict(config, fitted=None):
  """[{name, model, batch_size, devices, predicted_s, low_s, high_s, examples_per_s,
  memory_bytes, peak_bytes, peak_low_bytes, peak_high_bytes, compile_s}] for the
  cases of `config`: memory_bytes XLA's buffers, peak_* the peak fitted on them (None
  without a memory fit). `fitted` from model_from, or None for the roofline at the
  peaks measured first."""
  model, spread = fitted['time'] if fitted else (None, None)
  memory_fit, memory_spread = (fitted or {}).get('memory') or (None, None)
  cases = step_cases(config)
  if model is None:
    model = roofline_model(peaks_lib.measure({'float32'}))
  rows = []
  for name, case in cases:
    mesh, state, compiled, built, compile_s = compile_step(case)
    record = case_record.assemble(name, case.to_dict(), mesh.size,
                                  build.per_device_batch(case, mesh), built=built)
    seconds = cost_model.predict(model, ops_of(compiled, state.params))
    memory = memory_model.buffers(record)
    peak = memory_model.predict(memory_fit, memory) if memory_fit else None
    rows.append({
        'name': name, 'model': case.model, 'batch_size': case.batch_size, 'devices': mesh.size,
        'predicted_s': seconds,
        'low_s': seconds * spread[0] if spread else None,
        'high_s': seconds * spread[1] if spread else None,
        'examples_per_s': case.batch_size / seconds,
        'memory_bytes': memory, 'peak_bytes': peak,
        'peak_low_bytes': peak * memory_spread[0] if peak and memory_spread else None,
        'peak_high_bytes': peak * memory_spread[1] if peak and memory_spread else None,
        'compile_s': compile_s})
  return rows
