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

Data wait: before dispatching step k the host takes its batch from the batch
iterator, and the time spent in that `next()` is step k's data wait. With a
device-prefetching input pipeline it is near zero while the pipeline keeps up,
and it is the time the pipeline fell behind when it does not; the device queue
cannot hold the next step while the host waits. Data wait is part of the step
time samples, never added to them: in pipelined mode the wait for batch k
happens while step k-1 runs, inside sample k-1's interval, so the report compares
totals (data_wait_s.share = all waits / all step time).
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
  """Runs `step(carry, batch) -> (carry, out)` warm-up + timed times, one batch each
  from the iterator `batches`.

  Returns (carry, out of the last step, list of timed_steps wall times, list of
  timed_steps data waits), in seconds. `on_sample(i)` is called after each sample
  is taken (for progress display).
  """
  lag = _LAG[sync]
  batches = iter(batches)
  out = None
  for _ in range(warmup_steps):
    carry, out = step(carry, next(batches))
  jax.block_until_ready(out)  # the clock starts on an idle device

  samples, waits = [], []
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

  for _ in range(timed_steps):
    t_wait = time.perf_counter()
    batch = next(batches)
    waits.append(time.perf_counter() - t_wait)
    carry, out = step(carry, batch)
    pending.append(out)
    while len(pending) > lag:
      take_sample()
  while pending:
    take_sample()
  return carry, out, samples, waits


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


def summarize_waits(waits, samples):
  """The report's `data_wait_s` block: data waits (seconds) and their share of step time."""
  a = np.asarray(waits, dtype=np.float64)
  return {
      'median': float(np.median(a)),
      'mean': float(a.mean()),
      'p90': float(np.percentile(a, 90)),
      'max': float(a.max()),
      'total': float(a.sum()),
      'share': float(a.sum() / np.sum(samples)),
  }
