"""The flags of how an A/B runs and judges its rounds: bench.ab's, and `flax-bench
history bisect`'s for each A/B it runs. Apart from bench/ab.py, whose imports (jax,
through the signal handling) `history` would otherwise pay at every start."""

import math

from bench.core.errors import THRESHOLD, number


def timing_flags(parser):
  """The flags of how an A/B runs and judges its rounds, on `parser` (bench.ab's, and
  `flax-bench history bisect`'s for each A/B it runs); `timing_checked` after parsing."""
  positive = number(lambda v: v >= 1 and v == int(v), 'a whole number >= 1')
  parser.add_argument('--rounds', default=8, type=positive,
                      help='rounds before the first look at the verdicts (default 8)')
  parser.add_argument('--look_every', default=4, type=positive,
                      help='rounds between looks while a case is undecided (default 4)')
  parser.add_argument('--max_rounds', default=20, type=positive,
                      help='rounds at most while a case is undecided (default 20)')
  parser.add_argument('--max_minutes', default=30.0,
                      type=number(lambda v: 0 < v < math.inf, 'minutes > 0'),
                      help='no round starts once this is spent (default 30)')
  parser.add_argument('--threshold', default=0.1, type=THRESHOLD,
                      help='ratio change that counts: "10%%" or "0.1" (default 10%%)')
  parser.add_argument('--confidence', default=0.95,
                      type=number(lambda v: 0.5 <= v < 1, 'a probability in [0.5, 1)'),
                      help='confidence of all looks\' intervals together (default 0.95)')
  parser.add_argument('--seed', type=int, help='seed of the round order (default: drawn)')


def timing_checked(parser, args):
  """`args` of timing_flags checked together, their counts made integers."""
  if args.max_rounds < args.rounds:
    parser.error(f'--max_rounds={args.max_rounds:g} is below --rounds={args.rounds:g}')
  args.rounds, args.max_rounds, args.look_every = map(
      int, (args.rounds, args.max_rounds, args.look_every))
  return args
