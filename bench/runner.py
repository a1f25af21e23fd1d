"""Runs a suite: each case built, compiled, timed and costed; one report written.

A case that fails (out of memory, say) is recorded as failed with its error and
the suite goes on. The report is rewritten after every case, marked
`incomplete` until the last one is done, so a killed run keeps what it measured.
"""

import math
import os
import tempfile
import time

from absl import logging
import jax
import jax.numpy as jnp
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
import numpy as np
import optax

import models
from bench import costs
from bench import environment
from bench import optimizers
from bench import pretrained
from bench import report as report_lib
from bench import steps
from bench import suite as suite_lib
from bench import timer
from bench.errors import UserError
from bench.progress import Progress
from input_pipeline import synthetic

# Longest error text kept in the report; the full one (with traceback) is logged.
_MAX_ERROR_CHARS = 2000


def prepare_workdir(workdir):
  """Creates `workdir` if needed and proves it writable, or raises UserError."""
  try:
    os.makedirs(workdir, exist_ok=True)
    with tempfile.TemporaryFile(dir=workdir):
      pass
  except OSError as e:
    raise UserError(f'cannot write to workdir {workdir!r} ({e.strerror or e}); pass '
                    '--workdir=DIR with a directory you can create and write') from None


def data_mesh():
  """All devices on one `data` axis: batches split over it, state replicated."""
  return Mesh(np.array(jax.devices()), ('data',))


def _timed_fn(case, model):
  """(pure function to jit, its optimizer, whether its state argument is donated)."""
  if case.benchmark in ('train_step', 'compile'):
    tx = optimizers.create(case)
    return steps.make_train_step(model, tx), tx, True
  # Only a train step reads optimizer state: eval and forward cases do not hold
  # one in device memory (Adam's moments would double a large model's footprint).
  fn = steps.make_eval_step(model) if case.benchmark == 'eval_step' else steps.make_forward(model)
  return fn, optax.identity(), False


def _finite(value):
  value = float(value)
  return value if math.isfinite(value) else None


def _xla_costs(compiled, case, mesh):
  xla = costs.xla_costs(compiled)
  # cost_analysis describes the per-device program, which sees batch/devices examples.
  xla['flops_per_example'] = (None if xla['flops'] is None
                              else xla['flops'] / (case.batch_size // mesh.size))
  return xla


def build(case, mesh, record):
  """Model, state, batches and the compiled timed function of `case`.

  Fills the params, xla, memory and compile fields of `record` (and xla_forward
  for a compile case), and returns (step, state, batches) where
  `step(state, batch) -> (state, out)` calls the compiled function exactly once.
  """
  model = models.create(case.model, num_classes=case.num_classes, dtype=jnp.dtype(case.dtype),
                        **case.model_kwargs)
  fn, tx, donate = _timed_fn(case, model)
  state_rng, data_rng = jax.random.split(jax.random.key(case.seed))
  replicated = NamedSharding(mesh, P())
  state = steps.create_train_state(model, tx, state_rng, tuple(case.image_shape), replicated)
  if case.init_from:
    variables = pretrained.load(case.init_from, jax.device_get(
        {'params': state.params, 'batch_stats': state.batch_stats}))
    state = steps.with_variables(state, tx, variables, replicated)
  record['params'] = costs.param_counts(state.params, state.batch_stats)
  batches = synthetic.make_batches(
      data_rng, num_batches=case.num_batches, batch_size=case.batch_size,
      image_shape=tuple(case.image_shape), num_classes=case.num_classes,
      sharding=NamedSharding(mesh, P('data')))

  jitted = jax.jit(fn, donate_argnums=(0,) if donate else ())
  compiled, record['lower_s'], record['compile_s'] = timer.compile_timed(jitted, state, batches[0])
  record['xla'] = _xla_costs(compiled, case, mesh)
  record['memory'].update(costs.compiled_memory(compiled))
  if case.benchmark == 'compile':
    forward, _, _ = timer.compile_timed(jax.jit(steps.make_forward(model)), state, batches[0])
    record['xla_forward'] = _xla_costs(forward, case, mesh)
  # A donating step returns the new state; the others leave it as it is.
  step = compiled if donate else (lambda s, b: (s, compiled(s, b)))
  return step, state, batches


def _measure(name, case, mesh, record):
  """Fills `record` in place, block by block, so a failure keeps what was measured."""
  step, state, batches = build(case, mesh, record)
  if case.benchmark == 'compile':
    return
  progress = Progress(case.timed_steps, f'{name} timed steps')
  t0 = time.perf_counter()
  try:
    _, out, samples = timer.time_steps(step, state, batches, warmup_steps=case.warmup_steps,
                                       timed_steps=case.timed_steps, sync=case.sync,
                                       on_sample=progress.update)
  finally:
    progress.close()
  record['timing']['total_s'] = time.perf_counter() - t0
  stats = timer.summarize(samples)
  record['step_time_s'] = stats
  record['throughput'] = {
      'examples_per_s': case.batch_size / stats['median'],
      'examples_per_s_per_device': case.batch_size / mesh.size / stats['median'],
      # Every device runs the per-device program: the achieved rate is over all of them.
      'flops_per_s': (None if record['xla']['flops'] is None
                      else record['xla']['flops'] * mesh.size / stats['median']),
  }
  if isinstance(out, dict):
    record['final_metrics'] = {key: _finite(out[key]) for key in record['final_metrics']}


def run_case(name, case, mesh):
  """Measures one case; returns its report record (status 'failed' with the error if it broke)."""
  record = report_lib.new_case(name, case.to_dict())
  record['num_devices'] = mesh.size
  record['timing'].update(benchmark=case.benchmark, sync=case.sync,
                          warmup_steps=case.warmup_steps, timed_steps=case.timed_steps)
  try:
    _measure(name, case, mesh, record)
    record['status'] = 'ok'
  except Exception as e:  # pylint: disable=broad-except  (one broken case must not end the suite)
    logging.exception('case %s failed', name)
    record['error'] = f'{type(e).__name__}: {e}'[:_MAX_ERROR_CHARS]
  record['memory']['device_peak_bytes'] = costs.device_peak_bytes(mesh.devices.flat)
  record['memory']['host_peak_rss_bytes'] = costs.host_peak_rss_bytes()
  return record


def run_suite(config, workdir, config_file=None):
  """Runs every selected case of `config` and writes the report into `workdir`.

  Raises UserError, before anything is written, for an invalid config or workdir.
  Returns the report dict.
  """
  suite = suite_lib.expand(config)
  prepare_workdir(workdir)
  mesh = data_mesh()
  env = environment.collect()
  records = []
  for i, (name, case) in enumerate(suite.cases, 1):
    logging.info('[%d/%d] %s: %s %s, batch %d, %s', i, len(suite.cases), name, case.model,
                 case.benchmark, case.batch_size, case.dtype)
    record = run_case(name, case, mesh)
    records.append(record)
    if record['status'] == 'ok' and case.benchmark == 'compile':
      logging.info('[%d/%d] %s: compiled in %.2f s, %.3g train GFLOP per example', i,
                   len(suite.cases), name, record['compile_s'],
                   (record['xla']['flops_per_example'] or math.nan) * 1e-9)
    elif record['status'] == 'ok':
      logging.info('[%d/%d] %s: compile %.2f s, median step %.3f ms (IQR/median %.3f), '
                   '%.0f examples/s', i, len(suite.cases), name, record['compile_s'],
                   record['step_time_s']['median'] * 1e3, record['step_time_s']['iqr_over_median'],
                   record['throughput']['examples_per_s'])
    report = report_lib.build(suite.name, config_file, env, records, suite.ratios)
    report['suite']['status'] = 'complete' if i == len(suite.cases) else 'incomplete'
    report_lib.write(workdir, report)
  failed = [r['name'] for r in records if r['status'] != 'ok']
  logging.info('%d/%d cases ok%s; report in %s', len(records) - len(failed), len(records),
               f' (failed: {", ".join(failed)})' if failed else '', os.path.join(workdir, 'report.md'))
  return report
