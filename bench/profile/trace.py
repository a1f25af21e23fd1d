"""Where a step's time goes: a profiler trace of extra steps, attributed to HLO ops.

After a case's timed steps (never inside their window), `profile_steps` more
steps run under `jax.profiler` in the case's sync mode, each dispatch marked
with a StepTraceAnnotation; more where that is under MIN_WINDOW_S of the timed
median (at most MAX_STEPS), after TRACER_WARMUP_STEPS traced but not attributed.
Both because the first steps under a tracer run slow: on the study's MLPs
(0.3-5 ms steps), 5 profiled steps took 1.25-1.55x the timed median, 100 took
0.97-1.14x. The trace is kept in WORKDIR/profiles/CASE/ (open
it in TensorBoard or XProf), and read back with `jax.profiler.ProfileData`:

  * On a GPU or TPU, the ops are the events of the first device's "XLA Ops"
    line; on a CPU, XLA's thunks, which run on several threads at once (the
    events of the step's program on the first device carrying an `hlo_op`).
  * Wall time inside the window of the profiled steps is shared out among the
    ops running at each instant (an op inside another on the same thread, a
    loop body in its loop, counts for its parent only outside it), so the ops'
    times add up to the time at least one was running.
  * On a CPU, XLA runs its dots and convolutions (HOST_ASYNC) on Eigen's thread
    pool after their event has ended: measured on the seed MLP at batch 256, the
    1.6 GFLOP kernel gradient of its first layer showed a 12 us event, then 8 ms
    in which nothing was traced until the op reading its result started. Such an
    op's event is extended to the first start of an op that reads its result
    (at most that late: the reader may have waited for another input too).
  * The rest of the window is `idle`: no op of the step was running (runtime
    between ops, dispatch, waiting for data). Ops and idle add up to the
    profiled steps' time.
  * Each op is joined with the compiled HLO (bench/profile/hlo_ops.py): category, Flax
    layer, forward/backward/update phase, FLOPs and bytes.

xprof's converters (hlo_stats, op_profile) would do the per-op sums, but on an
XLA:CPU trace they return no ops (measured with xprof 2.24.2), and they pull
some thirty packages in; ProfileData reads the same xplane on every backend.
"""

import bisect
import collections
import glob
import math
import os
import shutil
import tempfile
import time

import jax

from bench.core.stats import median as _median
from bench.measure import hlo
from bench.measure import timer
from bench.profile import hlo_ops

# The tracer's own cost per op (tracer_cost_per_event): measured on a program of this many
# tiny dots, each its own op, timed this many times per round, traced and not.
_PROBE_OPS = 128
_PROBE_RUNS = 30
# Ops that XLA:CPU's thunks run asynchronously on Eigen's thread pool.
HOST_ASYNC = ('dot', 'convolution')
# Name of the annotation around the profiled steps: the window attributed.
WINDOW = 'bench profiled steps'
STEP = 'bench profiled step'
# See the module docstring: the shortest window of profiled steps, in seconds, the most
# steps it is stretched to, and the steps traced first and left out of it.
MIN_WINDOW_S = 0.1
MAX_STEPS = 1000
TRACER_WARMUP_STEPS = 2
PROFILES = 'profiles'


def kernel_shapes(params):
  """{layer path: [shapes of its parameters]} (bench/profile/hlo_ops.py tells kernel
  gradients by them)."""
  out = collections.defaultdict(list)
  for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
    keys = [str(getattr(k, 'key', getattr(k, 'name', k))) for k in path]
    out['/'.join(keys[:-1])].append(tuple(leaf.shape))
  return out


def _stats(event):
  return {key: value for key, value in event.stats if value is not None}


def _trace_file(directory):
  found = sorted(glob.glob(os.path.join(directory, 'plugins', 'profile', '*', '*.xplane.pb')))
  if not found:
    raise RuntimeError(f'the profiler wrote no trace under {directory}')
  return found[-1]


def read_events(path, module):
  """(window, events, on_host, recorded) of a trace: the (start, end) ns of the WINDOW
  annotation; [(start ns, end ns, op name, thread)] of the ops of the program
  `module` on the first device that ran it; whether they are a CPU's thunks (else a
  GPU's or TPU's ops); and how many events of any kind (runtime, thread pool, ops)
  the tracer recorded in the window, what its own cost grows with."""
  data = jax.profiler.ProfileData.from_file(path)
  window, device, host, starts = None, {}, [], []
  for plane in data.planes:
    on_device = plane.name.startswith('/device:')
    for line in plane.lines:
      for event in line.events:
        if event.name == WINDOW and window is None:
          window = (event.start_ns, event.start_ns + event.duration_ns)
          continue
        starts.append(event.start_ns)
        if on_device and line.name != 'XLA Ops':
          continue
        stats = _stats(event)
        if stats.get('hlo_module', module) != module or 'hlo_op' not in stats and not on_device:
          continue
        row = (event.start_ns, event.start_ns + event.duration_ns,
               stats.get('hlo_op', event.name), (plane.name, line.name))
        if on_device:
          device.setdefault(plane.name, []).append(row)
        else:
          host.append((stats.get('device_ordinal', 0), row))
  if window is None:
    raise RuntimeError(f'{path} has no {WINDOW!r} annotation')
  recorded = sum(window[0] <= t < window[1] for t in starts)
  if device:  # the first device's plane: '/device:GPU:0' sorts before '/device:GPU:1'
    return window, device[min(device, key=lambda n: (len(n), n))], False, recorded
  first = min((ordinal for ordinal, _ in host), default=0)
  return window, [row for ordinal, row in host if ordinal == first], True, recorded


def _first_at_or_after(times, t):
  """The first of the sorted `times` at or after `t`, or None."""
  i = bisect.bisect_left(times, t)
  return times[i] if i < len(times) else None


def until_consumed(events, ops):
  """`events` with each HOST_ASYNC op's event extended to the first start, after it,
  of an op that reads its result (see the module docstring)."""
  consumers = collections.defaultdict(list)
  for name, op in ops.items():
    for source in op.inputs:
      consumers[source].append(name)
  starts = collections.defaultdict(list)
  for start, _, name, _ in events:
    starts[name].append(start)
  for times in starts.values():
    times.sort()
  out = []
  for start, end, name, thread in events:
    op = ops.get(name)
    if op is not None and op.opcode in HOST_ASYNC:
      read = [t for c in consumers[name]
              if (t := _first_at_or_after(starts.get(c, []), start)) is not None]
      if read and min(read) > end:
        # On a thread of its own: it runs beside what its thread goes on to trace,
        # and beside the other asynchronous ops, nested in none of them.
        end, thread = min(read), (*thread, 'async', start)
    out.append((start, end, name, thread))
  return out


def _self_intervals(events):
  """[(start, end, name)]: each event's time not inside another event of its thread."""
  by_thread = collections.defaultdict(list)
  for start, end, name, thread in events:
    by_thread[thread].append((start, end, name))
  out = []
  for rows in by_thread.values():
    rows.sort(key=lambda r: (r[0], -r[1]))
    stack = []  # [start of the open part, end, name] of the enclosing events
    for start, end, name in rows:
      while stack and stack[-1][1] <= start:
        open_start, open_end, open_name = stack.pop()
        out.append((open_start, open_end, open_name))
        if stack:
          stack[-1][0] = open_end
      if stack:
        parent = stack[-1]
        out.append((parent[0], start, parent[2]))
        parent[0] = min(end, parent[1])
      stack.append([start, end, name])
    while stack:
      open_start, open_end, open_name = stack.pop()
      out.append((open_start, open_end, open_name))
      if stack:
        stack[-1][0] = open_end
  return [(s, e, n) for s, e, n in out if e > s]


def attribute(events, window):
  """({op name: ns}, {op name: executions}, idle ns) of `window`: every instant shared
  equally among the ops running then; idle is the time none was."""
  lo, hi = window
  points = []
  for i, (start, end, name) in enumerate(_self_intervals(events)):
    start, end = max(start, lo), min(end, hi)
    if end > start:
      points += [(start, 1, i, name), (end, 0, i, name)]
  points.sort()
  shares, active, last, idle = collections.Counter(), {}, lo, 0.0
  for t, opening, i, name in points:
    if t > last:
      if active:
        for running in active.values():
          shares[running] += (t - last) / len(active)
      else:
        idle += t - last
      last = t
    if opening:
      active[i] = name
    else:
      active.pop(i)
  idle += hi - last
  counts = collections.Counter(name for start, end, name, _ in events if lo <= start < hi)
  return dict(shares), dict(counts), idle


def _rows(key_of, ops, times, counts, steps):
  """Rows of ops grouped by `key_of(op)`: time, FLOPs and bytes per step, and the ops."""
  groups = collections.defaultdict(lambda: {'time_s': 0.0, 'flops': 0.0, 'bytes': 0.0,
                                            'ops': 0})
  for name, ns in times.items():
    op = ops.get(name)
    row = groups[key_of(op)]
    row['time_s'] += ns * 1e-9 / steps
    per_step = counts.get(name, 0) / steps
    if op is not None:
      row['flops'] += op.flops * per_step
      row['bytes'] += op.bytes * per_step
    row['ops'] += 1
  return groups


def _unknown(name):
  return hlo_ops.Op(name=name, opcode='', category=hlo_ops.OTHER, layer=hlo_ops.UNNAMED,
                    phase=None, flops=0, bytes=0)


def summarize(ops, times, counts, idle_ns, steps, profiled_samples, timed_median, tracer_s=0.0):
  """The report's `profile` block (less its directory and wall time) from the
  attribution: ops, layers, categories and phases, per step. `tracer_s`: what the
  tracer itself added to a step (left out of the coverage)."""
  ops = dict(ops)
  for name in times:
    ops.setdefault(name, _unknown(name))
  op_rows = []
  for name, ns in sorted(times.items(), key=lambda item: -item[1]):
    op, per_step = ops[name], counts.get(name, 0) / steps
    op_rows.append({'op': name, 'category': op.category, 'layer': op.layer, 'phase': op.phase,
                    'time_s': ns * 1e-9 / steps, 'count': per_step,
                    'flops': op.flops * per_step, 'bytes': op.bytes * per_step})
  layers = _rows(lambda op: op.layer, ops, times, counts, steps)
  categories = _rows(lambda op: op.category, ops, times, counts, steps)
  phases = _rows(lambda op: op.phase or 'unknown', ops, times, counts, steps)
  op_s = sum(times.values()) * 1e-9 / steps
  idle_s = idle_ns * 1e-9 / steps
  step_s = op_s + idle_s
  return {
      'steps': steps,
      'step_s': step_s,
      'op_s': op_s,
      'idle_s': idle_s,
      'profiled_median_s': _median(profiled_samples),
      'tracer_s': tracer_s,
      'coverage': (step_s - tracer_s) / timed_median if timed_median else None,
      'ops': op_rows,
      'layers': sorted(({'layer': key, **row} for key, row in layers.items()),
                       key=lambda r: -r['time_s']),
      'categories': sorted(({'category': key, **row} for key, row in categories.items()),
                           key=lambda r: -r['time_s'])
                    + [{'category': hlo_ops.IDLE, 'time_s': idle_s, 'flops': 0.0, 'bytes': 0.0,
                        'ops': 0}],
      'phases': {key: row['time_s'] for key, row in sorted(phases.items())},
  }


_tracer_cost = []  # measured once per process


def tracer_cost_per_event():
  """Seconds the tracer adds to each event it records, on this device (measured once
  per process): the median over interleaved rounds of a probe program's traced minus
  untraced run time, over the events its trace holds per run. Its ops are tiny, so
  what they add is the tracer's recording, not slower work."""
  if _tracer_cost:
    return _tracer_cost[0]
  w = jax.numpy.eye(2) * 0.5

  def chain(x):
    for _ in range(_PROBE_OPS):
      x = jax.numpy.tanh(x @ w)  # tanh keeps XLA from joining the dots into one
    return x

  probe = jax.jit(chain)
  x = jax.numpy.ones((2, 2))
  probe(x).block_until_ready()

  def run():
    times = []
    for _ in range(_PROBE_RUNS):
      t = time.perf_counter()
      probe(x).block_until_ready()
      times.append(time.perf_counter() - t)
    return _median(times)

  module = hlo.module_name(probe.lower(x).compile().as_text())
  directory = tempfile.mkdtemp(prefix='tracer-probe-')
  options = jax.profiler.ProfileOptions()
  options.python_tracer_level = 0
  try:
    added = []
    for _ in range(3):
      untraced = run()
      jax.profiler.start_trace(directory, profiler_options=options)
      try:
        with jax.profiler.TraceAnnotation(WINDOW):
          traced = run()
      finally:
        jax.profiler.stop_trace()
      added.append(traced - (untraced + run()) / 2)
      recorded = read_events(_trace_file(directory), module)[3]
      shutil.rmtree(directory)
    per_run = recorded / _PROBE_RUNS
  finally:
    shutil.rmtree(directory, ignore_errors=True)
  _tracer_cost.append(max(_median(added), 0.0) / per_run if per_run else 0.0)
  return _tracer_cost[0]


def steps_for(min_steps, timed_median):
  """Steps to profile: at least `min_steps`, and enough for MIN_WINDOW_S at `timed_median`
  seconds a step (at most MAX_STEPS)."""
  if not timed_median:
    return min_steps
  return max(min_steps, min(MAX_STEPS, math.ceil(MIN_WINDOW_S / timed_median)))


def profile(step, carry, batches, *, hlo_text, params, steps, sync, workdir, name,
            timed_median):
  """Runs `steps` more steps of `step` under the profiler (steps_for says how many),
  after TRACER_WARMUP_STEPS, and attributes them.

  The trace goes to WORKDIR/profiles/NAME/ (NAME.processI/ for process I > 0 of a
  multi-process run), replacing an earlier one; it is written under a temporary
  name and renamed, so a killed run leaves no half trace there. Returns (carry,
  the report's profile block).
  """
  t0 = time.perf_counter()
  kernels = kernel_shapes(params)  # before the steps: a train step donates the parameters
  # Every process of a multi-process run profiles its own devices, in a folder of its own.
  process = jax.process_index()
  final = os.path.join(workdir, PROFILES, name if process == 0 else f'{name}.process{process}')
  partial = final + '.partial'
  shutil.rmtree(partial, ignore_errors=True)
  os.makedirs(partial)
  counter = iter(range(-TRACER_WARMUP_STEPS, steps))

  def annotated(carry, batch):
    with jax.profiler.StepTraceAnnotation(STEP, step_num=next(counter)):
      return step(carry, batch)

  options = jax.profiler.ProfileOptions()
  options.python_tracer_level = 0  # Python function events would slow the dispatch down
  jax.profiler.start_trace(partial, profiler_options=options)
  try:
    out, batches = None, iter(batches)
    for _ in range(TRACER_WARMUP_STEPS):
      carry, out = annotated(carry, next(batches))
    jax.block_until_ready(out)
    with jax.profiler.TraceAnnotation(WINDOW):
      carry, _, samples, _ = timer.time_steps(annotated, carry, batches, warmup_steps=0,
                                              timed_steps=steps, sync=sync)
  finally:
    jax.profiler.stop_trace()
  shutil.rmtree(final, ignore_errors=True)
  os.replace(partial, final)
  window, events, on_host, recorded = read_events(_trace_file(final), hlo.module_name(hlo_text))
  ops = hlo_ops.ops(hlo_text, kernels)
  times, counts, idle = attribute(until_consumed(events, ops) if on_host else events, window)
  block = summarize(ops, times, counts, idle, steps, samples, timed_median,
                    tracer_s=tracer_cost_per_event() * recorded / steps)
  block['directory'] = os.path.relpath(final, workdir)
  block['trace'] = os.path.relpath(_trace_file(final), workdir)
  block['wall_s'] = time.perf_counter() - t0
  return carry, block
