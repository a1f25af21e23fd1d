"""Harness self-check: the suite's timer against a bare loop on the same compiled step.

  python -m bench.overhead --config=configs/quickstart.py --case=mlp_b32

Builds the case as the runner does, then alternates, `--repeats` times: the
suite's timer (`timer.time_steps`, as in a report) and a bare loop that calls
the same compiled step on one device-resident batch and waits once at the end.
Prints the overhead ratio: median step time by the suite / bare-loop time per
step. A ratio near 1 means the timer adds nothing the device would notice.
"""

import time

from absl import app
from absl import flags
import jax
import numpy as np

from bench import main as cli
from bench import report as report_lib
from bench import build
from bench import parallel
from bench import runner
from bench import suite as suite_lib
from bench import timer
from bench.errors import UserError

_CASE = flags.DEFINE_string('case', None, 'Case of the config to measure (default: the first).')
_REPEATS = flags.DEFINE_integer('repeats', 20, 'Alternations of suite timer and bare loop.')
_STEPS = flags.DEFINE_integer('steps', 200, 'Timed steps per repeat, in each of the two loops.')


def bare_loop(step, state, batch, steps):
  """Seconds per step of `steps` back-to-back calls with a single wait at the end."""
  state, out = step(state, batch)
  jax.block_until_ready(out)
  t0 = time.perf_counter()
  for _ in range(steps):
    state, out = step(state, batch)
  jax.block_until_ready(out)
  return state, (time.perf_counter() - t0) / steps


def measure(case, repeats, steps):
  """Per-repeat suite medians, suite means and bare-loop times, in seconds."""
  mesh = parallel.mesh(case.num_devices)
  step, state, batches, _ = build.build(case, mesh, report_lib.new_case('overhead', {}),
                                     runner.open_input('overhead', case, mesh))
  one_batch = next(batches)
  suite_medians, suite_means, bare = [], [], []
  for _ in range(repeats):
    state, _, samples, _ = timer.time_steps(step, state, batches,
                                            warmup_steps=case.warmup_steps, timed_steps=steps,
                                            sync=case.sync)
    suite_medians.append(float(np.median(samples)))
    suite_means.append(float(np.mean(samples)))
    state, per_step = bare_loop(step, state, one_batch, steps)
    bare.append(per_step)
  return np.array(suite_medians), np.array(suite_means), np.array(bare)


def main(argv):
  del argv
  if cli.CONFIG.value is None:
    cli.fail('missing --config; pass --config=configs/quickstart.py')
  try:
    cases = dict(suite_lib.expand(cli.CONFIG.value).cases)
  except UserError as e:
    cli.fail(e)
  name = _CASE.value or next(iter(cases))
  if name not in cases:
    cli.fail(f'--case={name} is not a case of the config; cases: {", ".join(cases)}')
  medians, means, bare = measure(cases[name], _REPEATS.value, _STEPS.value)
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
