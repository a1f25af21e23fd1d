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

`bisect` asks a `judge`; `by_ab`'s runs each A/B and records it in the history.
16 commits take at most 5 A/Bs: the ends, then 4 halvings.
"""

import argparse
import itertools
import os
import sys
import time

from bench.core.errors import UserError
from bench.run import history
from bench.run.git import git, repository, resolve

# bench.run.ab is imported where an A/B is run, not at the top: with jax it takes 0.6 s,
# which `flax-bench history`'s other subcommands (this module's importers) need not pay.

# A/B verdicts that clear the middle commit: it is not slower than the last good one.
NOT_SLOWER = ('same', 'faster')


def line(repo, good, bad):
  """(good's full commit, [the commits after it on bad's first-parent line, up to bad]),
  oldest first; a UserError for an unknown revision or a good commit that is not on
  that line before bad."""
  good_commit = resolve(repo, good, '--good')
  first_parents = history.lineage(repo, bad, '--bad')
  if good_commit not in first_parents[:-1]:
    raise UserError(f'--good={good} is not an earlier commit on the first-parent line of '
                    f'--bad={bad}; give a good commit that --bad descends from along its '
                    'first parents')
  return good_commit, first_parents[first_parents.index(good_commit) + 1:]


def prepare(args, overrides):
  """(repo, good's full commit, the commits to bisect: `line`) of `history bisect`'s
  flags, every problem a UserError before any A/B: no checkout, a revision, the
  config or an override (ab.check_config), the history."""
  from bench.run import ab  # pylint: disable=import-outside-toplevel  (see the imports)
  repo = repository()
  if repo is None:
    raise UserError(f'{os.path.abspath(".")} is not in a git checkout: bisect runs A/Bs of '
                    'commits, so run it inside a clone of the repository')
  good, commits = line(repo, args.good, args.bad)
  ab.check_config(args, overrides)
  history.check(args.history)
  return repo, good, commits


def by_ab(args, overrides, good, commits, on_step):
  """`bisect` of `prepare`'s commits, each A/B (bench/run/ab.py) of --case between two
  commits in a workdir of its own under --workdir (numbered in order) and recorded in
  the history: (its result, None), or (None, the exit status) where a side failed or
  a signal ended it (ab.settled)."""
  # pylint: disable=import-outside-toplevel  (see the imports)
  from bench.results import ab_result
  from bench.run import ab
  count = itertools.count(1)

  def judge(base, new):
    workdir = os.path.join(args.workdir, f'{next(count)}-{base[:10]}-{new[:10]}')
    ab_args = argparse.Namespace(**{**vars(args), 'base': base, 'new': new,
                                    'workdir': workdir, 'changes': 'advisory'})
    started = time.monotonic()
    result = ab.run(ab_args, [*overrides, f'--config.select={args.case}'], out=sys.stderr)
    history.record_finished(args.history, result, ab=True, source=os.path.abspath(
        os.path.join(workdir, ab_result.AB_JSON)))
    case = next((c for c in result['cases'] if c['name'] == args.case), None)
    if case is None:
      raise UserError(f'--case={args.case}: the A/B of {new[:10]} against {base[:10]} has no '
                      f'such case; name a case of {args.config}')
    return {key: case[key] for key in ('verdict', 'ratio', 'ci_low', 'ci_high')} | {
        'minutes': (time.monotonic() - started) / 60}

  return ab.settled(lambda: bisect(good, commits, judge, on_step=on_step),
                    f'the A/Bs finished so far are in {args.workdir} and the history')


def subject(repo, commit):
  """The first line of `commit`'s message."""
  found = git(repo, 'show', '-s', '--format=%s', commit)
  return found.stdout.strip() if found.returncode == 0 else ''


def bisect(good, commits, judge, on_step=lambda step: None):
  """Bisects `commits` (after `good`, oldest first, the last one bad) by `judge(base,
  new)` -> {verdict, ratio, ci_low, ci_high} of the case (an A/B's). Returns {'first_bad':
  the commit or None, 'last_good', 'first_bad_known': the range it could narrow to,
  'steps': [{base, new, verdict, ratio, ci_low, ci_high}], 'deciding': the step that
  found first_bad_known slower (None when the bad end is no regression), 'why': '' or
  why it stopped short}. `on_step(step)` hears each A/B as it ends."""
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
            'steps': steps, 'deciding': None, 'why': (
                f'the bad end is {verdict} against the good end, not a regression: nothing '
                'to bisect (a slowdown under the threshold, or none)')}
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
