"""Which cost predicts step time here: correlations, a roofline, the kernel predictor.

  python -m bench.analysis REPORT.json [--format=md|json] [--plots=DIR]

The command line of bench/results/analysis.py, predictors.py and memory_model.py,
which say what they compute: prints report.md's verdict section, "What predicts
step time" (the kernel predictions the run recorded, beside proxies each fitted on
the other model families) and "What predicts peak memory" where its cases' step
peaks were measured, or all of it as JSON; with --plots writes proxies.png,
roofline.png and predicted.png. Exit status 2, with one line on stderr, for a bad
flag, a file that is not a report, or fewer than 4 timed cases. A section the
report cannot have is one line saying what it needs.
"""

import json
import os
import sys

from bench.core.errors import ArgumentParser, UserError, fail
from bench.results import analysis
from bench.results import memory_model
from bench.results import predictors
from bench.results import schema


def main(argv=None):
  parser = ArgumentParser(prog='bench.analysis', description=__doc__.split('\n')[0])
  parser.add_argument('report', help='a report.json')
  parser.add_argument('--format', choices=('md', 'json'), default='md')
  parser.add_argument('--plots', metavar='DIR', help='write proxies.png, roofline.png and '
                      'predicted.png here (created if missing)')
  args = parser.parse_args(argv)
  try:
    report = schema.read(args.report)
  except UserError as e:
    fail(e)
  result = analysis.analyze(report)
  if result is None:
    fail(f'{args.report}: {len(analysis.points(report))} timed cases with status ok; the '
         f'analysis needs at least {analysis.MIN_CASES}')
  judged = predictors.judge(report)
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
    print(json.dumps({**result, 'predictors': judged, 'memory_model': memory}, indent=1,
                     allow_nan=False))
  else:
    section = predictors.markdown(judged) + memory_model.markdown(memory)
    absent = [line for line in (predictors.missing(report),
                                None if memory else memory_model.missing(report)) if line]
    section += [''] + absent if absent else []
    sys.stdout.write('\n'.join(analysis.markdown(result) + section) + '\n')


if __name__ == '__main__':
  main()
