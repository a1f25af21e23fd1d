"""Compares two benchmark reports: what changed from BASE to NEW, and does it matter.

  python -m bench.compare BASE.json NEW.json [--threshold=10%] [--format=md|text] \\
      [--timing=gate|advisory] [--alpha=0.01]

The command line of bench/results/compare.py, which says how cases are matched,
what counts as a change, a regression or noise, and when the machine changed.
Exit status: 0 without changes, missing cases or regressions; 1 with any
(--timing=advisory: only changes and missing cases); 2, with one line on stderr,
for a bad flag or a file that is not a report of this schema.
"""

import sys

from bench.core.errors import THRESHOLD, ArgumentParser, UserError, fail, number
from bench.results import compare
from bench.results import schema


def main(argv=None):
  parser = ArgumentParser(prog='bench.compare', description=__doc__.split('\n')[0])
  parser.add_argument('base', metavar='BASE.json', help='the report to compare against')
  parser.add_argument('new', metavar='NEW.json', help='the report under test')
  parser.add_argument('--threshold', default=0.1, type=THRESHOLD,
                      help='median step time change that can count as a regression or a '
                      'speed-up: "10%%" or "0.1" (default 10%%)')
  parser.add_argument('--format', choices=('md', 'text'), default='md',
                      help='md: a pull-request comment; text: aligned columns for a log')
  parser.add_argument('--timing', choices=('gate', 'advisory'), default='gate',
                      help='gate: a timing regression gives exit status 1; advisory: it is '
                      'only printed (deterministic changes still give 1)')
  parser.add_argument('--alpha', default=0.01,
                      type=number(lambda v: 0 < v < 1,
                                  'a probability between 0 and 1: give e.g. 0.01'),
                      help='significance level of the Mann-Whitney U test (default 0.01)')
  args = parser.parse_args(argv)
  try:
    base, new = schema.read(args.base), schema.read(args.new)
  except UserError as e:
    fail(e)
  result = compare.compare(base, new, threshold=args.threshold, alpha=args.alpha)
  sys.stdout.write(compare.render(result, args.format))
  return compare.exit_status(result, timing_gates=args.timing == 'gate')


if __name__ == '__main__':
  sys.exit(main())
