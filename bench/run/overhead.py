"""The harness's own overhead: the suite's timer against a bare loop on the same
compiled step (the command line, and what the ratio means: bench/overhead.py)."""

import time

import jax
import numpy as np

from bench.core import parallel
from bench.measure import timer
from bench.run import runner
from bench.workload import build


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
  step, state, batches, *_ = build.build(case, mesh, runner.open_input('overhead', case, mesh))
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
