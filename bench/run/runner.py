"""Runs a suite: each case built, compiled, timed and costed; one report written.

A case that fails (out of memory, say) is recorded as failed with its error and
the suite goes on. The report is rewritten after every case, marked
`incomplete` until the last one is done, then `complete`, or `failed` when a case
failed (bench.main then exits 1), so a killed run keeps what it measured.

Every case's data, initial weights, transfer mode and memory footprint are
checked before the workdir is touched (`check_cases`): a missing dataset, a bad
split, weights that do not fit the model, a layer the model lacks or a size that
cannot fit in memory are user errors, all of every case reported at once, and
nothing is written. A step whose compiled temporaries cannot fit fails its case
before it runs (bench/workload/footprint.py). A user error that still surfaces
inside a case ends the run as one (it is not recorded as a failed case).

Each case runs data-parallel on its own mesh (bench/core/parallel.py: `num_devices`,
`parallel`). In a multi-process run every process runs the same cases in step,
each feeding its share of every batch, and only process 0 writes the report.
"""

import math
import os
import time

from absl import logging

from bench.core import interrupt
from bench.core import parallel
from bench.core.errors import UserError
from bench.core.progress import Progress
from bench.measure import compile_cache
from bench.measure import costs
from bench.measure import environment
from bench.measure import host_memory
from bench.measure import peaks
from bench.measure import timer
from bench.profile import trace
from bench.results import analysis
from bench.results import case_record
from bench.results import memory_model
from bench.results import predictors
from bench.results import plots
from bench.results import schema as report_lib
from bench.results import significance
from bench.results import writer
from bench.run import kernels
from bench.run import suite as suite_lib
from bench.run import workdir as workdir_lib
from bench.train import checkpoints
from bench.train import training
from bench.workload import build
from bench.workload import footprint
from bench.workload import pretrained

# Longest error text kept in the report; the full one (with traceback) is logged.
_MAX_ERROR_CHARS = 2000


def open_input(name, case, mesh):
  """The pipeline.Input of a real-data case, checked; None for synthetic data.

  Sets `case.num_classes` from the dataset when it is 0. Raises UserError for
  missing data, a bad split, or a class count that does not match the dataset.
  """
  try:
    return _open_input(case, mesh)
  except UserError as e:
    raise UserError(f'case {name!r}: {e}') from None


def _open_input(case, mesh):
  if case.dataset == 'synthetic':
    return None
  # Imported here, not at the top: TensorFlow takes seconds to import, and runs
  # on synthetic data (most tests, the zoo) never need it.
  from input_pipeline import pipeline  # pylint: disable=import-outside-toplevel
  data = pipeline.Input(case, parallel.batch_sharding(mesh))
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
  return data


def _problems(case, mesh):
  """(the case's pipeline.Input or None, [its problems, one line each]): its data, the
  weights it starts from, then, with both good, its transfer mode and whether it
  fits in memory (footprint.check, which builds the model's shapes)."""
  problems, data = [], None
  try:
    data = _open_input(case, mesh)
  except UserError as e:
    problems.append(str(e))
  try:
    if problems:  # the model's classes may come from the data: the weights' file alone
      if case.init_from:
        pretrained.parse(case.init_from)
    else:
      build.check_weights(case)
  except UserError as e:
    problems.append(str(e))
  if not problems:
    try:
      footprint.check(case, mesh)
    except UserError as e:
      problems.append(str(e))
  return data, problems


def check_cases(cases, meshes):
  """{name: pipeline.Input or None} of `cases` [(name, case)], every one checked
  (`_problems`) before anything is written. All problems of all cases are raised
  together as one UserError, a line each (a problem several cases share once, with
  their names): a user fixes them in one go, not one per try."""
  inputs, problems = {}, {}
  for name, case in cases:
    inputs[name], found = _problems(case, meshes[name])
    for problem in found:
      problems.setdefault(problem, []).append(name)
  if problems:
    # bench.core.errors.fail prefixes the first line with "error: "; the others here.
    raise UserError('\nerror: '.join(
        f'case{"s" if len(names) > 1 else ""} {", ".join(map(repr, names))}: {problem}'
        for problem, names in problems.items()))
  return inputs


def _time(name, case, step, carry, batches):
  """Runs the timer: (carry, out of the last step, build.Timed)."""
  progress = Progress(case.timed_steps, f'{name} timed steps')
  t0 = time.perf_counter()
  try:
    carry, out, samples, waits = timer.time_steps(
        step, carry, batches, warmup_steps=case.warmup_steps, timed_steps=case.timed_steps,
        sync=case.sync, on_sample=progress.update)
  finally:
    progress.close()
  return carry, out, build.timed(case, samples, waits, time.perf_counter() - t0,
                                 case.warmup_steps, case.timed_steps)


def _evaluate(case, state, data):
  """Exact metrics of `state` over case.eval_split (build.Metrics)."""
  t0 = time.perf_counter()
  metrics = build.evaluator(case, data)(state)
  return build.Metrics(build.finite(metrics['loss']), build.finite(metrics['accuracy']),
                       case.eval_split, metrics['num_examples'], time.perf_counter() - t0)


def _measure(name, case, mesh, data, workdir, step_peak, measured, predictor):
  """Measures the case into `measured` (case_record.assemble's keyword arguments), each
  value as soon as it is measured, so a failure keeps what was; status last. `step_peak`
  (host_memory.StepPeak) is started and stopped around the timed steps. `predictor`:
  kernels.for_run's (Predictor or None, why not)."""
  def on_built(built):
    measured.update(built=built)

  if case.benchmark == 'train':
    measured.update(training.train_and_evaluate(name, case, mesh, data, workdir, on_built))
    return
  if case.benchmark == 'input':  # the pipeline alone: a step that only receives the batch
    *_, timed = _time(name, case, lambda carry, batch: (carry, batch), None,
                      build.batches(case, mesh, None, data))
    measured.update(timed=timed, status='ok')
    return
  step, state, batches, compiled, built = build.build(case, mesh, data, on_built=on_built)
  measured.update(built=built)
  median = None
  if case.benchmark != 'compile':
    footprint.check_compiled(compiled, mesh)  # XLA:CPU would hang on what cannot fit
    step_peak.start()
    state, out, timed = _time(name, case, step, state, batches)
    step_peak.stop()
    measured.update(timed=timed)
    median = timed.step_time['median']
    if isinstance(out, dict):
      measured.update(final_metrics=build.Metrics(build.finite(out['loss']),
                                                  build.finite(out['accuracy'])))
    if case.eval_split:
      measured.update(evaluation=_evaluate(case, state, data))
  measured.update(fingerprint=checkpoints.fingerprint(
      {'params': state.params, 'batch_stats': state.batch_stats}))
  if case.profile:  # last: its extra steps change neither the timings nor the fingerprint
    steps = trace.steps_for(case.profile_steps, median)
    logging.info('%s: profiling %d more steps', name, steps)
    _, profile = trace.profile(
        step, state, batches, hlo_text=compiled.as_text(), params=state.params, steps=steps,
        sync=case.sync, workdir=workdir, name=name, timed_median=median)
    measured.update(profile=profile)
  # After the timed steps: its probe allocates the step's temporaries once more.
  measured.update(kernels=kernel_figures(predictor, compiled))
  measured.update(status='ok')


def kernel_figures(predictor, compiled):
  """The case record's `kernels` block of `compiled`: its step predicted from its
  kernels by `predictor` (kernels.for_run's (Predictor, '')), or only why not."""
  found, why = predictor
  if found is None:
    return {'why': why}
  _, step = found.step(compiled)
  return {**step, 'database': found.database, 'sampled': found.sampled, 'why': ''}


def run_case(name, case, mesh, data=None, workdir=None, predictor=(None, 'not asked for')):
  """Measures one case; returns its report record (status 'failed' with the error if it
  broke, 'diverged' if its training loss stopped being finite).

  `data` is the case's pipeline.Input from `open_input` (None for synthetic data);
  a training case writes its metrics and weights under `workdir`; `predictor`
  (kernels.for_run's) predicts a timed or compiled step from its kernels.
  """
  config = case.to_dict()
  measured = {}
  step_peak = host_memory.StepPeak()
  try:
    measured.update(dataset=data.describe() if data is not None
                    else case_record.synthetic_dataset(case.num_classes))
    _measure(name, case, mesh, data, workdir, step_peak, measured, predictor)
  except UserError:
    raise  # the user's to fix, not a broken case: the run ends with it (exit 2)
  except Exception as e:  # pylint: disable=broad-except  (one broken case must not end the suite)
    logging.exception('case %s failed', name)
    measured.update(status='failed', error=f'{type(e).__name__}: {e}'[:_MAX_ERROR_CHARS])
  else:  # _measure's frame, and the case's buffers with it, are gone
    measured.update(host_step_peak_bytes=step_peak.bytes())
  peaks = costs.device_peak_bytes(mesh.local_devices)
  return case_record.assemble(name, config, mesh.size, build.per_device_batch(case, mesh),
                              device_peaks=peaks, host_peak_rss_bytes=costs.host_peak_rss_bytes(),
                              **measured)


def _log_result(i, n, name, case, record):
  if record['status'] == 'ok' and case.benchmark == 'input':
    logging.info('[%d/%d] %s: input pipeline %.0f examples/s (median batch %.3f ms)', i, n, name,
                 record['throughput']['examples_per_s_total'],
                 record['step_time_s']['median'] * 1e3)
  elif record['status'] == 'ok' and case.benchmark == 'compile':
    logging.info('[%d/%d] %s: compiled in %.2f s, %.3g train GFLOP per example', i, n, name,
                 record['compile_s'], (record['xla']['flops_per_example'] or math.nan) * 1e-9)
  elif record['status'] in ('ok', 'diverged') and case.benchmark == 'train':
    training = record['training']
    logging.info('[%d/%d] %s: %s after %d epochs (%s); best eval accuracy %s, mean step %.3f '
                 'ms, %.1f s training', i, n, name, record['status'], training['epochs_run'],
                 training['stop_reason'], 'n/a' if training['best_eval_accuracy'] is None
                 else f'{training["best_eval_accuracy"]:.4f}',
                 (training['mean_step_s'] or math.nan) * 1e3, training['train_s'])
  elif record['status'] == 'ok':
    logging.info('[%d/%d] %s: compile %.2f s, median step %.3f ms (IQR/median %.3f, data '
                 'wait %.1f%%), %.0f examples/s', i, n, name, record['compile_s'],
                 record['step_time_s']['median'] * 1e3, record['step_time_s']['iqr_over_median'],
                 record['data_wait_s']['share'] * 100, record['throughput']['examples_per_s'])
  noise = record['status'] == 'ok' and significance.noise_line(name, record['step_time_s'])
  if noise:
    logging.warning(noise)


def run_suite(config, workdir, config_file=None, restart=False, kernel_db=None):
  """Runs every selected case of `config` and writes the report into `workdir`.

  A workdir holding an earlier run of the same config is continued (see
  bench/run/workdir.py); `restart` deletes its outputs and starts over. Raises
  UserError, before anything is written, for an invalid config or workdir, and
  interrupt.Interrupted on SIGTERM or SIGINT, from the start (the report then holds
  the cases finished so far, marked incomplete). `kernel_db`: the kernel database
  whose predictors predict each case's step (kernel_store.path's flag: default
  $FLAX_BENCH_KERNELS or ~/.cache/flax-bench/kernels.db, 'off' for none). Returns the
  report dict.
  """
  with interrupt.handlers():
    return _run_suite(config, workdir, config_file, restart, kernel_db)


def _run_suite(config, workdir, config_file, restart, kernel_db):
  suite = suite_lib.expand(config)
  meshes = {name: parallel.mesh(case.num_devices) for name, case in suite.cases}
  inputs = check_cases(suite.cases, meshes)
  for name, case in suite.cases:  # once the run is sure to start: no noise before an error
    if case.transfer != 'scratch' and not case.init_from:
      logging.warning('case %s: transfer %r from random weights (init_from is empty); the '
                      'frozen layers keep their initialisation', name, case.transfer)
  # Here, not before: what the checks compiled (a PRNG key) leaves no cache beside a
  # workdir a user error never creates.
  compile_cache.configure(config.get('compile_cache', compile_cache.AUTO), workdir)
  workdir_lib.prepare(workdir)
  records = workdir_lib.resume(workdir, workdir_lib.manifest(suite), restart)
  kept = set(records)
  env = environment.collect()
  names = [name for name, _ in suite.cases]

  predictor = kernels.for_run(kernel_db)  # without one, each case's kernels.why says why

  def write():
    done = [records[name] for name in names if name in records]
    report = report_lib.build(suite.name, config_file, env, done, suite.ratios, suite.scaling,
                               suite.notes)
    # Done once every case is done and the peaks are measured, after the last case.
    report['suite']['status'] = (
        'incomplete' if len(done) < len(names) or not env['peaks']
        else 'failed' if any(r['status'] == 'failed' for r in done) else 'complete')
    if parallel.is_primary():  # one writer: process 0's report (its timings and memory)
      writer.write(workdir, report, analysis.markdown(analysis.analyze(report))
                   + predictors.markdown(predictors.judge(report))
                   + memory_model.markdown(memory_model.leave_one_family_out(report)))
    return report

  report = write()
  host_memory.warm_up()
  if kept:
    logging.info('continuing the run in %s: %d of %d cases are done (%s)', workdir, len(kept),
                 len(names), ', '.join(n for n in names if n in kept))
  for i, (name, case) in enumerate(suite.cases, 1):
    if name in kept:
      continue
    logging.info('[%d/%d] %s: %s %s on %s, batch %d over %d devices (%s), %s', i, len(names),
                 name, 'no model' if case.benchmark == 'input' else case.model, case.benchmark,
                 case.dataset, case.batch_size, meshes[name].size, case.parallel, case.dtype)
    interrupt.fault('case', i)
    records[name] = run_case(name, case, meshes[name], inputs[name], workdir, predictor)
    _log_result(i, len(names), name, case, records[name])
    report = write()
    if case.benchmark == 'train' and parallel.is_primary():
      plots.training_curves(workdir, report)
    interrupt.check()
  # After the cases, so that the micro-benchmarks' arrays count in no case's memory peak.
  env['peaks'] = peaks.measure({case.dtype for _, case in suite.cases})
  matmul = env['peaks']['matmul_flops_per_s']
  logging.info('device peaks for the roofline: matmul %s GFLOP/s, copy %.3g GB/s (%.1f s)',
               ', '.join(f'{flops * 1e-9:.3g} ({dtype})' for dtype, flops in matmul.items()),
               env['peaks']['copy_bytes_per_s'] * 1e-9, env['peaks']['seconds'])
  report = write()
  if report['scaling'] and parallel.is_primary():
    plots.scaling(workdir, report)
  result = analysis.analyze(report)
  if result and parallel.is_primary():
    plots.proxies(workdir, result)
  if parallel.is_primary():
    plots.profile(workdir, report)
    judged = predictors.judge(report)
    if judged:
      plots.predicted(workdir, judged)
  failed = [r['name'] for r in report['cases'] if r['status'] == 'failed']
  logging.info('%d/%d cases ok%s; report in %s', len(names) - len(failed), len(names),
               f' (failed: {", ".join(failed)}; a rerun runs them again)' if failed else '',
               os.path.join(workdir, 'report.md'))
  return report
