"""The results history: every finished run and A/B, by commit, machine and case.

  flax-bench history add REPORT.json|ab.json ...        backfill (recording twice is a no-op)
  flax-bench history list [--config=C] [--case=C] [--machine=M] [--commits=A..B]
  flax-bench history show CASE [--plot=DIR] [--rev=REV] [--machine=M]
  flax-bench history changes [--case=C] [--rev=REV] [--window=3] [--threshold=5%]
                             [--fail-on=regression,undecided]
  flax-bench history export --format=csv|json [--case=C] [--config=C]
  flax-bench history bisect --good=REV --bad=REV --case=C --config=FILE --workdir=DIR \
      [A/B flags: --rounds=8 --max_rounds=20 --threshold=10% ...] [--config.FIELD=V ...]

Every subcommand takes --history=PATH (default $FLAX_BENCH_HISTORY, else
~/.cache/flax-bench/history.db; bench/run/history.py says why there). bench.main
records each finished run there, bench.ab each result. The store, and how
`changes` decides, are bench/results/history.py's and change_points.py's (this
module parses and prints). `show` and `changes` read the
commits along REV's first-parent line (default HEAD, where this runs inside the
repository; else, or with --by_time, in commit time order): a side branch is read
with --rev=BRANCH.
`bisect` finds the first commit of --bad's first-parent line after --good at which
the case got slower, by bench.ab's interleaved A/Bs between midpoints (each
recorded in the history; bench/run/bisect.py says how): 16 commits take at most 5.
`changes` names it for each point it cannot decide.
`changes` gives every point between two commits of a series a verdict:
regression, faster, same, or undecided with why, and counts them; "nothing moved"
only when every point is the same.
Exit status 2, with one line on stderr, for a bad flag, a file that is not a
report or a history, or a revision git does not know; 1 from `changes` when a
point has a verdict --fail-on names (none by default), and from `bisect` when it
found no first bad commit. (`changes` reports the past; whether the latest commit
regressed is bench.ab's gate.)
"""

import argparse
import csv
import io
import json
import os
import sys
import time

from bench import ab_flags
from bench.core.errors import THRESHOLD, ArgumentParser, UserError, fail, number
from bench.results import change_points
from bench.results import formatting
from bench.results import history
from bench.run import bisect as bisection
from bench.run import history as locate
from bench.run.git import repository


def _short(commit):
  return (commit or 'unknown')[:10]


def _when(seconds):
  return time.strftime('%Y-%m-%d %H:%M', time.localtime(seconds)) if seconds else 'n/a'


def _machine_label(row):
  return f'{row["machine_key"][:8]} ({row.get("cpu_model") or row.get("device_kind")})'


def add(args):
  """Each file recorded by a connection of its own (bench/run/history.py record_file)."""
  for path in args.files:
    run_id = locate.record_file(args.history, path)
    print(f'{path}: ' + (f'recorded as run {run_id}' if run_id else 'recorded before: skipped'))
  return 0


def _commits(args):
  if not args.commits:
    return None
  found = locate.expand_range(repository(), args.commits)
  if found is None:
    raise UserError(f'--commits={args.commits}: git knows no such commit or range here; give '
                    'A..B or one revision, inside the repository')
  return found


def list_runs(conn, args):
  rows = history.runs(conn, config=args.config, case=args.case, machine=args.machine,
                      commits=_commits(args))
  table = formatting.table(
      ('run', 'kind', 'recorded', 'commit', 'config', 'machine', 'status', 'cases'),
      [[r['id'], r['kind'] if r['kind'] == 'run' else f'ab vs {_short(r["base_commit"])}',
        _when(r['recorded_at']), _short(r['commit_sha']) + ('+' if r['dirty'] else ''),
        r['config'], _machine_label(r), r['status'], len(r['cases'])] for r in rows])
  sys.stdout.write('\n'.join(table) + f'\n\n{len(rows)} runs\n')
  return 0


def _lineage(args):
  repo = None if args.by_time else repository()
  return locate.lineage(repo, args.rev) if repo else None


def show(conn, args):
  rows = history.case_runs(conn, case=args.case, config=args.config, machine=args.machine)
  if not rows:
    raise UserError(f'no run of case {args.case!r} in {args.history}; `flax-bench history '
                    'list` shows what is there')
  lineage = _lineage(args)
  trend = change_points.trend(rows, lineage, history.ab_verdicts(conn, args.case))
  if not trend:
    raise UserError(f'none of the {len(rows)} runs of {args.case!r} is of a commit on '
                    f"{args.rev}'s first-parent line; name another with --rev, or --by_time")
  series = []
  lines = [f'# {args.case}: median step time per commit, machines apart', '']
  for line in trend:
    row = line['row']
    label = f'{_machine_label(row)}, {row["config_name"]}, batch {row["batch_size"]}'
    table = [[p['index'], _short(p['commit']), _when(p['when']), p['runs'],
              formatting.fmt(p['median_s'], 1e3),
              f'{formatting.fmt(p["low_s"], 1e3)}-{formatting.fmt(p["high_s"], 1e3)}',
              formatting.fmt(p['iqr_over_median']),
              '; '.join(f'{v or "undecided"} {ratio:.3f}x vs {_short(base)}'
                        for base, v, ratio in p['ab']) or ''] for p in line['points']]
    series.append({'machine': label, 'points': line['points']})
    lines += [f'## machine {label}', '']
    lines += formatting.table(('#', 'commit', 'date', 'runs', 'median ms', 'runs\' medians ms',
                               'IQR/median', 'A/B'), table)
    lines.append('')
  sys.stdout.write('\n'.join(lines))
  if args.plot:
    from bench.results import plots  # pylint: disable=import-outside-toplevel  (matplotlib)
    try:
      os.makedirs(args.plot, exist_ok=True)
      path = plots.trend(args.plot, args.case, series, order=(
          'commit time order' if lineage is None else f'first-parent order of {args.rev}'))
    except OSError as e:
      raise UserError(f'--plot={args.plot}: cannot write there ({e.strerror or e}); name a '
                      'writable directory') from None
    print(f'trend: {path}')
  return 0


def changes(conn, args):
  lineage = _lineage(args)
  found = change_points.changes(conn, case=args.case, config=args.config, lineage=lineage,
                                window=args.window, threshold=args.threshold,
                                confidence=args.confidence)
  if not found['series']:
    raise UserError(_nothing_to_judge(conn, args, lineage))
  counts = found['counts']
  lines = [f'Changes along {"commit time" if lineage is None else args.rev} '
           f'(window {args.window} commits each side, threshold {args.threshold:.0%}, '
           f'confidence {args.confidence:.0%})', '',
           f'{sum(counts.values())} points in {found["series"]} series: '
           + ', '.join(f'{counts[v]} {v}' for v in change_points.VERDICTS) + '.', '']
  if not found['points']:
    lines.append('Nothing to judge: no series has two commits on this line.')
  elif counts['same'] == len(found['points']):
    lines.append('No step time moved beyond its noise: every point is the same within '
                 f'{args.threshold:.0%}.')
  if found['timing']:
    lines += formatting.table(
        ('case', 'machine', 'commit', 'previous', 'ratio', 'interval', 'verdict',
         'runs before/after'),
        [[c['case'], c['machine'][:8], _short(c['commit']), _short(c['previous']),
          f'{c["ratio"]:.3f}', f'{c["low"]:.3f}-{c["high"]:.3f}', c['verdict'],
          f'{c["before"]}/{c["after"]}'] for c in found['timing']])
  coarse = [c for c in found['timing'] if c['unrun']]
  if coarse:
    lines += ['', 'Coarse: commits between these were never run; the first slower (or '
              'faster) one is among them:', '']
    for c in coarse:
      lines.append(f'- {c["case"]} between {_short(c["previous"])} and {_short(c["commit"])} '
                   f'({c["unrun"]} commits between): {_bisect_command(c)}')
  if found['deterministic']:
    lines += ['', 'Deterministic figures changed (a new program: timed as a new series):', '']
    lines += formatting.table(
        ('case', 'machine', 'commit', 'previous', 'figure', 'before', 'now'),
        [[c['case'], c['machine'][:8], _short(c['commit']), _short(c['previous']), c['figure'],
          c['before'], c['after']] for c in found['deterministic']])
  if found['undecided']:
    lines += ['', 'Undecided:', '']
    for c in found['undecided']:
      lines.append(f'- {c["case"]} at {_short(c["commit"])} on {c["machine"][:8]}: {c["reason"]}')
      if c['ratio'] is not None:  # runs on both sides: an A/B settles it
        lines.append(f'  settle it: {_bisect_command(c)}')
  sys.stdout.write('\n'.join(lines) + '\n')
  failing = [v for v in args.fail_on if counts[v]]
  if failing:
    print(f'--fail-on: {", ".join(f"{counts[v]} {v}" for v in failing)}', file=sys.stderr)
  return 1 if failing else 0


def bisect(args, overrides):
  """Runs the bisection's A/Bs (bench/run/bisect.py), each recorded in the history, and
  prints each as it ends, then the first bad commit or why there is none."""
  repo, good, commits = bisection.prepare(args, overrides)
  print(f'Bisecting {args.case}: {len(commits)} commit{"s" if len(commits) > 1 else ""} after '
        f'{good[:10]} up to '
        f'{commits[-1][:10]}', flush=True)

  def heard(step):
    interval = (f'[{step["ci_low"]:.3f}, {step["ci_high"]:.3f}]' if step['ci_low'] is not None
                else '[unbounded]')
    print(f'- {step["new"][:10]} against {step["base"][:10]}: {step["verdict"]} '
          f'{step["ratio"]:.3f}x {interval} ({step["minutes"]:.1f} min)', flush=True)

  found, status = bisection.by_ab(args, overrides, good, commits, on_step=heard)
  if status is not None:
    return status
  if found['first_bad']:
    first = found['first_bad']
    step = found['deciding']
    print(f'First bad commit: {first[:10]} {bisection.subject(repo, first)!r}: '
          f'{step["ratio"]:.3f}x [{step["ci_low"]:.3f}, {step["ci_high"]:.3f}] against '
          f'{step["base"][:10]}, in {len(found["steps"])} A/Bs')
    return 0
  print(f'No first bad commit: {found["why"]}')
  return 1


def _nothing_to_judge(conn, args, lineage):
  """Why `changes` has no series to judge: no run recorded (an A/B is not one), none
  that is a commit's figure, or none on the line."""
  of = f' of {args.case!r}' if args.case else ''
  recorded = history.runs(conn, config=args.config, case=args.case)
  runs = sum(r['kind'] == 'run' for r in recorded)
  if not runs:
    abs_ = (f' (only A/Bs: {len(recorded)}, which `flax-bench history list` shows)'
            if recorded else '')
    return (f'no run{of} is recorded{abs_}; changes judges the runs a finished bench.main run '
            'records')
  if lineage is None:
    return (f'none of the {runs} recorded runs{of} is a finished run of a commit without '
            'uncommitted changes (such runs are not their commit\'s figure)')
  return (f'none of the recorded runs{of} is of a commit on {args.rev}\'s first-parent line; '
          'name another with --rev, or --by_time')


def _bisect_command(point):
  """The `history bisect` command line that settles a point of `changes`."""
  return (f'flax-bench history bisect --good={_short(point["previous"])} '
          f'--bad={_short(point["commit"])} --case={point["case"]} '
          f'--config={point["config_file"] or "CONFIG.py"} --workdir=workdirs/bisect-'
          f'{point["case"]}')


def export(conn, args):
  rows = history.export_rows(conn, case=args.case, config=args.config)
  if args.format == 'json':
    samples = history.EXPORT_COLUMNS.index('samples')
    sys.stdout.write(json.dumps([
        {**dict(zip(history.EXPORT_COLUMNS, row)), 'samples': json.loads(row[samples])}
        for row in rows], indent=1) + '\n')
  else:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator='\n')
    writer.writerow(history.EXPORT_COLUMNS)
    writer.writerows(rows)
    sys.stdout.write(buffer.getvalue())
  return 0


def _verdicts(text):
  chosen = tuple(v.strip() for v in text.split(',') if v.strip())
  allowed = [v for v in change_points.VERDICTS if v != 'same']
  if not chosen or any(v not in allowed for v in chosen):
    raise argparse.ArgumentTypeError(
        f'{text!r} is not a comma-separated list of {", ".join(allowed)}')
  return chosen


def _parser():
  parser = ArgumentParser(prog='bench.history', description=__doc__.split('\n')[0])
  parser.add_argument('--history', help='the history file (default $FLAX_BENCH_HISTORY or '
                      '~/.cache/flax-bench/history.db)')
  commands = parser.add_subparsers(dest='command', required=True)
  p = commands.add_parser('add', help='record reports or A/B results (backfill)')
  p.add_argument('files', nargs='+', metavar='REPORT.json')
  p = commands.add_parser('list', help='the runs recorded')
  p.add_argument('--config', help='a config name (or file)')
  p.add_argument('--case')
  p.add_argument('--machine', help='a machine key prefix, as list shows it')
  p.add_argument('--commits', help='a git range A..B, or one revision')
  p = commands.add_parser('show', help="a case's median per commit, and trend.png")
  p.add_argument('case')
  p.add_argument('--config', help='a config name')
  p.add_argument('--machine', help='a machine key prefix')
  p.add_argument('--rev', default='HEAD', help='whose first-parent line (default HEAD)')
  p.add_argument('--plot', metavar='DIR', help='write trend.png here')
  p.add_argument('--by_time', action='store_true', help='order the commits by commit time, '
                 'not along --rev (every commit recorded, on any branch)')
  p = commands.add_parser('changes', help='where along the commits a figure moved')
  p.add_argument('--case')
  p.add_argument('--config', help='a config name')
  p.add_argument('--rev', default='HEAD', help='whose first-parent line (default HEAD)')
  p.add_argument('--by_time', action='store_true', help='order the commits by commit time, '
                 'not along --rev (every commit recorded, on any branch)')
  p.add_argument('--window', type=number(lambda v: v >= 1 and v == int(v), 'a whole number '
                                         '>= 1'), default=3,
                 help='commits on each side of a point compared (default 3)')
  p.add_argument('--threshold', type=THRESHOLD, default=0.05,
                 help='ratio change that counts (default 5%%)')
  p.add_argument('--confidence', default=0.95,
                 type=number(lambda v: 0.5 <= v < 1, 'a probability in [0.5, 1)'),
                 help="per point; a series' level boundaries share it (default 0.95)")
  p.add_argument('--fail-on', '--fail_on', type=_verdicts, default=(),
                 help='exit 1 when any point has one of these verdicts (comma-separated: '
                 'regression, faster, undecided), for CI')
  p = commands.add_parser('bisect', help='the first commit at which a case got slower, by '
                          'A/Bs between midpoints')
  p.add_argument('--good', required=True, help='a commit known fast')
  p.add_argument('--bad', required=True, help='a later commit known slow, on whose first-parent '
                 'line --good is')
  p.add_argument('--case', required=True, help='the case of --config to time')
  p.add_argument('--config', required=True, help='config file, relative to the repository')
  p.add_argument('--workdir', required=True, help='where each A/B writes its files '
                 '(N-BASE-NEW/)')
  ab_flags.timing_flags(p)
  p = commands.add_parser('export', help='every case of every run, as CSV or JSON')
  p.add_argument('--format', choices=('csv', 'json'), default='csv')
  p.add_argument('--case')
  p.add_argument('--config')
  return parser


COMMANDS = {'list': list_runs, 'show': show, 'changes': changes, 'export': export}


def main(argv=None):
  parser = _parser()
  argv = sys.argv[1:] if argv is None else argv
  args, unknown = parser.parse_known_args(argv)
  overrides = []
  if args.command == 'bisect':
    import configs  # pylint: disable=import-outside-toplevel  (bisect's alone)
    rest, overrides = configs.split(argv)  # passed on to each A/B's sides
    args = ab_flags.timing_checked(parser, parser.parse_args(rest))
  elif unknown:
    parser.error(f'{unknown[0]}: config overrides are for bisect, which runs the config'
                 if unknown[0].startswith('--config.') else
                 f'unrecognized arguments: {" ".join(unknown)}')
  if getattr(args, 'window', None):
    args.window = int(args.window)
  try:
    args.history = locate.path(args.history)
    if args.history is None:
      raise UserError('--history=off: there is no history to read; name a file')
    if args.command == 'add':
      return add(args)
    if args.command == 'bisect':
      return bisect(args, overrides)
    if not os.path.exists(args.history):
      raise UserError(f'{args.history}: no history here yet; a finished bench.main run '
                      'records one, or `flax-bench history add REPORT.json`')
    conn = history.connect(args.history)
    try:
      return COMMANDS[args.command](conn, args)
    finally:
      conn.close()
  except UserError as e:
    fail(e)


if __name__ == '__main__':
  sys.exit(main())
