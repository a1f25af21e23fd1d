"""Profiles: HLO ops named and costed, trace time attributed, the report's section.

The HLO tests read a hand-written program whose every figure is worked out in
the comments; the end-to-end tests profile the seed CNN and MLP at tiny sizes
through bench.main.
"""

import copy
import json
import os

import jax
import numpy as np
import pytest

from bench.profile import hlo_ops
from bench.profile import trace
from bench.results import analysis
from bench.results import compare
from bench.results import schema as report_lib
from tests.conftest import call_cli

def test_attribute_shares_overlapping_ops_and_counts_idle():
  a, b = ('cpu', 'thread a'), ('cpu', 'thread b')
  events = [(0, 10, 'x', a), (12, 20, 'y', a), (5, 15, 'z', b)]
  times, counts, idle = trace.attribute(events, (0, 25))
  # 0-5 x; 5-10 x and z halve it; 10-12 z; 12-15 y and z; 15-20 y; 20-25 nothing.
  assert times == {'x': 7.5, 'y': 6.5, 'z': 6.0}
  assert idle == 5
  assert counts == {'x': 1, 'y': 1, 'z': 1}
  # Clipped to the window.
  times, _, idle = trace.attribute(events, (8, 14))
  assert times == {'x': 1.0, 'z': 4.0, 'y': 1.0} and idle == 0


def test_attribute_nested_ops_count_for_their_parent_only_outside():
  thread = ('cpu', 'a')
  events = [(0, 10, 'while', thread), (2, 5, 'body', thread), (6, 7, 'body', thread)]
  times, counts, idle = trace.attribute(events, (0, 10))
  assert times == {'while': 6, 'body': 4} and idle == 0
  assert counts == {'while': 1, 'body': 2}


def test_async_host_op_lasts_until_an_op_reads_its_result():
  ops = {'dot': hlo_ops.Op('dot', 'dot', hlo_ops.DOT, 'l', hlo_ops.FORWARD, 0, 0),
         'fusion': hlo_ops.Op('fusion', 'fusion', hlo_ops.ELEMENTWISE, 'l', hlo_ops.FORWARD, 0, 0),
         'add': hlo_ops.Op('add', 'add', hlo_ops.ELEMENTWISE, 'l', hlo_ops.FORWARD, 0, 0,
                       inputs=('dot', 'fusion'))}
  thread = ('cpu', 'a')
  events = [(0, 1, 'dot', thread), (1, 2, 'fusion', thread), (8, 9, 'add', thread),
            (10, 11, 'dot', thread), (12, 13, 'add', thread)]
  extended = trace.until_consumed(events, ops)
  # dot runs until add starts; fusion, run in its own event, is not extended.
  assert [e[:2] for e in extended] == [(0, 8), (1, 2), (8, 9), (10, 12), (12, 13)]
  times, _, idle = trace.attribute(extended, (0, 13))
  assert times == {'dot': 9.5, 'fusion': 0.5, 'add': 2} and idle == 1


def _profiled_run(tmp_path, name, *overrides):
  workdir = tmp_path / name
  result = call_cli('--config=configs/base.py', f'--workdir={workdir}', '--config.warmup_steps=3',
                    '--config.timed_steps=10', *overrides)
  assert result.returncode == 0, result.stderr
  return workdir, json.loads((workdir / 'report.json').read_text())['cases'][0]


def test_profile_of_the_seed_cnn(tmp_path):
  """Every conv layer by name, its gradients told apart, and the attribution adds up
  to the profiled steps' time."""
  workdir, case = _profiled_run(tmp_path, 'cnn', '--config.model=seed_cnn',
                                '--config.batch_size=16', '--config.profile=True',
                                '--config.profile_steps=8')
  p = case['profile']
  # At least the 8 asked for, and enough for a tenth of a second of steps.
  assert p['steps'] == trace.steps_for(8, case['step_time_s']['median']) >= 8
  assert p['directory'] == 'profiles/default'
  assert os.path.exists(workdir / p['trace']) and p['trace'].endswith('.xplane.pb')
  assert not os.path.exists(workdir / 'profiles' / 'default.partial')
  # Ops and idle add up to a profiled step exactly. That step is the mean of the
  # profiled window; the median of its 8 steps is within 10% on a quiet machine, but
  # one step slowed by a neighbour moves the mean (it failed a full run once), so the test
  # only bounds it at 25%; the 10% coverage is measured over the study (issue notes).
  total = sum(row['time_s'] for row in p['categories'])
  assert total == pytest.approx(p['step_s'], rel=1e-9)
  assert total == pytest.approx(p['profiled_median_s'], rel=0.25)
  # The tracer's cost, estimated from its events, is left out of the coverage.
  assert 0 < p['tracer_s'] < 0.5 * p['step_s']
  assert p['coverage'] == pytest.approx((p['step_s'] - p['tracer_s'])
                                        / case['step_time_s']['median'])
  assert sum(row['time_s'] for row in p['ops']) == pytest.approx(p['op_s'], rel=1e-9)
  assert sum(p['phases'].values()) == pytest.approx(p['op_s'], rel=1e-9)
  by_layer = {row['layer'] for row in p['layers']}
  assert {'conv1', 'conv2', 'conv3', 'top/fc1', 'top/predictions'} <= by_layer
  kinds = {(row['layer'], row['category']) for row in p['ops']}
  for layer in ('conv1', 'conv2', 'conv3'):
    assert (layer, hlo_ops.CONV_FORWARD) in kinds and (layer, hlo_ops.CONV_KERNEL_GRAD) in kinds
  # The images are not differentiated: conv1 has no input gradient.
  assert ('conv2', hlo_ops.CONV_INPUT_GRAD) in kinds
  assert ('conv1', hlo_ops.CONV_INPUT_GRAD) not in kinds
  # Per step, the ops' FLOPs are the program's (every op runs once a step).
  assert sum(row['flops'] for row in p['ops']) == pytest.approx(case['xla']['flops'], rel=0.01)
  md = (workdir / 'report.md').read_text()
  assert '## Where the time goes' in md and '| conv2 |' in md
  assert (workdir / 'profile.png').stat().st_size > 0
  report_lib.validate(json.loads((workdir / 'report.json').read_text()))


def test_profile_changes_neither_timings_nor_weights_and_compiles_nothing(tmp_path, monkeypatch):
  compiles = []

  def listener(event, _, **unused):
    if 'compile' in event:  # tracing, lowering and compiling a jitted function
      compiles.append(event)

  jax.monitoring.register_event_duration_secs_listener(listener)
  during = []
  original = trace.profile

  def counted(*args, **kwargs):
    before = len(compiles)
    out = original(*args, **kwargs)
    during.append(len(compiles) - before)
    return out

  monkeypatch.setattr(trace, 'profile', counted)
  trace.tracer_cost_per_event()  # its probe compiles once per process: done here, first
  fields = ('--config.model=seed_mlp', '--config.batch_size=8')
  try:
    _, off = _profiled_run(tmp_path, 'off', *fields)
    _, on = _profiled_run(tmp_path, 'on', *fields, '--config.profile=True')
  finally:
    jax.monitoring.unregister_event_duration_listener(listener)
  assert compiles and during == [0]  # the profiled steps call the compiled step: nothing compiled
  assert off['profile']['steps'] is None
  assert on['profile']['steps'] == trace.steps_for(5, on['step_time_s']['median'])
  assert on['step_time_s']['n'] == off['step_time_s']['n'] == 10
  # The fingerprint is taken before the profiled steps train any further.
  assert on['fingerprint'] == off['fingerprint']
  assert on['xla'] == off['xla']
  assert {row['layer'] for row in on['profile']['layers']} >= {
      'Dense_0', 'Dense_1', 'Dense_2', 'Dense_3'}


def test_profile_needs_timed_steps(tmp_path):
  result = call_cli('--config=configs/base.py', f'--workdir={tmp_path / "w"}',
                    '--config.benchmark=compile', '--config.profile=True')
  assert result.returncode == 2
  assert ("profile=True traces extra timed steps, and benchmark 'compile' has none"
          in result.stderr)
  assert not os.path.exists(tmp_path / 'w')


def _profiled_case(name, layers, idle=0.001):
  """A report case with a profile of `layers` {name: seconds per step} (one conv each)."""
  case = report_lib.new_case(name, {'dtype': 'float32', 'benchmark': 'train_step'})
  rows = [{'layer': layer, 'time_s': t, 'flops': 2e9, 'bytes': 1e8, 'ops': 1}
          for layer, t in layers.items()]
  op_s = sum(layers.values())
  case['profile'].update(
      steps=5, step_s=op_s + idle, op_s=op_s, idle_s=idle, coverage=1.0,
      directory=f'profiles/{name}', layers=rows,
      categories=[{'category': hlo_ops.CONV_FORWARD, 'time_s': op_s, 'flops': 2e9 * len(rows),
                   'bytes': 1e8 * len(rows), 'ops': len(rows)},
                  {'category': hlo_ops.IDLE, 'time_s': idle, 'flops': 0.0, 'bytes': 0.0,
                   'ops': 0}],
      phases={hlo_ops.FORWARD: op_s})
  return case


def test_profile_changes_name_the_layer_that_got_slower():
  base = _profiled_case('c', {'conv1': 0.010, 'conv2': 0.020, 'conv3': 0.005})
  new = copy.deepcopy(base)
  new['profile']['layers'][1]['time_s'] = 0.040
  changes = compare.profile_changes('c', [compare.profile_times(base)],
                                    [compare.profile_times(new)])
  layers = [c for c in changes if c.kind == 'layer']
  assert (layers[0].name, layers[0].base, layers[0].new, layers[0].ratio) == (
      'conv2', 0.020, 0.040, 2.0)
  assert [c.name for c in changes if c.kind == 'category'] == [hlo_ops.CONV_FORWARD, hlo_ops.IDLE]
  # Medians over rounds (bench.ab): one slow round does not move them.
  rounds = [compare.profile_times(base)] * 2 + [compare.profile_times(new)]
  (same,) = [c for c in compare.profile_changes('c', rounds, rounds) if c.name == 'conv2']
  assert same.base == same.new == 0.020


def test_compare_shows_where_the_time_went_when_both_are_profiled():
  def report(case):
    env = {key: None for key in report_lib.ENVIRONMENT_KEYS}
    env.update(versions={}, git_commit=None, hostname='h')
    return report_lib.build('s', None, env, [case], [])
  base = _profiled_case('c', {'conv1': 0.010})
  new = copy.deepcopy(base)
  new['profile']['layers'][0]['time_s'] = 0.015
  text = compare.render(compare.compare(report(base), report(new)), 'text')
  assert 'WHERE THE TIME WENT' in text and 'layer conv1' in text and '1.500' in text
  unprofiled = report_lib.new_case('c', {'dtype': 'float32'})
  assert not compare.compare(report(base), report(unprofiled))['profiles']


def test_dominant_category_named_in_the_verdict():
  case = _profiled_case('seed_cnn', {'conv1': 0.006}, idle=0.004)
  top = analysis.dominant(case)
  assert top['category'] == hlo_ops.CONV_FORWARD and top['share'] == pytest.approx(0.6)
  assert top['bytes_per_s'] == pytest.approx(1e8 / 0.006)
  text = analysis._dominant_text({'dominant': top})  # pylint: disable=protected-access
  assert text == (f'; 60% of its profiled step in {hlo_ops.CONV_FORWARD} at 16.7 GB/s and 333 '
                  'GFLOP/s')
  assert analysis.dominant(report_lib.new_case('x', {})) is None
  assert np.isclose(sum(r['time_s'] for r in case['profile']['categories']),
                    case['profile']['step_s'])


def test_a_loop_body_runs_its_known_trip_count_times():
  """hlo.executions: a while loop's body runs as often as XLA's known trip count, its
  condition once more, everything else once."""
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel

  def f(x):
    return jax.lax.fori_loop(0, 7, lambda i, y: jnp.tanh(y @ y), x)

  ops = hlo_ops.ops(jax.jit(f).lower(jnp.ones((8, 8))).compile().as_text())
  (matmul,) = [op for op in ops.values() if op.category == hlo_ops.DOT]
  assert (matmul.executions, matmul.flops) == (7, 2 * 8**3)
  (loop,) = [op for op in ops.values() if op.opcode == 'while']
  assert loop.executions == 1
  assert sorted({op.executions for op in ops.values()}) == [1, 7, 8]


def test_short_steps_are_profiled_for_a_tenth_of_a_second():
  assert trace.steps_for(5, 0.4e-3) == 250  # ceil(0.1 / 0.0004)
  assert trace.steps_for(5, 0.1) == 5  # the steps asked for are the least
  assert trace.steps_for(5, 1e-6) == trace.MAX_STEPS
  assert trace.steps_for(5, None) == 5  # no timed median: as asked


def test_the_tracers_cost_is_left_out_of_the_coverage():
  op = hlo_ops.Op(name='dot.1', opcode='dot', category=hlo_ops.DOT, layer='Dense_0',
                  phase=hlo_ops.FORWARD, flops=2e6, bytes=1e4)
  # 10 steps: the dot ran 8 ms of them, nothing ran for 2 ms; the tracer added 0.1 ms a step.
  block = trace.summarize({'dot.1': op}, {'dot.1': 8e6}, {'dot.1': 10}, 2e6, 10, [1e-3] * 10,
                          timed_median=0.8e-3, tracer_s=1e-4)
  assert block['step_s'] == pytest.approx(1e-3) and block['tracer_s'] == 1e-4
  assert block['coverage'] == pytest.approx(0.9e-3 / 0.8e-3)
