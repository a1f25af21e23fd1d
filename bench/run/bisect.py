"""The first commit at which a case got slower, found by interleaved A/Bs between the
midpoints of a range (`flax-bench history bisect`; asv's `find`, made trustworthy).

A history says where a case moved only as well as its runs let it: on a noisy
machine a step can stay undecided, or sit somewhere in a stretch of commits that
were never run. An A/B settles one pair of commits (bench/run/ab.py: each side in
its own worktree and fresh processes, interleaved in rounds, an interval that says
when it cannot decide), so the bisection asks it, and only it:

1. BAD against GOOD first: a regression must be there to bisect (anything else ends
   it, said).
2. Then, while more than one commit of BAD's first-parent line lies after the last
   commit known good and up to the first known bad, the middle one against the last
   good: `regression` makes it the first known bad; `same` or `faster` the last known
   good; `inconclusive` ends the bisection where it stands: the first bad commit is
   then somewhere after the last good, up to the first bad, and the result says so.

Every A/B is the caller's (`judge`), which records each in the history. 16 commits
take at most 5 A/Bs: the ends, then 4 halvings.
"""

from bench.core.errors import UserError
from bench.run.git import git, resolve
from bench.run.history import lineage

# A/B verdicts that clear the middle commit: it is not slower than the last good one.
NOT_SLOWER = ('same', 'faster')


def line(repo, good, bad):
  """(good's full commit, [the commits after it on bad's first-parent line, up to bad]),
  oldest first; a UserError for an unknown revision or a good commit that is not on
  that line before bad."""
  good_commit = resolve(repo, good, '--good')
  first_parents = lineage(repo, bad, '--bad')
  if good_commit not in first_parents[:-1]:
    raise UserError(f'--good={good} is not an earlier commit on the first-parent line of '
                    f'--bad={bad}; give a good commit that --bad descends from along its '
                    'first parents')
  return good_commit, first_parents[first_parents.index(good_commit) + 1:]


def subject(repo, commit):
  """The first line of `commit`'s message."""
  found = git(repo, 'show', '-s', '--format=%s', commit)
  return found.stdout.strip() if found.returncode == 0 else ''


def bisect(good, commits, judge, on_step=lambda step: None):
  """Bisects `commits` (after `good`, oldest first, the last one bad) by `judge(base,
  new)` -> {verdict, ratio, ci_low, ci_high} of the case (an A/B's). Returns {'first_bad':
  the commit or None, 'last_good', 'first_bad_known': the range it could narrow to,
  'steps': [{base, new, verdict, ratio, ci_low, ci_high}], 'deciding': the step that
  found first_bad_known slower, 'why': '' or why it stopped short}. `on_step(step)`
  hears each A/B as it ends."""
  steps = []

  def ask(base, new):
    step = {'base': base, 'new': new, **judge(base, new)}
    steps.append(step)
    on_step(step)
    return step

  last_good, first_bad = -1, len(commits) - 1  # indices into commits; -1 is `good`
  at = lambda i: good if i < 0 else commits[i]
  deciding = ask(good, commits[-1])
  verdict = deciding['verdict']
  if verdict != 'regression':
    return {'first_bad': None, 'last_good': good, 'first_bad_known': commits[-1],
            'steps': steps, 'deciding': deciding, 'why': f'the bad end is {verdict} against the good end, not a '
            'regression: nothing to bisect (a slowdown under the threshold, or none)'}
  while first_bad - last_good > 1:
    middle = (last_good + first_bad) // 2
    step = ask(at(last_good), commits[middle])
    verdict = step['verdict']
    if verdict == 'regression':
      first_bad, deciding = middle, step
    elif verdict in NOT_SLOWER:
      last_good = middle
    else:
      return {'first_bad': None, 'last_good': at(last_good),
              'first_bad_known': commits[first_bad], 'steps': steps,
              'deciding': deciding, 'why': (
                  f'the A/B of {commits[middle][:10]} against {at(last_good)[:10]} was '
                  f'{verdict}: the first bad commit is one of the {first_bad - last_good} after '
                  f'{at(last_good)[:10]} up to {commits[first_bad][:10]}; rerun on a quieter '
                  'machine or with more rounds (--max_rounds, --max_minutes)')}
  return {'first_bad': commits[first_bad], 'last_good': at(last_good),
          'first_bad_known': commits[first_bad], 'steps': steps, 'deciding': deciding,
          'why': ''}
