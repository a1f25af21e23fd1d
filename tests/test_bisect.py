"""`flax-bench history bisect`: the bisection over A/B verdicts (a planted slowdown at
every position of 16 commits, an A/B that cannot decide, ends that are not a
regression), the line of commits it reads from git, and its command line end to end."""

import subprocess

import pytest

from bench.core.errors import UserError
from bench.results import history
from bench.run import bisect
from tests.conftest import REPO, call_cli, run_cli

GOOD = 'g' * 40
COMMITS = [f'{i:02d}' * 20 for i in range(1, 17)]  # 16 commits after the good one


def _judge_with_slowdown_at(first_bad, calls):
  """An A/B that finds a 15% slowdown whenever `new` is at or after `first_bad` and
  `base` before it, as a quiet machine does."""
  order = [GOOD, *COMMITS]

  def judge(base, new):
    calls.append((base, new))
    slower = order.index(base) < order.index(first_bad) <= order.index(new)
    return {'verdict': 'regression' if slower else 'same', 'ratio': 1.15 if slower else 1.0,
            'ci_low': 1.12 if slower else 0.98, 'ci_high': 1.18 if slower else 1.02}
  return judge


@pytest.mark.parametrize('planted', range(16))
def test_the_first_bad_commit_is_found_exactly_in_at_most_5_ab(planted):
  calls, heard = [], []
  found = bisect.bisect(GOOD, COMMITS, _judge_with_slowdown_at(COMMITS[planted], calls),
                        on_step=heard.append)
  assert found['first_bad'] == COMMITS[planted] and found['why'] == ''
  assert found['last_good'] == ([GOOD, *COMMITS][planted])
  assert calls[0] == (GOOD, COMMITS[-1])  # the ends first: is there a regression at all?
  assert len(calls) <= 5 and len(heard) == len(calls) == len(found['steps'])
  # The A/B that found the first bad commit slower is the one its verdict is shown with.
  assert found['deciding']['new'] == COMMITS[planted]
  assert found['deciding']['verdict'] == 'regression'


def test_an_ab_that_cannot_decide_ends_it_with_the_range_left():
  verdicts = iter(['regression', 'regression', 'inconclusive'])

  def judge(base, new):
    return {'verdict': next(verdicts), 'ratio': 1.1, 'ci_low': None, 'ci_high': None}
  found = bisect.bisect(GOOD, COMMITS, judge)
  # The ends, then commit 8 (regression: first bad known), then commit 4 undecided.
  assert [s['new'] for s in found['steps']] == [COMMITS[15], COMMITS[7], COMMITS[3]]
  assert found['first_bad'] is None
  assert (found['last_good'], found['first_bad_known']) == (GOOD, COMMITS[7])
  assert found['deciding'] is found['steps'][1]
  assert found['why'] == (
      f'the A/B of {COMMITS[3][:10]} against {GOOD[:10]} was inconclusive: the first bad '
      f'commit is one of the 8 after {GOOD[:10]} up to {COMMITS[7][:10]}; rerun on a quieter '
      'machine or with more rounds (--max_rounds, --max_minutes)')


def test_ends_that_are_no_regression_are_not_bisected():
  found = bisect.bisect(GOOD, COMMITS, lambda base, new: {
      'verdict': 'same', 'ratio': 1.01, 'ci_low': 0.97, 'ci_high': 1.04})
  assert len(found['steps']) == 1 and found['first_bad'] is None and found['deciding'] is None
  assert found['why'].startswith('the bad end is same against the good end, not a regression')


def _git(repo, *args):
  return subprocess.run(['git', '-C', str(repo), *args], capture_output=True, text=True,
                        check=True).stdout.strip()


def test_the_line_is_the_bad_ends_first_parents_after_the_good_one(tmp_path):
  repo = tmp_path / 'repo'
  repo.mkdir()
  _git(repo, 'init', '-q', '-b', 'main')
  for i in range(4):
    (repo / 'f').write_text(str(i))
    _git(repo, 'add', 'f')
    _git(repo, '-c', 'user.name=t', '-c', 'user.email=t@t', 'commit', '-q', '-m', f'c{i}')
  commits = _git(repo, 'rev-list', '--reverse', 'HEAD').split()
  assert bisect.line(str(repo), commits[0], 'HEAD') == (commits[0], commits[1:])
  assert bisect.subject(str(repo), commits[2]) == 'c2'
  with pytest.raises(UserError, match="--good=nope: git knows no such commit"):
    bisect.line(str(repo), 'nope', 'HEAD')
  with pytest.raises(UserError, match=r'--good=HEAD is not an earlier commit on the '
                     r'first-parent line of --bad=HEAD~2'):
    bisect.line(str(repo), 'HEAD', 'HEAD~2')


def test_flags_and_overrides_are_checked_before_any_ab(tmp_path):
  for args, line in (
      (['--good=HEAD~1', '--bad=HEAD', '--case=mlp_b32', '--config=configs/quickstart.py',
        f'--workdir={tmp_path / "b"}', '--config.batch_sise=3'],
       "error: unknown config field 'batch_sise' in --config.batch_sise=3; did you mean "
       "'batch_size'?"),
      (['--good=HEAD~1', '--bad=HEAD', '--case=mlp_b32', '--config=configs/quickstart.py',
        f'--workdir={tmp_path / "b"}', '--max_rounds=2'],
       'error: --max_rounds=2 is below --rounds=8; see python -m bench.history --help')):
    result = call_cli(f'--history={tmp_path / "h.db"}', 'bisect', *args, module='bench.history')
    assert (result.returncode, result.stderr.strip()) == (2, line)
    assert not (tmp_path / 'b').exists()
  result = call_cli(f'--history={tmp_path / "h.db"}', 'list', '--config.seed=1',
                    module='bench.history')
  assert result.returncode == 2 and 'config overrides are for bisect' in result.stderr


def test_bisect_end_to_end_records_its_ab(tmp_path):
  """HEAD~1 against HEAD in two rounds of a tiny case: the A/B cannot decide, so no
  first bad commit (exit 1), said; the A/B is in the history."""
  db = tmp_path / 'h.db'
  result = run_cli(f'--history={db}', 'bisect', '--good=HEAD~1', '--bad=HEAD', '--case=mlp_b32',
                   '--config=configs/quickstart.py', f'--workdir={tmp_path / "b"}',
                   '--rounds=2', '--max_rounds=2', '--seed=3', '--config.warmup_steps=2',
                   '--config.timed_steps=5', module='bench.history')
  assert result.returncode == 1, result.stderr[-3000:]
  head = _git(REPO, 'rev-parse', 'HEAD')
  lines = result.stdout.splitlines()
  assert lines[0].startswith('Bisecting mlp_b32: 1 commit after ')
  assert lines[1].startswith(f'- {head[:10]} against ') and ': inconclusive ' in lines[1]
  assert lines[2] == ('No first bad commit: the bad end is inconclusive against the good end, '
                      'not a regression: nothing to bisect (a slowdown under the threshold, '
                      'or none)')
  (run,) = history.runs(history.connect(str(db)))
  assert (run['kind'], run['commit_sha'], run['cases']) == ('ab', head, ['mlp_b32'])
