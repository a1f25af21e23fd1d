"""The changes `flax-bench history` finds along the commits (bench/results/change_points.py),
on histories whose figures follow a known law: every point a verdict, a planted step
found at its commit, series kept apart by program and machine, the power at any
length, what it says when it cannot judge; `show`'s trend.png."""

import math
import struct

import numpy as np
import pytest

from bench.core import machine
from bench.results import ab_stats
from bench.results import change_points
from bench.results import history
from bench.results import history_schema
from tests.conftest import call_cli
from tests.test_history import _MACHINE, _commit, _history, _report


def test_changes_judge_every_point_and_find_the_planted_commit(tmp_path):
  conn = _history(tmp_path)
  found = change_points.changes(conn, lineage=[_commit(i) for i in range(8)])
  (change,) = found['timing']
  assert (change['case'], change['commit'], change['previous'], change['verdict']) == (
      'mlp', _commit(4), _commit(3), 'regression')
  assert change['low'] < 1.3 < change['high'] and change['ratio'] == pytest.approx(1.3, rel=0.05)
  # A level boundary is judged by its levels: commits 0-3 before, 4-5 after (the
  # program changes at 6).
  assert (change['before'], change['after']) == (12, 6)
  # The parameters that changed at commit 6 are listed exactly, per case.
  assert sorted((c['case'], c['commit'], c['figure'], c['before'], c['after'])
                for c in found['deterministic']) == [('cnn', _commit(6), 'params', 400, 500),
                                                      ('mlp', _commit(6), 'params', 400, 500)]
  # Every point has its verdict, and an undecided one says why: the program changed
  # at 6 (a new series from there); 3 runs against 3 cannot bound a ratio at 95% (the
  # smallest two-sided p of 3 against 3 is 2/20); the rest is the same within 5%.
  verdicts = {(p['case'], p['commit']): (p['verdict'], p['before'], p['after'])
              for p in found['points']}
  same = {(case, _commit(i)) for case in ('cnn', 'mlp') for i in (1, 2, 3)} | {
      ('cnn', _commit(4)), ('cnn', _commit(5))}
  assert {k for k, v in verdicts.items() if v[0] == 'same'} == same
  assert verdicts[('mlp', _commit(5))] == verdicts[('mlp', _commit(7))] == ('undecided', 3, 3)
  assert found['counts'] == {'regression': 1, 'faster': 0, 'same': 8, 'undecided': 5}
  reasons = {(u['case'], u['commit']): u['reason'] for u in found['undecided']}
  assert reasons[('cnn', _commit(6))] == (
      'the program changed (params 400 -> 500): timed as a new series from here')
  # Its window stops at the program's change: a wider one would not help.
  assert reasons[('cnn', _commit(7))] == (
      '3 runs before and 3 after cannot bound the ratio at 95.00% confidence: record more '
      'runs per commit')


def test_a_new_program_is_a_new_series_not_a_regression(tmp_path):
  """Issue 37's image size raised on later commits: four times the FLOPs and four times
  the step time at commit 4, listed as deterministic, never judged as timing."""
  conn = history.connect(str(tmp_path / 'h.db'))
  for i in range(8):
    for r in range(3):
      report = _report(_commit(i), {'mlp': 0.010 * (4 if i >= 4 else 1) * (1 + 0.01 * r)},
                       seed=r)
      report['cases'][0]['xla']['flops'] = 4e6 if i >= 4 else 1e6
      history.record_report(conn, report)
  found = change_points.changes(conn, lineage=[_commit(i) for i in range(8)])
  assert found['timing'] == []
  assert [(c['commit'], c['figure'], c['before'], c['after']) for c in found['deterministic']] \
      == [(_commit(4), 'flops', 1e6, 4e6)]
  point = found['points'][3]
  assert (point['commit'], point['verdict'], point['reason']) == (
      _commit(4), 'undecided',
      'the program changed (flops 1000000.0 -> 4000000.0): timed as a new series from here')


def test_power_does_not_fall_with_the_length_of_the_history():
  """A 10% step at 4% run noise in 600 commits (3 runs each), judged as `changes` does:
  found at its exact commit with no false call among the other 598 points; the window
  Bonferroni over every point missed it at 1,200 (issue 37). benchmarks/
  history_power.py measures the rates."""
  rng = np.random.default_rng(7)
  identity = {**{column: 'synthetic' for column in history_schema.MACHINE_COLUMNS.values()},
              'matmul_flops_per_s': 4e11, 'copy_bytes_per_s': 5e10}
  line = [(_commit(i % 100) + str(i), [
      {**identity, 'median_s': 0.01 * (1.1 if i >= 377 else 1) * math.exp(rng.normal(0, 0.04))}
      for _ in range(3)]) for i in range(600)]
  points = change_points.judge_series(line)
  assert len(points) == 599
  moved = [(k, p['verdict']) for k, p in enumerate(points, start=1)
           if p['verdict'] in ('regression', 'faster')]
  assert moved == [(377, 'regression')]
  assert points[376]['low'] > 1.05


def test_changes_read_one_line_of_commits(tmp_path):
  """The slow commits on a side branch: main's line, without them, has no change."""
  conn = _history(tmp_path)
  main_line = [_commit(i) for i in range(4)] + [_commit(6), _commit(7)]
  found = change_points.changes(conn, case='cnn', lineage=main_line)
  assert found['timing'] == []
  # Without a lineage, commit time orders the commits.
  assert change_points.changes(conn, case='mlp')['timing'][0]['commit'] == _commit(4)


def test_machines_apart_and_a_moved_machine_undecided(tmp_path):
  conn = history.connect(str(tmp_path / 'h.db'))
  for i in range(4):
    for r in range(2):
      history.record_report(conn, _report(_commit(i), {'mlp': 0.010}, seed=r))
      # A second, slower machine ran the same commits: never compared with the first.
      history.record_report(conn, _report(_commit(i), {'mlp': 0.020}, seed=r,
                                          machine={'cpu_model': 'other'}))
  assert change_points.changes(conn)['timing'] == []
  assert len(change_points.series(history.case_runs(conn, case='mlp'))) == 2
  # The first machine's matmul peak halves from commit 4 on, and its step time doubles.
  for r in range(2):
    history.record_report(conn, _report(_commit(4), {'mlp': 0.020}, peak=2e11, seed=r))
  found = change_points.changes(conn, lineage=[_commit(i) for i in range(5)])
  assert found['timing'] == []
  moved = [u for u in found['undecided'] if u['reason'].startswith('the machine changed')]
  assert [(u['commit'], u['reason']) for u in moved] == [
      (_commit(4), 'the machine changed: matmul peak 0.50x')]


def test_a_point_with_too_few_runs_is_undecided(tmp_path):
  conn = history.connect(str(tmp_path / 'h.db'))
  history.record_report(conn, _report(_commit(0), {'mlp': 0.01}))
  history.record_report(conn, _report(_commit(1), {'mlp': 0.02}))
  (undecided,) = change_points.changes(conn)['undecided']
  assert undecided['reason'] == 'too few runs (1 before, 1 after; 2 needed on each side)'


def test_rank_sum_interval_exact():
  # 6 against 6: the exact two-sided 1% bound leaves the 2 most extreme of the 36
  # differences out on each side (P(U <= 2) = 7/924 / 2 ... as tabulated: U <= 2 at 0.01).
  estimate, low, high = ab_stats.rank_sum_interval(range(1, 7), range(11, 17), 0.99)
  assert (estimate, low, high) == (10.0, 6.0, 14.0)
  assert ab_stats.rank_sum_interval([1, 2, 3], [11, 12, 13], 0.95)[1:] == (-math.inf, math.inf)


def test_nothing_moved_only_when_every_point_is_the_same(tmp_path):
  """Issue 37's 8% plant, two runs a commit at 3% noise: the interval crosses the
  threshold, and `changes` says so instead of "nothing moved"; a history of one commit
  has nothing to judge, and says that."""
  db = tmp_path / 'h.db'
  conn = history.connect(str(db))
  rng = np.random.default_rng(3)
  for i in range(4):
    for r in range(2):
      history.record_report(conn, _report(
          _commit(i), {'mlp': 0.010 * (1.08 if i >= 2 else 1) * (1 + rng.uniform(-0.03, 0.03))},
          seed=r), commit_time=1_000_000 + 100 * i)
  conn.close()
  undecided = call_cli(f'--history={db}', 'changes', '--by_time', '--fail-on=undecided',
                       module='bench.history')
  assert undecided.returncode == 1
  assert '3 points in 1 series: 0 regression, 0 faster, 0 same, 3 undecided.' in undecided.stdout
  assert 'No step time moved' not in undecided.stdout
  assert 'crosses the 5% threshold: record more runs, or bisect it' in undecided.stdout
  single = tmp_path / 'one.db'
  conn = history.connect(str(single))
  history.record_report(conn, _report(_commit(0), {'mlp': 0.01}))
  conn.close()
  one = call_cli(f'--history={single}', 'changes', '--by_time', module='bench.history')
  assert one.returncode == 0, one.stderr
  assert 'Nothing to judge: no series has two commits on this line.' in one.stdout


def test_two_hosts_of_one_model_are_two_series(tmp_path):
  """Issue 37's two hosts: one CPU model and hardware, the second host 30% slower with
  peaks 0.85x (inside the guard), the runs switching host at commit 4. Apart by
  their machine ids, neither series moved."""
  conn = history.connect(str(tmp_path / 'h.db'))
  other = {'machine_id': '7cf3931855be5eefc4ecaf7386586eb6'}
  for i in range(8):
    for r in range(3):
      slow = i >= 4
      history.record_report(conn, _report(_commit(i), {'mlp': 0.013 if slow else 0.010},
                                          machine=other if slow else None,
                                          peak=4e11 * (0.85 if slow else 1), seed=r))
  assert len(change_points.series(history.case_runs(conn, case='mlp'))) == 2
  found = change_points.changes(conn, lineage=[_commit(i) for i in range(8)])
  assert found['timing'] == [] and found['deterministic'] == []
  assert {(r['host_id'], r['cpu_model'], r['memory_bytes'], r['jax']) for r in
          history.case_runs(conn)} == {(_MACHINE['machine_id'], 'test cpu', 16 << 30, '0.10.2'),
                                       (other['machine_id'], 'test cpu', 16 << 30, '0.10.2')}


def test_runs_without_a_machine_id_are_undecided(tmp_path):
  """Reports written before the machine id: recorded, their points never judged."""
  conn = history.connect(str(tmp_path / 'h.db'))
  for i in range(4):
    for r in range(3):
      report = _report(_commit(i), {'mlp': 0.010 * (2 if i >= 2 else 1)}, seed=r)
      del report['environment']['machine_id'], report['environment']['memory_bytes']
      assert history.record_report(conn, report)
  found = change_points.changes(conn, lineage=[_commit(i) for i in range(4)])
  assert found['timing'] == []
  assert [(u['commit'], u['reason']) for u in found['undecided']] == [
      (_commit(i), machine.UNKNOWN) for i in (1, 2, 3)]


def test_trend_png_is_bounded_at_any_length(tmp_path):
  """1,200 commits drew 72,300 pixels wide (issue 37); now at most TREND_MAX_WIDTH
  inches, every commit a point, at most TREND_TICKS labels."""
  from bench.results import plots  # pylint: disable=import-outside-toplevel  (matplotlib)
  points = [{'index': i, 'commit': f'{i:07d}' + 'a' * 33, 'median_s': 0.01, 'low_s': 0.009,
             'high_s': 0.011, 'runs': 3, 'ab': [('b' * 40, None, 1.02)] if i == 600 else []}
            for i in range(1200)]
  path = plots.trend(str(tmp_path), 'mlp', [{'machine': 'm', 'points': points}],
                     'commit time order')
  with open(path, 'rb') as f:
    width, height = struct.unpack('>II', f.read(24)[16:24])
  assert (width, height) == (plots.TREND_MAX_WIDTH * 100, 450)


def test_a_change_between_commits_never_run_is_coarse():
  """Issue 37's bisect case: a slowdown among commits of which only some were run.
  The change is found between the recorded commits around it, and says how many
  commits of the line lie between them, unrun: bisect's job."""
  rng = np.random.default_rng(5)
  ran = [0, 1, 2, 3, 8, 9, 10, 11]  # commits 4-7 were never run
  conn = history.connect(':memory:')
  for i in ran:
    for r in range(3):
      history.record_report(conn, _report(
          _commit(i), {'mlp': 0.01 * (1.3 if i >= 6 else 1) * (1 + rng.uniform(-0.02, 0.02))},
          seed=r))
  found = change_points.changes(conn, lineage=[_commit(i) for i in range(12)])
  (change,) = found['timing']
  assert (change['previous'], change['commit'], change['unrun'], change['verdict']) == (
      _commit(3), _commit(8), 4, 'regression')
  assert all(p['unrun'] == 0 for p in found['points'] if p is not change)
  assert change_points.changes(conn)['timing'][0]['unrun'] is None  # no line: unknown


def test_changes_says_why_it_has_nothing_to_judge(tmp_path):
  """No run at all, only runs with uncommitted changes, or none on the line: each said."""
  db = tmp_path / 'h.db'
  history.connect(str(db)).close()
  said = lambda *flags: call_cli(f'--history={db}', 'changes', *flags,  # noqa: E731
                                 module='bench.history')
  empty = said('--by_time', '--case=mlp')
  assert (empty.returncode, empty.stderr.strip()) == (2, (
      "error: no run of 'mlp' is recorded; changes judges the runs a finished bench.main run "
      'records'))
  conn = history.connect(str(db))
  history.record_ab(conn, {
      'new': {'commit': _commit(1)}, 'base': {'commit': _commit(0)}, 'machine': _MACHINE,
      'config': 'configs/study.py', 'status': 'complete',
      'cases': [{'name': 'mlp', 'ratio': 1.01, 'ci_low': 0.97, 'ci_high': 1.04,
                 'verdict': 'same', 'base_median_s': 0.01, 'new_median_s': 0.0101}]})
  assert said('--by_time', '--case=mlp').stderr.strip() == (
      "error: no run of 'mlp' is recorded (only A/Bs: 1, which `flax-bench history list` shows); "
      'changes judges the runs a finished bench.main run records')
  dirty = _report(_commit(1), {'mlp': 0.01})
  dirty['environment']['git_dirty'] = True
  history.record_report(conn, dirty)
  conn.close()
  assert said('--by_time').stderr.strip() == (
      'error: none of the 1 recorded runs is a finished run of a commit without uncommitted '
      "changes (such runs are not their commit's figure)")
  conn = history.connect(str(db))
  history.record_report(conn, _report(_commit(2), {'mlp': 0.01}))
  conn.close()
  off_line = said('--case=mlp')  # commit 0202... is on no line of this repository
  assert off_line.stderr.strip() == (
      "error: none of the recorded runs of 'mlp' is of a commit on HEAD's first-parent line; "
      'name another with --rev, or --by_time')
