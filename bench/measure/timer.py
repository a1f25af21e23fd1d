"""The one timer: compile separately, warm up, then time every step.

How a step is timed (docs/measurement.md repeats this):
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

Data wait: the time the device sat idle because step k's batch was not there
yet, from the later of (step k-1 completed, the host asked for batch k) to the
moment `next()` returned it. In `every_step` mode step k-1 has completed before
the host asks, so this is the whole `next()`. In `pipelined` mode the host asks
for batch k while step k-1 runs, and only the part of the wait after step k-1
completed left the device idle; a watcher thread records each step's completion
time for this (one extra wake-up per step, off the dispatching thread). Data wait
is part of the step time, never added to it; the report compares totals
(data_wait_s.share = all waits / all step time).
"""

import collections
import queue
import threading
import time

import jax
import numpy as np

SYNC_MODES = ('pipelined', 'every_step')
# Which completed step the host waits for after dispatching step k: k-1 or k.
_LAG = {'pipelined': 1, 'every_step': 0}


# jax's persistent compilation cache reports each lookup (a compile that may use the
# cache) and each hit as a monitoring event; counted here, per thread.
_CACHE_EVENTS = {'/jax/compilation_cache/compile_requests_use_cache': 'lookups',
                 '/jax/compilation_cache/cache_hits': 'hits'}
_cache_counts = threading.local()


def _count_cache_event(event, **_):
  if event in _CACHE_EVENTS:
    key = _CACHE_EVENTS[event]
    setattr(_cache_counts, key, getattr(_cache_counts, key, 0) + 1)


jax.monitoring.register_event_listener(_count_cache_event)


def compile_timed(jitted, *args):
  """Lowers and compiles `jitted` for `args`: (compiled, lower_s, compile_s, cache),
  `cache` saying where the executable came from: 'hit' (read back from the
  persistent compilation cache, so compile_s timed a read), 'miss' (compiled, and
  stored) or 'off' (no cache)."""
  t0 = time.perf_counter()
  lowered = jitted.lower(*args)
  before = {key: getattr(_cache_counts, key, 0) for key in _CACHE_EVENTS.values()}
  t1 = time.perf_counter()
  compiled = lowered.compile()
  t2 = time.perf_counter()
  lookups, hits = (getattr(_cache_counts, key, 0) - before[key] for key in ('lookups', 'hits'))
  return compiled, t1 - t0, t2 - t1, 'hit' if hits else 'miss' if lookups else 'off'


class _CompletionWatcher:
  """Records when each output put to it is ready, from a thread of its own."""

  def __init__(self):
    self.times = []
    self._queue = queue.SimpleQueue()
    self._thread = threading.Thread(target=self._run, daemon=True)
    self._thread.start()

  def _run(self):
    while (out := self._queue.get()) is not None:
      jax.block_until_ready(out)
      self.times.append(time.perf_counter())

  def watch(self, out):
    self._queue.put(out)

  def close(self):
    self._queue.put(None)
    self._thread.join()
    return self.times


def time_steps(step, carry, batches, *, warmup_steps, timed_steps, sync='pipelined',
               on_sample=None, stop=None):
  """Runs `step(carry, batch) -> (carry, out)` warm-up + timed times, one batch each
  from the iterator `batches`.

  Returns (carry, out of the last step, list of timed_steps wall times, list of
  timed_steps data waits), in seconds. `on_sample(i)` is called after each sample
  is taken (for progress display). `stop()`, asked before each timed step, ends
  the loop early when true (a preemption): the lists are then shorter.
  """
  lag = _LAG[sync]
  batches = iter(batches)
  out = None
  for _ in range(warmup_steps):
    carry, out = step(carry, next(batches))
  jax.block_until_ready(out)  # the clock starts on an idle device

  samples, fetches = [], []  # fetches: (asked for batch k, got it)
  pending = collections.deque()
  t_start = time.perf_counter()
  stamps = [t_start]  # completions as the dispatching thread saw them
  watcher = _CompletionWatcher() if lag else None

  def take_sample():
    jax.block_until_ready(pending.popleft())
    t = time.perf_counter()
    samples.append(t - stamps[-1])
    stamps.append(t)
    if on_sample is not None:
      on_sample(len(samples))

  try:
    for _ in range(timed_steps):
      if stop is not None and stop():
        break
      t_ask = time.perf_counter()
      batch = next(batches)
      fetches.append((t_ask, time.perf_counter()))
      carry, out = step(carry, batch)
      pending.append(out)
      if watcher:
        watcher.watch(out)
      while len(pending) > lag:
        take_sample()
    while pending:
      take_sample()
  finally:
    watched = watcher.close() if watcher else None
  # Completion of step k-1 for each step k (the warm-up's end for the first).
  completed = [t_start] + watched[:-1] if watcher else stamps[:-1]
  waits = [max(0.0, got - max(done, ask)) for (ask, got), done in zip(fetches, completed)]
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
