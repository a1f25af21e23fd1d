"""A kernel timed in a loop of its own, the step's probes, `kernels sample` and
`predict --kernels`: what is summed, what is sampled, and every mistake one line."""

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
from bench.results import kernel_store
from bench.run import kernels
from tests.conftest import call_cli
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
  the sampling limit on a loaded machine: recorded, without a median)."""
  with kernel_store.connect(str(tmp_path / 'k.db')) as store:
    first = kernels.sample(store, 600, seed=3, most=4)
    key = machine.key(machine.identity(environment.collect()))
    recorded = store.rows(key, source='sample')
    assert first['new'] == 4 == len(recorded) and {r['source'] for r in recorded} == {'sample'}
    assert sum(first['kinds'].values()) == len(kernels.sampled_rows(store, key))
    # A rerun draws other programs: 3 more distinct kernels, none measured twice.
    second = kernels.sample(store, 600, seed=3, most=3)
    assert second['new'] == 3 and len(store.rows(key, source='sample')) == 7


class _Law:
  """A Model stub: every kernel 10 us, interval 5-20 us."""

  def predict_all(self, fields):
    return [(1e-5, 5e-6, 2e-5)] * len(fields)


def test_a_step_is_its_kernels_times_their_executions_plus_its_overhead(tmp_path, monkeypatch):
  _, config = configs.load('quickstart', list(_TINY[1:]))
  monkeypatch.setattr(kernels, 'fitted', lambda store, key: (_Law(), 2e-5))
  monkeypatch.setattr(kernel_bench, 'fresh_memory', lambda nbytes, probe_s: 3e-5)
  with kernel_store.connect(str(tmp_path / 'k.db')) as store:
    row, = kernels.predict_config(config, store)
  (_, case), = kernels.predict.step_cases(config)
  compiled = kernels.predict.compile_step(case)[2]
  executions = sum(k.executions for k in kernels_lib.kernels(compiled.as_text()))
  assert row['overhead_s'] == pytest.approx(5e-5)
  assert row['predicted_s'] == pytest.approx(5e-5 + 1e-5 * executions)
  assert (row['low_s'], row['high_s']) == pytest.approx(
      (5e-5 + 5e-6 * executions, 5e-5 + 2e-5 * executions))
  assert row['examples_per_s'] == pytest.approx(4 / row['predicted_s'])
  assert row['kernel_sum_s'] is None and row['kernels'] == len(kernels_lib.kernels(
      compiled.as_text()))


def test_predict_by_kernels_end_to_end(tmp_path, monkeypatch):
  """Rows sampled from a law (not from the config's kernels): every kind falls back to
  the roofline, and the table, a line per case and --out come out."""
  db = str(tmp_path / 'k.db')
  here = machine.identity(environment.collect())
  dot, = [k for k in _kernels_of(jnp.dot, jnp.ones((4, 8)), jnp.ones((8, 5))) if k.kind == 'dot']
  with kernel_store.connect(db) as store:
    store.add(here, dot, {'median': 1e-6, 'iqr': 0.0, 'n': 1, 'samples': [1e-6]},
              kernel_bench.Check(True, '', ()), 1e-5, {'matmul_flops_per_s': {'float32': 1e11},
                                                       'copy_bytes_per_s': 1e10}, 'sample', '')
  out = tmp_path / 'p.json'
  result = call_cli(*_TINY, '--kernels=predict', f'--db={db}', f'--out={out}',
                    module='bench.predict')
  assert result.returncode == 0, result.stderr
  line, = [x for x in result.stdout.splitlines() if x.startswith('mlp_b32: ')]
  rows = json.loads(out.read_text())
  assert line.startswith(f'mlp_b32: {rows[0]["kernels"]} kernels, predicted ')
  assert rows[0]['low_s'] <= rows[0]['predicted_s'] <= rows[0]['high_s']
  assert '| mlp_b32 | seed_mlp | 4 | 1 |' in result.stdout


@pytest.mark.parametrize('args, message', [
    (('--kernels=predict', '--db={none}'), '{none}: no kernel database here yet; `flax-bench '
     'kernels sample` makes one (about 10 minutes), on this machine'),
    (('--kernels=predict', '--db={empty}'), 'the kernel database has no kernel sampled on this '
     'machine'),
    (('--kernels=predict', '--fit=x.json'), '--kernels and --fit are two predictors; give one'),
    (('--kernels=guess',), "argument --kernels: invalid choice: 'guess'"),
])
def test_predict_by_kernels_mistakes_are_one_line(tmp_path, args, message):
  empty = tmp_path / 'empty.db'
  kernel_store.connect(str(empty)).close()
  paths = {'none': tmp_path / 'none.db', 'empty': empty}
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
