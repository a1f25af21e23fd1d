"""Runs a suite: each case built, compiled, timed and costed; one report written.

A case that fails (out of memory, say) is recorded as failed with its error and
the suite goes on. The report is rewritten after every case, marked
`incomplete` until the last one is done, so a killed run keeps what it measured.

Every case's data is opened and checked before the workdir is touched, so a
missing dataset or a bad split is one error and nothing written.
"""

import itertools
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


def _model(case):
  return models.create(case.model, num_classes=case.num_classes, dtype=jnp.dtype(case.dtype),
                       **case.model_kwargs)


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


def open_input(name, case, mesh):
  """The pipeline.Input of a real-data case, checked; None for synthetic data.

  Sets `case.num_classes` from the dataset when it is 0. Raises UserError for
  missing data, a bad split, or a class count that does not match the dataset.
  """
  if case.dataset == 'synthetic':
    return None
  # Imported here, not at the top: TensorFlow takes seconds to import, and runs
  # on synthetic data (most tests, the zoo) never need it.
  from input_pipeline import pipeline  # pylint: disable=import-outside-toplevel
  try:
    data = pipeline.Input(case, NamedSharding(mesh, P('data')))
    classes = data.source.num_classes
    if case.num_classes == 0:
      case.num_classes = classes
    elif case.num_classes != classes:
      raise UserError(f'num_classes is {case.num_classes} but dataset {case.dataset} has '
                      f'{classes} classes; set --config.num_classes={classes}, or 0 to follow '
                      'the dataset')
    # A compile case reads no batch, but its report describes the split.
    data.check(case.train_split, full_batches=case.benchmark != 'compile')
    if case.eval_split:
      data.check(case.eval_split, full_batches=False)
  except UserError as e:
    raise UserError(f'case {name!r}: {e}') from None
  return data


def _batches(case, mesh, rng, data):
  """The endless iterator of device batches the timed steps read."""
  if data is None or case.benchmark == 'compile':  # compiling needs only their shape
    return itertools.cycle(synthetic.make_batches(
        rng, num_batches=1 if data else case.num_batches, batch_size=case.batch_size,
        image_shape=tuple(case.image_shape), num_classes=case.num_classes,
        sharding=NamedSharding(mesh, P('data'))))
  return data.stream(case.train_split, training=case.benchmark in ('train_step', 'input'))


def build(case, mesh, record, data=None):
  """Model, state, batches and the compiled timed function of `case`.

  Fills the params, xla, memory and compile fields of `record` (and xla_forward
  for a compile case), and returns (step, state, batches) where
  `step(state, batch) -> (state, out)` calls the compiled function exactly once
  and `batches` is an endless iterator of device batches (from `data`, the
  case's pipeline.Input, or synthetic).
  """
  model = _model(case)
  fn, tx, donate = _timed_fn(case, model)
  state_rng, data_rng = jax.random.split(jax.random.key(case.seed))
  replicated = NamedSharding(mesh, P())
  state = steps.create_train_state(model, tx, state_rng, tuple(case.image_shape), replicated)
  if case.init_from:
    variables = pretrained.load(case.init_from, jax.device_get(
        {'params': state.params, 'batch_stats': state.batch_stats}))
    state = steps.with_variables(state, tx, variables, replicated)
  record['params'] = costs.param_counts(state.params, state.batch_stats)
  batches = _batches(case, mesh, data_rng, data)
  # Compiled for the shapes of a batch that is then timed first: no batch is lost.
  first = next(batches)
  batches = itertools.chain([first], batches)

  jitted = jax.jit(fn, donate_argnums=(0,) if donate else ())
  compiled, record['lower_s'], record['compile_s'] = timer.compile_timed(jitted, state, first)
  record['xla'] = _xla_costs(compiled, case, mesh)
  record['memory'].update(costs.compiled_memory(compiled))
  if case.benchmark == 'compile':
    forward, _, _ = timer.compile_timed(jax.jit(steps.make_forward(model)), state, first)
    record['xla_forward'] = _xla_costs(forward, case, mesh)
  # A donating step returns the new state; the others leave it as it is.
  step = compiled if donate else (lambda s, b: (s, compiled(s, b)))
  return step, state, batches


def _time(name, case, mesh, record, step, carry, batches):
  """Runs the timer; fills step_time_s, data_wait_s, timing and throughput. Returns
  (carry, out of the last step)."""
  progress = Progress(case.timed_steps, f'{name} timed steps')
  t0 = time.perf_counter()
  try:
    carry, out, samples, waits = timer.time_steps(
        step, carry, batches, warmup_steps=case.warmup_steps, timed_steps=case.timed_steps,
        sync=case.sync, on_sample=progress.update)
  finally:
    progress.close()
  record['timing']['total_s'] = time.perf_counter() - t0
  stats = timer.summarize(samples)
  record['step_time_s'] = stats
  record['data_wait_s'] = timer.summarize_waits(waits, samples)
  flops = record['xla']['flops']
  record['throughput'] = {
      'examples_per_s': case.batch_size / stats['median'],
      'examples_per_s_per_device': case.batch_size / mesh.size / stats['median'],
      # Over the whole timed loop: what an epoch would see, bursts and stalls included.
      'examples_per_s_total': case.batch_size * stats['n'] / sum(samples),
      # Every device runs the per-device program: the achieved rate is over all of them.
      'flops_per_s': None if flops is None else flops * mesh.size / stats['median'],
  }
  return carry, out


def _evaluate(case, state, data, record):
  """Exact metrics of `state` over case.eval_split into record['eval']."""
  t0 = time.perf_counter()
  batches, num_examples = data.evaluation(case.eval_split)
  metrics = steps.evaluate(jax.jit(steps.make_eval_sums(_model(case))), state, batches)
  if metrics['num_examples'] != num_examples:
    raise RuntimeError(f'evaluated {metrics["num_examples"]} examples of {case.eval_split!r}, '
                       f'which has {num_examples}')
  record['eval'] = {'split': case.eval_split, 'num_examples': num_examples,
                    'loss': _finite(metrics['loss']), 'accuracy': _finite(metrics['accuracy']),
                    'wall_s': time.perf_counter() - t0}


def _measure(name, case, mesh, record, data):
  """Fills `record` in place, block by block, so a failure keeps what was measured."""
  if case.benchmark == 'input':  # the pipeline alone: a step that only receives the batch
    _time(name, case, mesh, record, lambda carry, batch: (carry, batch), None,
          _batches(case, mesh, None, data))
    return
  step, state, batches = build(case, mesh, record, data)
  if case.benchmark == 'compile':
    return
  state, out = _time(name, case, mesh, record, step, state, batches)
  if isinstance(out, dict):
    record['final_metrics'] = {key: _finite(out[key]) for key in record['final_metrics']}
  if case.eval_split:
    _evaluate(case, state, data, record)


def _dataset_block(case, data):
  if data is not None:
    return data.describe()
  return {'name': 'synthetic', 'location': None, 'num_classes': case.num_classes,
          'train_examples': None, 'eval_examples': None, 'ignored_files': None}


def run_case(name, case, mesh, data=None):
  """Measures one case; returns its report record (status 'failed' with the error if it broke).

  `data` is the case's pipeline.Input from `open_input` (None for synthetic data).
  """
  record = report_lib.new_case(name, case.to_dict())
  record['num_devices'] = mesh.size
  record['timing'].update(benchmark=case.benchmark, sync=case.sync,
                          warmup_steps=case.warmup_steps, timed_steps=case.timed_steps)
  try:
    record['dataset'] = _dataset_block(case, data)
    _measure(name, case, mesh, record, data)
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
  mesh = data_mesh()
  inputs = {name: open_input(name, case, mesh) for name, case in suite.cases}
  prepare_workdir(workdir)
  env = environment.collect()
  records = []
  for i, (name, case) in enumerate(suite.cases, 1):
    logging.info('[%d/%d] %s: %s %s on %s, batch %d, %s', i, len(suite.cases), name,
                 'no model' if case.benchmark == 'input' else case.model, case.benchmark,
                 case.dataset, case.batch_size, case.dtype)
    record = run_case(name, case, mesh, inputs[name])
    records.append(record)
    if record['status'] == 'ok' and case.benchmark == 'input':
      logging.info('[%d/%d] %s: input pipeline %.0f examples/s (median batch %.3f ms)', i,
                   len(suite.cases), name, record['throughput']['examples_per_s_total'],
                   record['step_time_s']['median'] * 1e3)
    elif record['status'] == 'ok' and case.benchmark == 'compile':
      logging.info('[%d/%d] %s: compiled in %.2f s, %.3g train GFLOP per example', i,
                   len(suite.cases), name, record['compile_s'],
                   (record['xla']['flops_per_example'] or math.nan) * 1e-9)
    elif record['status'] == 'ok':
      logging.info('[%d/%d] %s: compile %.2f s, median step %.3f ms (IQR/median %.3f, data '
                   'wait %.1f%%), %.0f examples/s', i, len(suite.cases), name, record['compile_s'],
                   record['step_time_s']['median'] * 1e3, record['step_time_s']['iqr_over_median'],
                   record['data_wait_s']['share'] * 100, record['throughput']['examples_per_s'])
    report = report_lib.build(suite.name, config_file, env, records, suite.ratios)
    report['suite']['status'] = 'complete' if i == len(suite.cases) else 'incomplete'
    report_lib.write(workdir, report)
  failed = [r['name'] for r in records if r['status'] != 'ok']
  logging.info('%d/%d cases ok%s; report in %s', len(records) - len(failed), len(records),
               f' (failed: {", ".join(failed)})' if failed else '', os.path.join(workdir, 'report.md'))
  return report
