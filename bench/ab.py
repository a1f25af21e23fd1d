"""Timing A/B of two revisions on one machine: is NEW slower than BASE?

  python -m bench.ab --base=REV [--new=REV] --config=configs/X.py --workdir=D \\
      [--rounds=8] [--look_every=4] [--max_rounds=20] [--max_minutes=30] \\
      [--threshold=10%] [--confidence=0.95] [--seed=N] [--changes=gate|advisory] [--config.FIELD=V ...]

Two reports from two runs of a shared machine differ by whatever else the
machine was doing (bench.compare calls that out when it can). This tool takes
the machine out of the comparison instead:

  * Each revision is checked out into a git worktree of its own under
    D/worktrees/ (the user's tree is not touched; removed at the end), and runs
    with this Python and its installed packages: only the repository's code
    differs between the sides.
  * A round runs the config once per side, each in a fresh `python -m
    bench.main` process. Rounds come in pairs, ABBA or BAAB, drawn per pair
    (the seed is recorded): each side runs first as often as second, and a
    neighbour's job that starts mid-round favours neither side on average.
  * A case's value in one process is its median step time. Steps within a
    process are not independent samples (they share the process's memory
    layout, clocks and neighbours), so the unit of evidence is the round: one
    log ratio log(new / base) per case and round, with both processes of the
    round seeing much the same machine.
  * The ratio is the Hodges-Lehmann estimate over rounds (the median of the
    pairwise means of the log ratios), and its interval the exact Wilcoxon
    signed-rank confidence interval: distribution-free, and one round spoiled
    by a burst of load moves neither much.
  * Verdict, against --threshold t: `regression` when the whole interval is
    above 1 + t, `faster` when it is all below 1 / (1 + t), `same` when it lies
    within both. An interval across either bound is undecided: more rounds run,
    up to --max_rounds or --max_minutes, and a case still undecided then is
    `inconclusive`, never a guess.
  * The verdicts are looked at after --rounds rounds, then every --look_every
    rounds up to --max_rounds (8, 12, 16, 20). Looking again and again until an
    interval clears a bound would find one by chance (at 95% per look, an A/A
    with noisy processes was called a regression or faster in 0.5-2% of
    simulated runs), so each look's interval is at confidence 1 - (1 -
    --confidence) / looks: the chance that any look misses the true ratio is at
    most 1 - --confidence (Bonferroni, whatever the looks' correlation).
  * Deterministic figures (parameter counts, XLA FLOPs and bytes, compiled
    memory) and case statuses are diffed exactly as bench.compare does.
  * Cases profiled on both sides (`--config.profile=True`): the median over the
    rounds of each op category's and layer's time per profiled step, which says
    where a regression sits.

Writes D/ab.json (after every round; `status` is `complete` at the end, schema in
docs/measurement.md), D/ab.md (a pull-request comment) and D/ab.png (every round's ratio
per case). Each side's report of round R is kept as D/runs/R-SIDE.json, its log
as D/logs/R-SIDE.log.

Exit status: 0 when every case is same, faster or inconclusive; 1 for any
regression, a deterministic change or a missing case (`--changes=advisory`:
only a regression), or a side whose run failed; 2, with one line on stderr, for
a user error (unknown revision, a config missing at a revision, a worktree in
the way, a config problem either side reports); 128 + N when signal N (SIGTERM,
SIGINT) stopped it: its running side is ended and its worktrees removed first.
"""

import os
import sys

from bench import ab_flags
from bench.core.errors import ArgumentParser, UserError, fail
from bench.results import ab_result
from bench.run import ab
from bench.run import history
import configs


def _arguments(argv):
  parser = ArgumentParser(prog='bench.ab', description=__doc__.split('\n')[0])
  parser.add_argument('--base', required=True, help='the revision to compare against')
  parser.add_argument('--new', default='HEAD', help='the revision under test (default HEAD)')
  parser.add_argument('--config', required=True, help='config file, relative to the '
                      'repository (each side runs its own revision of it)')
  parser.add_argument('--workdir', required=True, help='where ab.json, ab.md, ab.png, the '
                      'worktrees, runs and logs go')
  ab_flags.timing_flags(parser)
  parser.add_argument('--history', help='the results history the result is recorded in '
                      '(default $FLAX_BENCH_HISTORY or ~/.cache/flax-bench/history.db; "off": '
                      'none)')
  parser.add_argument('--changes', choices=('gate', 'advisory'), default='gate',
                      help='gate: a deterministic change or missing case gives exit 1; '
                      'advisory: only printed (CI diffs those against a stored baseline)')
  rest, overrides = configs.split(argv)  # passed on to each side's bench.main
  return ab_flags.timing_checked(parser, parser.parse_args(rest)), overrides


def main(argv=None):
  args, overrides = _arguments(sys.argv[1:] if argv is None else argv)
  try:
    ab.check_config(args, overrides)
    recording = history.check(args.history)
    result, status = ab.settled(lambda: ab.run(args, overrides), (
        f'{os.path.join(args.workdir, ab_result.AB_JSON)} has the rounds finished so far'))
    if status is not None:
      return status
    if recording:
      history.record_finished(recording, result, ab=True, source=os.path.abspath(
          os.path.join(args.workdir, ab_result.AB_JSON)))
  except UserError as e:
    fail(e)
  sys.stdout.write(ab_result.markdown(result))
  return ab_result.exit_status(result, changes_gate=args.changes == 'gate')


if __name__ == '__main__':
  sys.exit(main())
