"""The one timer: compile separately, warm up, then time every step.

How a step is timed (WORKSPACE.md repeats this):
  * Lowering and compilation are done ahead of time and timed on their own, so no
    timed call can trigger a compile.
  * Warm-up steps run first and are waited for (one device sync) before the clock
    starts; they are not sampled.
  * In the default `pipelined` mode the host dispatches step k, then waits for step
    k-1's output, and stamps the clock when it is ready. Sample k-1 is the time
    between the completions of steps k-2 and k-1. The device always has the next
    step queued, so it never idles on the host, exactly as in a bare loop; the
    samples add up to the wall time of the whole timed loop.
  * In `every_step` mode the host waits for each step before dispatching the
    next: per-step latency including dispatch, at the price of a device bubble.
Waiting on any one output of a step waits for the whole executable: XLA
completes all outputs of one execution together.
"""

import collections
import time

import jax
import numpy as np

SYNC_MODES = ('pipelined', 'every_step')
# Which completed step the host waits for after dispatching step k: k-1 or k.
_LAG = {'pipelined': 1, 'every_step': 0}


def compile_timed(jitted, *args):
  """Lowers and compiles `jitted` for `args`: (compiled, lower_s, compile_s)."""
  t0 = time.perf_counter()
  lowered = jitted.lower(*args)
  t1 = time.perf_counter()
  compiled = lowered.compile()
  t2 = time.perf_counter()
  return compiled, t1 - t0, t2 - t1


def time_steps(step, carry, batches, *, warmup_steps, timed_steps, sync='pipelined',
               on_sample=None):
  """Runs `step(carry, batch) -> (carry, out)` warm-up + timed times over rotating batches.

  Returns (carry, out of the last step, list of timed_steps wall times in seconds).
  `on_sample(i)` is called after each sample is taken (for progress display).
  """
  lag = _LAG[sync]
  n = len(batches)
  out = None
  for i in range(warmup_steps):
    carry, out = step(carry, batches[i % n])
  jax.block_until_ready(out)  # the clock starts on an idle device

  samples = []
  pending = collections.deque()
  t_prev = time.perf_counter()

  def take_sample():
    nonlocal t_prev
    jax.block_until_ready(pending.popleft())
    t = time.perf_counter()
    samples.append(t - t_prev)
    t_prev = t
    if on_sample is not None:
      on_sample(len(samples))

  for i in range(timed_steps):
    carry, out = step(carry, batches[(warmup_steps + i) % n])
    pending.append(out)
    while len(pending) > lag:
      take_sample()
  while pending:
    take_sample()
  return carry, out, samples


def summarize(samples):
  """Distribution of step times (seconds): the report's `step_time_s` block."""
  a = np.asarray(samples, dtype=np.float64)
  p10, p25, median, p75, p90 = np.percentile(a, [10, 25, 50, 75, 90])
  return {
      'median': float(median),
      'mean': float(a.mean()),
      'min': float(a.min()),
      'max': float(a.max()),
      'p10': float(p10),
      'p90': float(p90),
      'iqr': float(p75 - p25),
      'iqr_over_median': float((p75 - p25) / median),
      'n': int(a.size),
      'samples': [float(s) for s in a],
  }
