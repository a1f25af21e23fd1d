"""A kernel timed in a loop of its own, the step's probes, `kernels sample` and
`predict`: what is summed, what is sampled, and every mistake one line."""

import dataclasses
import json

import jax.numpy as jnp
import numpy as np
import pytest

import configs
from bench.core import machine
from bench.measure import environment
from bench.measure import kernel_bench
from bench.measure import kernels as kernels_lib
from bench.results import kernel_model
from bench.results import formatting
from bench.results import kernel_store
from bench.results import schema
from bench.results import writer
from bench.run import kernels
from bench.run import predict
from tests.conftest import call_cli
from tests import test_predictors
from tests import test_report
from tests.test_kernels import _kernels_of

_TINY = ('--config=quickstart', '--config.select=mlp_b32', '--config.cases.mlp_b32.batch_size=4')


@pytest.fixture(autouse=True)
def _quick_timing(monkeypatch):
  """Recorded, not judged: loops timed in calls of 0.2 ms, 3 at the least."""
  monkeypatch.setattr(kernel_bench, 'TARGET_CALL_S', 2e-4)
  monkeypatch.setattr(kernel_bench, 'MIN_SAMPLES', 3)


def test_a_kernel_runs_in_its_loop_and_a_fill_is_hoisted_out_of_it():
  dot, = [k for k in _kernels_of(jnp.dot, jnp.ones((4, 8)), jnp.ones((8, 5))) if k.kind == 'dot']
  text, parameters = kernels_lib.looped(dot)
  # Its operands, its result's initial value, then the iteration count.
  assert parameters == ('f32[4,8]', 'f32[8,5]', 'f32[4,5]', 's32[]')
  looped = kernel_bench.compile_module(text)
  assert kernel_bench.check(dot, looped, looped=True) == kernel_bench.Check(
      True, '', (('dot', dot.key),))
  fill, = [k for k in _kernels_of(lambda: jnp.arange(4096.0)) if k.kind == 'fill']
  assert not fill.parameters  # nothing to carry: measure times it by the call
  summary, check = kernel_bench.measure(fill, 0.0, min_time_s=0.005)
  assert check.why.endswith('timed by the call: a loop would hoist it') and summary['median'] > 0


def test_fresh_memory_is_a_positive_cost():
  assert kernel_bench.fresh_memory(4 << 20, 0.0, min_time_s=0.005) > 0


def test_the_next_kind_is_the_fewest_sampled_then_the_least_sure():
  rows = [{'kind': kind, 'key': f'{kind}{i}'} for kind, n in (('dot', 12), ('fill', 3))
          for i in range(n)]
  rng = np.random.default_rng(0)
  assert kernels._next_kind(['dot', 'fill'], rows, None, rng) == 'fill'
  rows += [{'kind': 'fill', 'key': f'more{i}'} for i in range(9)]

  class _Errors:
    def errors(self):  # a sure dot predictor (p90 1.01x), an unsure fill one (p90 4x)
      return {'dot': {'p90': 1.01}, 'fill': {'p90': 4.0}}

  picks = [kernels._next_kind(['dot', 'fill'], rows, _Errors(), rng) for _ in range(200)]
  # Weights log(1.01) : log(4): about 7 dots in 1,000.
  assert picks.count('fill') >= 195


def test_sample_records_sampled_kernels_only_and_resumes_with_new_programs(tmp_path):
  """Bounded by count, never by seconds or by what a kernel measures (one may be over
  the sampling limit on a loaded machine: recorded, timed by one call)."""
  with kernel_store.connect(str(tmp_path / 'k.db')) as store:
    first = kernels.sample(store, 600, seed=3, most=4)
    key = machine.key(machine.identity(environment.collect()))
    recorded = store.rows(key, source='sample')
    assert first['new'] == 4 == len(recorded) and {r['source'] for r in recorded} == {'sample'}
    assert sum(first['kinds'].values()) == len(kernels.sampled_rows(store, key))
    # A rerun draws other programs: 3 more distinct kernels, none measured twice.
    second = kernels.sample(store, 600, seed=3, most=3)
    assert second['new'] == 3 and len(store.rows(key, source='sample')) == 7


def test_a_kernel_over_the_limit_is_timed_by_the_call_that_found_it_out(tmp_path):
  dot, = [k for k in _kernels_of(jnp.dot, jnp.ones((64, 64)), jnp.ones((64, 64)))
          if k.kind == 'dot']
  here = machine.identity(environment.collect())
  session = kernels.Session(here, machine.key(here), {'matmul_flops_per_s': {'float32': 1e11},
                                                      'copy_bytes_per_s': 1e10}, 0.0, '')
  with kernel_store.connect(str(tmp_path / 'k.db')) as store:
    median, same = kernels.measure_kernel(store, session, dot, 'sample', limit_s=1e-12)
    row, = store.rows(machine.key(here))
  assert median == row['median_s'] > 0 and same and row['n'] == 1
  assert row['why'].startswith('one execution takes ')
  assert row['why'].endswith(' s, over the limit of 1e-12 s: timed by 1 call(s) of 1')


class _Law:
  """A Model stub: every kernel 10 us, interval 5-20 us."""

  def predict_all(self, fields):
    return [(1e-5, 5e-6, 2e-5)] * len(fields)


def test_a_step_is_its_kernels_times_their_executions_plus_its_overhead(tmp_path, monkeypatch):
  _, config = configs.load('quickstart', list(_TINY[1:]))
  monkeypatch.setattr(kernels, 'fitted', lambda store, key, rows=None: (_Law(), 2e-5))
  monkeypatch.setattr(kernel_bench, 'fresh_memory', lambda nbytes, probe_s: 3e-5)
  with kernel_store.connect(str(tmp_path / 'k.db')) as store:
    row, = predict.predict(config, store)
  (_, case), = predict.step_cases(config)
  compiled = predict.compile_step(case)[2]
  executions = sum(k.executions for k in kernels_lib.kernels(compiled.as_text()))
  assert row['overhead_s'] == pytest.approx(5e-5)
  assert row['predicted_s'] == pytest.approx(5e-5 + 1e-5 * executions)
  assert (row['low_s'], row['high_s']) == pytest.approx(
      (5e-5 + 5e-6 * executions, 5e-5 + 2e-5 * executions))
  assert row['examples_per_s'] == pytest.approx(4 / row['predicted_s'])
  assert row['kernel_sum_s'] is None and row['kernels'] == len(kernels_lib.kernels(
      compiled.as_text()))


def _dot_database(db):
  """A kernel database of one sampled dot, of this machine: every kind falls back to the
  roofline."""
  here = machine.identity(environment.collect())
  dot, = [k for k in _kernels_of(jnp.dot, jnp.ones((4, 8)), jnp.ones((8, 5))) if k.kind == 'dot']
  with kernel_store.connect(db) as store:
    store.add(here, dot, {'median': 1e-6, 'iqr': 0.0, 'n': 1, 'samples': [1e-6]},
              kernel_bench.Check(True, '', ()), 1e-5, {'matmul_flops_per_s': {'float32': 1e11},
                                                       'copy_bytes_per_s': 1e10}, 'sample', '')


def test_a_fit_is_kept_for_the_same_rows_and_made_anew_for_new_ones(tmp_path, monkeypatch):
  db = str(tmp_path / 'k.db')
  _dot_database(db)
  calls = []
  real = kernel_model.fit
  monkeypatch.setattr(kernel_model, 'fit', lambda rows: calls.append(len(rows)) or real(rows))
  here = machine.identity(environment.collect())
  with kernel_store.connect(db) as store:
    row, = kernels.sampled_rows(store, machine.key(here))
    first, _ = kernels.fitted(store, machine.key(here))
    kept, _ = kernels.fitted(store, machine.key(here))
    assert calls == [1] and kept.predict(row) == first.predict(row)
    dot, = [k for k in _kernels_of(jnp.dot, jnp.ones((8, 8)), jnp.ones((8, 8))) if k.kind == 'dot']
    store.add(here, dot, {'median': 2e-6, 'iqr': 0.0, 'n': 1, 'samples': [2e-6]},
              kernel_bench.Check(True, '', ()), 1e-5, {'matmul_flops_per_s': {'float32': 1e11},
                                                       'copy_bytes_per_s': 1e10}, 'sample', '')
    kernels.fitted(store, machine.key(here))
    assert calls == [1, 2]  # a new row: fitted again, and kept in place of the last
    assert store.conn.execute('SELECT count(*) FROM fits').fetchone() == (1,)


def _peaks_report(path):
  """A report whose measured step peaks are 1.5 * buffers + 20 MiB, buffers 40 to 270 MiB."""
  report = test_predictors._study()
  for i, case in enumerate(report['cases']):
    buffers = (40 + 10 * i) * 2 ** 20
    case['num_devices'] = 1
    case['memory'].update(argument_bytes=buffers, output_bytes=buffers // 2,
                          alias_bytes=buffers // 2, temp_bytes=0,
                          host_step_peak_bytes=int(1.5 * buffers) + 20 * 2 ** 20)
  path.mkdir()
  writer.write(str(path), report)
  return path / 'report.json'


def test_predict_end_to_end(tmp_path):
  """Rows sampled from a law (not from the config's kernels): a line per case, the
  table, the peak fitted on another report (flagged: these buffers are smaller than
  any it saw) and --out."""
  db = str(tmp_path / 'k.db')
  _dot_database(db)
  out = tmp_path / 'p.json'
  memory = _peaks_report(tmp_path / 'peaks')
  result = call_cli(*_TINY, f'--db={db}', f'--out={out}', f'--memory={memory}',
                    module='bench.predict')
  assert result.returncode == 0, result.stderr
  line, = [x for x in result.stdout.splitlines() if x.startswith('mlp_b32: ')]
  row, = json.loads(out.read_text())
  assert line.startswith(f'mlp_b32: {row["kernels"]} kernels, predicted ')
  assert row['low_s'] <= row['predicted_s'] <= row['high_s']
  # Every family held out fitted the law exactly: the interval is the prediction.
  assert row['peak_bytes'] == pytest.approx(1.5 * row['memory_bytes'] + 20 * 2 ** 20)
  assert row['peak_low_bytes'] == pytest.approx(row['peak_bytes'])
  assert row['peak_outside'] and row['memory_bytes'] < 40 * 2 ** 20
  table, = [x for x in result.stdout.splitlines() if x.startswith('| mlp_b32 ')]
  assert table.startswith('| mlp_b32 | seed_mlp | 4 | 1 |')
  assert f'| {formatting.fmt(row["peak_bytes"], 1e-6)}* |' in table


@pytest.mark.parametrize('args, message', [
    (('--db={none}',), '{none}: no kernel database here yet; `flax-bench kernels sample` makes '
     'one (about 15 minutes), on this machine'),
    (('--db={empty}',), 'the kernel database has no kernel sampled on this machine'),
    (('--db={empty}', '--memory={timed}'), '--memory={timed}: "What predicts peak memory" needs '
     'timed cases on one CPU device whose step buffers take at least 32.0 MiB, of 3 or more '
     'model families; this report has 0 such cases.'),
    (('--kernels=guess',), "argument --kernels: invalid choice: 'guess'"),
])
def test_predict_mistakes_are_one_line(tmp_path, args, message):
  empty = tmp_path / 'empty.db'
  kernel_store.connect(str(empty)).close()
  (tmp_path / 'timed').mkdir()
  writer.write(str(tmp_path / 'timed'), test_report._report())  # no step peak measured
  paths = {'none': tmp_path / 'none.db', 'empty': empty,
           'timed': tmp_path / 'timed' / 'report.json'}
  result = call_cli(*_TINY, *(a.format(**paths) for a in args), module='bench.predict')
  assert result.returncode == 2
  error, = result.stderr.splitlines()
  assert error.startswith(f'error: {message.format(**paths)}'), error
  assert not (tmp_path / 'none.db').exists()


def test_the_model_predicts_a_kernel_from_its_fields_alone():
  """What predict hands the model is a Kernel's fields (dataclasses.asdict), nothing
  measured: a dot's prediction from rows of dots, each 1 us per 10 MFLOP."""
  rows = []
  for n in (8, 16, 32, 64, 128, 256, 512):
    kernel, = [k for k in _kernels_of(jnp.dot, jnp.ones((n, 64)), jnp.ones((64, n)))
               if k.kind == 'dot']
    rows.append({**dataclasses.asdict(kernel), 'median_s': kernel.flops / 1e13})
  model = kernel_model.fit(rows)
  seconds, low, high = model.predict({**rows[3], 'median_s': None})
  assert low <= seconds <= high and seconds == pytest.approx(rows[3]['median_s'], rel=0.5)


def test_a_run_records_its_kernel_predictions_and_judges_them(tmp_path):
  """Through bench.main with a kernel database: each case's step predicted from its
  kernels as bench.predict predicts it (the same kernels, the same predictions: only
  the probed overhead is measured anew), report.md's section and predicted.png; with
  the database off, each case says why it has none."""
  db = str(tmp_path / 'k.db')
  _dot_database(db)
  select = ['--config=param_vs_runtime', '--config.select=mlp_64x2,seed_cnn,width_nf16',
            '--config.batch_size=8']
  workdir = tmp_path / 'study'
  result = call_cli(*select, f'--workdir={workdir}', f'--kernels={db}',
                    '--config.warmup_steps=1', '--config.timed_steps=3')
  assert result.returncode == 0, result.stderr
  md = (workdir / 'report.md').read_text()
  assert '\n## What predicts step time\n' in md
  assert '| kernel predictor (sampled kernels only) | never fitted on a model | 3 |' in md
  assert (workdir / 'predicted.png').stat().st_size > 0
  report = schema.read(str(workdir / 'report.json'))
  _, config = configs.load('param_vs_runtime', select[1:])
  with kernel_store.connect(db) as store:
    rows = {row['name']: row for row in predict.predict(config, store)}
  for case in report['cases']:
    block, row = case['kernels'], rows[case['name']]
    assert (block['database'], block['sampled'], block['why'], block['count']) == (
        db, 1, '', row['kernels'])
    assert block['predicted_s'] - block['overhead_s'] == pytest.approx(
        row['predicted_s'] - row['overhead_s'], rel=1e-9)
    assert block['sum_s'] is None and block['tried'] == 0  # none measured alone
  off = tmp_path / 'off'
  result = call_cli(*select, '--config.select=mlp_64x2', f'--workdir={off}',
                    '--config.warmup_steps=1', '--config.timed_steps=3')
  assert result.returncode == 0, result.stderr
  case, = schema.read(str(off / 'report.json'))['cases']
  assert case['kernels'] == {**{key: None for key in schema.CASE_BLOCKS['kernels']},
                             'why': 'the kernel database is off'}
