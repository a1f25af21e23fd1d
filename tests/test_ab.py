"""bench.ab: the statistics pinned on synthetic rounds, and the real CLI end to end."""

import copy
import json
import math
import os
import subprocess
import types

import numpy as np
import pytest

from bench.results import ab_result
from bench.results import ab_stats
from bench.results import schema as report_lib
from bench.run import ab as run_ab
from tests import test_report
from tests.conftest import REPO, call_cli, run_cli


def test_signed_rank_interval_is_exact():
  # n = 8: P(T+ <= 3) = 5/256 <= 0.025 < P(T+ <= 4) = 7/256, so the interval leaves out
  # four Walsh averages on each side: of 1..8 they start 1, 1.5, 2, 2 and end 7, 7, 7.5, 8.
  assert ab_stats.signed_rank_interval(np.arange(1, 9), 0.95) == (4.5, 2.0, 7.0)
  # n = 6: the most extreme statistic alone has 1/64 <= 0.025: the interval is min-max.
  assert ab_stats.signed_rank_interval([3, -1, 4, 1, -5, 9], 0.95)[1:] == (-5, 9)
  # n = 5: 1/32 > 0.025, no bound at 95% (at 90% the extremes).
  assert ab_stats.signed_rank_interval([1, 2, 3, 4, 5], 0.95) == (3.0, -math.inf, math.inf)
  assert ab_stats.signed_rank_interval([1, 2, 3, 4, 5], 0.90) == (3.0, 1.0, 5.0)


def test_interval_covers_at_its_confidence():
  rng = np.random.default_rng(0)
  covered = [low <= 0 <= high for low, high in (
      ab_stats.signed_rank_interval(rng.standard_t(3, 12), 0.95)[1:] for _ in range(2000))]
  # Exact for any symmetric distribution: 95.2% at n = 12; 2000 draws give +-1%.
  assert 0.94 < np.mean(covered) < 0.965


@pytest.mark.parametrize('low, high, expected', [
    (1.15, 1.3, 'regression'), (0.7, 0.85, 'faster'), (0.95, 1.05, 'same'),
    (1.05, 1.15, None), (0.85, 0.95, None), (0.5, 2.0, None), (0.92, 1.09, 'same')])
def test_verdict_against_the_threshold(low, high, expected):
  assert ab_stats.verdict(math.log(low), math.log(high), 0.1) == expected


def _simulate(rng, new_over_base, machine, **flags):
  """The verdict bench.ab reaches on synthetic rounds, with its looks and stopping
  rule: each process's median step time is 10 ms x new_over_base (new side) x
  machine(round, rng) (what the machine does to that process). Returns (verdict,
  rounds run)."""
  args = types.SimpleNamespace(**{**_DEFAULTS, **flags})
  confidence = ab_stats.look_confidence(args)
  base, new = [], []
  for n in range(1, args.max_rounds + 1):
    base.append(0.01 * machine(n, rng))
    new.append(0.01 * new_over_base * machine(n, rng))
    undecided = None
    if n in ab_stats.looks(args):
      judged = ab_stats.judge(base, new, args.threshold, confidence, final=False)
      undecided = [] if judged['verdict'] else ['case']
    if ab_stats.stop_reason(n, undecided, elapsed_s=0, args=args):
      return ab_stats.judge(base, new, args.threshold, confidence, final=True)['verdict'], n
  raise AssertionError('the stopping rule never stopped')


_DEFAULTS = dict(rounds=8, look_every=4, max_rounds=20, max_minutes=math.inf, threshold=0.1,
                 confidence=0.95)


def test_orders_come_in_balanced_pairs_drawn_from_the_seed():
  drawn = ab_stats.orders(7, 9)
  assert drawn == ab_stats.orders(7, 9) and drawn[:4] == ab_stats.orders(7, 4)
  for first, second in zip(drawn[::2], drawn[1::2]):
    assert sorted(first) == ['base', 'new'] and second == first[::-1]
  # Each pair's order is drawn: both occur over seeds, about equally.
  firsts = [ab_stats.orders(seed, 2)[0][0] for seed in range(1000)]
  assert 450 < firsts.count('base') < 550


def test_looks_share_the_confidence():
  args = types.SimpleNamespace(**_DEFAULTS)
  assert ab_stats.looks(args) == [8, 12, 16, 20]
  assert ab_stats.look_confidence(args) == pytest.approx(0.9875)
  args.max_rounds = 22
  assert ab_stats.looks(args) == [8, 12, 16, 20, 22]


def _quiet(sigma):
  return lambda n, rng: rng.lognormal(0, sigma)


def _bursts(n, rng):
  """A shared machine: 5% noise, and one process in five hit by a neighbour (1.5-3x)."""
  return rng.lognormal(0, 0.05) * (rng.uniform(1.5, 3) if rng.random() < 0.2 else 1)


def test_a_known_shift_is_found():
  rng = np.random.default_rng(1)
  # 5% noise per process: found in 199 of 200 runs, in 12 rounds on average.
  quiet = [_simulate(rng, 1.2, _quiet(0.05)) for _ in range(200)]
  assert {v for v, _ in quiet} <= {'regression', 'inconclusive'}
  assert sum(v == 'regression' for v, _ in quiet) >= 198 and np.mean([n for _, n in quiet]) < 12
  assert {v for v, _ in (_simulate(rng, 1 / 1.3, _quiet(0.05)) for _ in range(200))} == {
      'faster'}
  # Under bursts of load (one process in five 1.5-3x slower) a 1.3x is found in 83 of
  # 200 runs within 20 rounds; the rest are inconclusive, none is called the other way.
  bursty = [_simulate(rng, 1.3, _bursts) for _ in range(200)]
  assert {v for v, _ in bursty} == {'regression', 'inconclusive'}
  assert sum(v == 'regression' for v, _ in bursty) >= 70


def test_a_to_a_is_never_a_regression_or_faster():
  rng = np.random.default_rng(2)
  for machine in (_quiet(0.05), _quiet(0.15), _bursts):
    verdicts = [_simulate(rng, 1.0, machine)[0] for _ in range(500)]
    assert {'regression', 'faster'}.isdisjoint(verdicts)
  # On a quiet machine, A/A ends "same" at the first look.
  assert all(_simulate(rng, 1.0, _quiet(0.02)) == ('same', 8) for _ in range(50))


def test_a_machine_that_drifts_between_processes_is_inconclusive():
  # Each process runs up to 2x slower than another at random: the rounds cannot tell
  # 10% apart within 20 rounds, and say so.
  rng = np.random.default_rng(3)
  drifting = lambda n, rng: math.exp(rng.uniform(0, math.log(2)))  # noqa: E731
  results = [_simulate(rng, 1.0, drifting) for _ in range(300)]
  assert {v for v, _ in results} == {'inconclusive'}
  assert all(n == 20 for _, n in results)


def test_a_machine_slowing_steadily_is_paired_away():
  # 2x slower by the end of the run, both sides alike within a round: rounds are
  # paired, so this is no regression.
  rng = np.random.default_rng(4)
  slowing = lambda n, rng: (1 + n / 8) * rng.lognormal(0, 0.02)  # noqa: E731
  assert _simulate(rng, 1.0, slowing) == ('same', 8)


def test_stop_reason():
  args = types.SimpleNamespace(**{**_DEFAULTS, 'max_minutes': 2.0})
  assert ab_stats.stop_reason(7, None, 0, args) is None
  assert ab_stats.stop_reason(8, [], 0, args) == 'every case decided'
  assert ab_stats.stop_reason(8, ['x'], 0, args) is None
  assert ab_stats.stop_reason(20, ['x'], 0, args) == '--max_rounds=20'
  # 100 s for 5 rounds: a sixth would end at 120 s, within 2 minutes; 101 s: past them.
  assert ab_stats.stop_reason(5, None, 100, args) is None
  assert ab_stats.stop_reason(5, None, 101, args).startswith('--max_minutes=2')


def test_reports_of_another_schema_are_timed_but_not_diffed():
  # A commit that changes the report schema: CI's A/B of it against its parent still
  # times both sides; the deterministic figures are left to the stored baseline.
  base = copy.deepcopy(test_report._report())
  new = copy.deepcopy(base)
  base['schema_version'] = min(report_lib.READS) - 1  # one this version cannot read
  new['cases'][0]['name'] = 'renamed'
  args = types.SimpleNamespace(**_DEFAULTS, base='HEAD^', new='HEAD')
  state = ab_result.AB(args, {'base': 'a' * 40, 'new': 'b' * 40}, 'configs/x.py', [], seed=1)
  state.first = {'base': base, 'new': new}
  result = state.result(final=False)
  assert result['changes'] == [] and result['environment'] == []
  assert result['deterministic_note'] == (
      f'not compared: the base revision writes report schema {min(report_lib.READS) - 1}, '
      f'the new one schema {new["schema_version"]}')
  assert (result['missing'], result['new_cases']) == (['mlp'], ['renamed'])
  assert f'{result["deterministic_note"]}.' in ab_result.markdown(result)


def test_profiled_cases_show_where_the_time_went_over_the_rounds(monkeypatch):
  from tests.test_profile import _profiled_case  # pylint: disable=import-outside-toplevel
  layers = {'base': {'conv1': 0.010, 'conv2': 0.020}, 'new': {'conv1': 0.010, 'conv2': 0.030}}

  def run_side(side, round_index, *unused):
    case = _profiled_case('cnn', layers[side])
    case.update(status='ok')
    case['step_time_s']['median'] = case['profile']['step_s']
    report = test_report._report()
    return {**report, 'cases': [case]}, 1.0

  monkeypatch.setattr(run_ab, 'run_side', run_side)
  args = types.SimpleNamespace(**_DEFAULTS, base='HEAD^', new='HEAD')
  state = ab_result.AB(args, {'base': 'a' * 40, 'new': 'b' * 40}, 'configs/x.py', [], seed=1)
  for _ in range(3):
    run_ab.run_round(state, {'base': None, 'new': None}, None)
  result = state.result(final=True)
  conv2 = next(p for p in result['profiles'] if p['name'] == 'conv2')
  assert (conv2['kind'], conv2['base'], conv2['new']) == ('layer', 0.020, 0.030)
  assert conv2['ratio'] == pytest.approx(1.5)
  assert result['profiles'][-2]['name'] == 'conv2'  # the layer that moved most comes first
  md = ab_result.markdown(result)
  assert '### Where the time went' in md and '| cnn | layer conv2 | 20.0 | 30.0 | 1.500 |' in md


# ------------------------------------------------------------------- the command line

_TINY = ['--config=configs/quickstart.py', '--config.select=mlp_b32', '--config.warmup_steps=2',
         '--config.timed_steps=5']


def _worktrees():
  return subprocess.run(['git', '-C', REPO, 'worktree', 'list'], capture_output=True,
                        text=True, check=True).stdout


def test_ab_of_head_against_itself_end_to_end(tmp_path):
  workdir = tmp_path / 'ab'
  result = run_cli('--base=HEAD', '--new=HEAD', f'--workdir={workdir}', '--rounds=2',
                   '--max_rounds=2', '--seed=7', *_TINY, module='bench.ab')
  assert result.returncode == 0, result.stderr[-3000:]
  out = json.loads((workdir / 'ab.json').read_text())
  head = subprocess.run(['git', '-C', REPO, 'rev-parse', 'HEAD'], capture_output=True,
                        text=True, check=True).stdout.strip()
  assert out['status'] == 'complete' and out['seed'] == 7
  assert out['base']['commit'] == out['new']['commit'] == head
  assert out['stopped'] == '--max_rounds=2' and len(out['rounds']) == 2
  # The order of each round comes from the seed.
  assert [r['order'] for r in out['rounds']] == ab_stats.orders(7, 2)
  (case,) = out['cases']
  assert case['name'] == 'mlp_b32' and len(case['round_ratios']) == 2
  # Two rounds bound nothing at 95%: inconclusive, never a guess.
  assert case['verdict'] == 'inconclusive' and case['ci_low'] is None
  assert out['changes'] == [] and out['missing'] == []
  assert sorted(os.listdir(workdir / 'runs')) == ['001-base.json', '001-new.json',
                                                  '002-base.json', '002-new.json']
  # Each side ran its worktree's code: the report names the revision it ran.
  run = json.loads((workdir / 'runs' / '001-new.json').read_text())
  assert run['environment']['git_commit'] == head
  assert run['environment']['command'].startswith(f'{workdir}/worktrees/new/bench/main.py ')
  assert (workdir / 'ab.png').stat().st_size > 0
  assert 'Timing A/B: 0 regression, 1 inconclusive' in (workdir / 'ab.md').read_text()
  assert str(workdir) not in _worktrees()  # removed at the end


@pytest.mark.parametrize('args, message', [
    (['--base=no-such-rev'], '--base=no-such-rev: git knows no such commit'),
    (['--base=HEAD', '--config=configs/no_such.py'], 'configs/no_such.py does not exist at HEAD'),
    (['--base=HEAD', '--max_rounds=3'], '--max_rounds=3 is below --rounds=8'),
    (['--base=HEAD', '--threshold=ten'], "'ten' is not a fraction"),
    (['--base=HEAD', '--frobnicate'], 'unrecognized arguments: --frobnicate'),
    (['--base=HEAD', '--config=quickstart', '--config.model=resnet5'],  # a name, as bench.main
     '--config.model=resnet5 reaches no case: '),
])
def test_user_errors_write_nothing(tmp_path, args, message):
  workdir = tmp_path / 'ab'
  config = [] if any(a.startswith('--config=') for a in args) else ['--config=configs/quickstart.py']
  result = call_cli(*args, *config, f'--workdir={workdir}', module='bench.ab')
  assert result.returncode == 2
  assert result.stderr.count('\n') == 1 and message in result.stderr, result.stderr
  assert not workdir.exists()


def test_a_config_problem_is_one_line_before_any_round_and_leaves_nothing(tmp_path):
  workdir = tmp_path / 'ab'
  result = call_cli('--base=HEAD', f'--workdir={workdir}', *_TINY, '--config.batch_sise=3',
                    module='bench.ab')
  assert (result.returncode, result.stderr) == (
      2, "error: unknown config field 'batch_sise' in --config.batch_sise=3; did you mean "
      "'batch_size'?\n")
  assert not workdir.exists() and str(workdir) not in _worktrees()


def test_a_worktree_with_changes_is_not_overwritten(tmp_path):
  workdir = tmp_path / 'ab'
  path = workdir / 'worktrees' / 'base'
  subprocess.run(['git', '-C', REPO, 'worktree', 'add', '--detach', str(path), 'HEAD'],
                 capture_output=True, check=True)
  try:
    (path / 'README.md').write_text('my edits\n')
    result = call_cli('--base=HEAD', f'--workdir={workdir}', *_TINY, module='bench.ab')
    assert result.returncode == 2
    assert f'{path} is a worktree with uncommitted changes' in result.stderr
    assert (path / 'README.md').read_text() == 'my edits\n'
  finally:
    subprocess.run(['git', '-C', REPO, 'worktree', 'remove', '--force', str(path)], check=True)
  (workdir / 'worktrees' / 'base').mkdir(parents=True)
  result = call_cli('--base=HEAD', f'--workdir={workdir}', *_TINY, module='bench.ab')
  assert result.returncode == 2 and 'is not a worktree of' in result.stderr
