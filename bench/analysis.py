"""Which cost predicts step time here: correlations, a roofline, a fitted model.

  python -m bench.analysis REPORT.json [--format=md|json] [--plots=DIR]

The command line of bench/results/analysis.py, which says what it computes:
prints report.md's verdict section (or the analysis as JSON), and with --plots
writes proxies.png and roofline.png. Exit status 2, with one line on stderr, for
a bad flag, a file that is not a report, or fewer than 4 timed cases.
"""

import json
import os
import sys

from bench.core.errors import ArgumentParser, UserError, fail
from bench.results import analysis
from bench.results import schema


def main(argv=None):
  parser = ArgumentParser(prog='bench.analysis', description=__doc__.split('\n')[0])
  parser.add_argument('report', help='a report.json')
  parser.add_argument('--format', choices=('md', 'json'), default='md')
  parser.add_argument('--plots', metavar='DIR',
                      help='write proxies.png and roofline.png here (created if missing)')
  args = parser.parse_args(argv)
  try:
    report = schema.read(args.report)
  except UserError as e:
    fail(e)
  result = analysis.analyze(report)
  if result is None:
    fail(f'{args.report}: {len(analysis.points(report))} timed cases with status ok; the '
         f'analysis needs at least {analysis.MIN_CASES}')
  if args.plots:
    from bench.results import plots  # pylint: disable=import-outside-toplevel  (matplotlib is slow)
    try:
      os.makedirs(args.plots, exist_ok=True)
      plots.proxies(args.plots, result)
    except OSError as e:
      fail(f'--plots={args.plots}: cannot write the plots there ({e.strerror or e}); '
           'name a writable directory')
  if args.format == 'json':
    print(json.dumps(result, indent=1, allow_nan=False))
  else:
    sys.stdout.write('\n'.join(analysis.markdown(result)) + '\n')


if __name__ == '__main__':
  main()
