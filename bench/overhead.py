"""Harness self-check: the suite's timer against a bare loop on the same compiled step.

  python -m bench.overhead --config=configs/quickstart.py --case=mlp_b32

Builds the case as the runner does, then alternates, `--repeats` times: the
suite's timer (`timer.time_steps`, as in a report) and a bare loop that calls
the same compiled step on one device-resident batch and waits once at the end.
Prints the overhead ratio: median step time by the suite / bare-loop time per
step. A ratio near 1 means the timer adds nothing the device would notice.
"""

from absl import app
from absl import flags
import numpy as np

from bench import main as cli
from bench.core.errors import UserError
from bench.run import overhead
from bench.run import suite

_CASE = flags.DEFINE_string('case', None, 'Case of the config to measure (default: the first).')
_REPEATS = flags.DEFINE_integer('repeats', 20, 'Alternations of suite timer and bare loop.')
_STEPS = flags.DEFINE_integer('steps', 200, 'Timed steps per repeat, in each of the two loops.')


def main(argv):
  del argv
  if cli.CONFIG.value is None:
    cli.fail('missing --config; pass --config=configs/quickstart.py')
  try:
    cases = dict(suite.expand(cli.CONFIG.value).cases)
  except UserError as e:
    cli.fail(e)
  name = _CASE.value or next(iter(cases))
  if name not in cases:
    cli.fail(f'--case={name} is not a case of the config; cases: {", ".join(cases)}')
  medians, means, bare = overhead.measure(cases[name], _REPEATS.value, _STEPS.value)
  per_repeat = medians / bare
  print(f'case {name}: {_REPEATS.value} repeats x {_STEPS.value} steps, alternating')
  print(f'  suite median step     {np.median(medians) * 1e3:.4f} ms')
  print(f'  suite mean step       {np.median(means) * 1e3:.4f} ms')
  print(f'  bare loop per step    {np.median(bare) * 1e3:.4f} ms '
        f'(p10-p90 {np.percentile(bare, 10) * 1e3:.4f}-{np.percentile(bare, 90) * 1e3:.4f})')
  print(f'  overhead ratio (suite median / bare)  {np.median(medians) / np.median(bare):.4f} '
        f'(per-repeat p10-p90 {np.percentile(per_repeat, 10):.4f}-'
        f'{np.percentile(per_repeat, 90):.4f})')
  print(f'  overhead ratio (suite mean / bare)    {np.median(means) / np.median(bare):.4f}')


if __name__ == '__main__':
  app.run(main, flags_parser=cli.parse_flags)
