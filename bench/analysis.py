"""Which cost predicts step time here: correlations, a roofline, a fitted model.

  python -m bench.analysis REPORT.json [--format=md|json] [--plots=DIR] [--fit=OTHER.json]

The command line of bench/results/analysis.py and bench/results/cost_model.py,
which say what they compute: prints report.md's verdict section and, for a
profiled report, "What predicts step time" (each model family predicted by a fit
on the others), and "What predicts peak memory" where its cases' step peaks were
measured, or all of it as JSON; with --plots writes proxies.png,
roofline.png and predicted.png. --fit judges the cost model fitted on another
profiled report (another batch size or input size, say) on this one's cases.
Exit status 2, with one line on stderr, for a bad flag, a file that is not a
report, fewer than 4 timed cases, or a --fit report, or this one with --fit, without
profiled cases. A section the report cannot have is one line saying what it needs.
"""

import json
import os
import sys

from bench.core.errors import ArgumentParser, UserError, fail
from bench.results import analysis
from bench.results import cost_model
from bench.results import memory_model
from bench.results import schema


def main(argv=None):
  parser = ArgumentParser(prog='bench.analysis', description=__doc__.split('\n')[0])
  parser.add_argument('report', help='a report.json')
  parser.add_argument('--format', choices=('md', 'json'), default='md')
  parser.add_argument('--plots', metavar='DIR', help='write proxies.png, roofline.png and '
                      'predicted.png here (created if missing)')
  parser.add_argument('--fit', metavar='OTHER.json', help='judge the cost model fitted on this '
                      "other report's profiled cases, instead of leaving one family out")
  args = parser.parse_args(argv)
  try:
    report = schema.read(args.report)
    other = schema.read(args.fit) if args.fit else None
  except UserError as e:
    fail(e)
  try:
    model = cost_model.fit_on(other) if other else None
  except UserError as e:
    fail(f'--fit={args.fit}: {e}')
  result = analysis.analyze(report)
  if result is None:
    fail(f'{args.report}: {len(analysis.points(report))} timed cases with status ok; the '
         f'analysis needs at least {analysis.MIN_CASES}')
  if model is None:
    judged, title = cost_model.leave_one_family_out(report), None
  else:
    try:
      judged, title = cost_model.judge(model, report), f'The cost model fitted on {args.fit}'
    except UserError as e:
      fail(f'{args.report}: {e}')
  memory = memory_model.leave_one_family_out(report)
  if args.plots:
    from bench.results import plots  # pylint: disable=import-outside-toplevel  (matplotlib is slow)
    try:
      os.makedirs(args.plots, exist_ok=True)
      plots.proxies(args.plots, result)
      if judged:
        plots.predicted(args.plots, judged)
    except OSError as e:
      fail(f'--plots={args.plots}: cannot write the plots there ({e.strerror or e}); '
           'name a writable directory')
  if args.format == 'json':
    print(json.dumps({**result, 'cost_model': judged, 'memory_model': memory}, indent=1,
                     allow_nan=False))
  else:
    section = (cost_model.markdown(judged, *([title] if title else []))
               + memory_model.markdown(memory))
    absent = [line for line in (None if judged else cost_model.missing(report),
                                None if memory else memory_model.missing(report)) if line]
    section += [''] + absent if absent else []
    sys.stdout.write('\n'.join(analysis.markdown(result) + section) + '\n')


if __name__ == '__main__':
  main()
