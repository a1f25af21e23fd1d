"""Harness self-check: the suite's timer against a bare loop on the same compiled step.

  python -m bench.overhead --config=configs/quickstart.py --case=mlp_b32

Builds the case as the runner does, then alternates, `--repeats` times: the
suite's timer (`timer.time_steps`, as in a report) and a bare loop that calls
the same compiled step on one device-resident batch and waits once at the end.
Prints the overhead ratio: median step time by the suite / bare-loop time per
step. A ratio near 1 means the timer adds nothing the device would notice.
"""

import signal
import sys

import numpy as np

from bench import main as cli
from bench.core import logs
from bench.core.errors import UserError, fail, integer


def _arguments(argv):
  arguments = cli.parser('bench.overhead', __doc__.split('\n', 1)[0])
  arguments.add_argument('--case', help='the case of the config to measure (default: the '
                         'first)')
  arguments.add_argument('--repeats', type=integer(1), default=20,
                         help='alternations of suite timer and bare loop (default 20)')
  arguments.add_argument('--steps', type=integer(1), default=200,
                         help='timed steps per repeat, in each of the two loops (default 200)')
  return cli.parse(arguments, argv)


def main(argv=None):
  """`python -m bench.overhead ARGS`: prints the ratios; exit 0, 2 for a user error, 128 + N
  for signal N."""
  args = _arguments(sys.argv[1:] if argv is None else argv)
  logs.configure(args.verbosity)  # before jax and TensorFlow print their start-up lines
  # pylint: disable=import-outside-toplevel  (seconds of imports, once the arguments are good)
  from bench.run import overhead
  from bench.run import suite
  try:
    cases = dict(suite.expand(args.config).cases)
  except UserError as e:
    fail(e)
  name = args.case or next(iter(cases))
  if name not in cases:
    fail(f'--case={name} is not a case of the config; cases: {", ".join(cases)}')
  try:
    medians, means, bare = overhead.measure(cases[name], args.repeats, args.steps)
  except KeyboardInterrupt:
    cli.interrupted(signal.SIGINT, 'by SIGINT; nothing was written')
  per_repeat = medians / bare
  print(f'case {name}: {args.repeats} repeats x {args.steps} steps, alternating')
  print(f'  suite median step     {np.median(medians) * 1e3:.4f} ms')
  print(f'  suite mean step       {np.median(means) * 1e3:.4f} ms')
  print(f'  bare loop per step    {np.median(bare) * 1e3:.4f} ms '
        f'(p10-p90 {np.percentile(bare, 10) * 1e3:.4f}-{np.percentile(bare, 90) * 1e3:.4f})')
  print(f'  overhead ratio (suite median / bare)  {np.median(medians) / np.median(bare):.4f} '
        f'(per-repeat p10-p90 {np.percentile(per_repeat, 10):.4f}-'
        f'{np.percentile(per_repeat, 90):.4f})')
  print(f'  overhead ratio (suite mean / bare)    {np.median(means) / np.median(bare):.4f}')


if __name__ == '__main__':
  sys.exit(main())
