"""A kernel alone: its HLO module compiled for one device and timed by the one timer.

bench/measure/kernels.py writes each kernel of a program as an HLO module of its
own. Here that module is compiled as it is (not rebuilt from jax.lax: what the
compiler made of the op in context is what runs alone, such as XLA:CPU's max-pool
gradient as a scatter over iotas), on random inputs of its parameters' types, and
timed with bench/measure/timer.py: warm-up, then every call sampled.

JAX has no public way to compile HLO text, so this goes through jaxlib's client:
the text parsed (xla_client.hlo), converted to StableHLO and compiled by the
device's client, as jax.jit compiles what it lowers. `check` compiles a kernel and
says whether the compiler, given it alone, runs the same kernel: the same kind
and ops with the same signature, or why not (it fused it with its parameters'
copies, split it in two, ...).

A kernel is timed as it runs inside a step: in a loop of its own (kernels.looped),
its operands and results the loop's buffers, so each execution pays neither the
dispatch of an executable nor the allocation of its results, which a kernel in a
step does not pay either (measured on the seed MLP at batch 32: its 66 kernels
timed one call each added up to 2.4 ms, in loops to 0.66 ms, its step 1.06 ms).
What a step pays besides its kernels is measured by probes: `overhead`, a call of
a program whose one kernel does nothing measurable (a scalar add), and
`fresh_memory`, the first writes into a newly allocated buffer of a given size (a
step's temporary buffers are allocated at every call: past the allocator's
reuse threshold, 32 MiB with glibc, every page is faulted in and zeroed again).
"""

import dataclasses
import itertools
import math

import jax
from jax._src.lib import xla_client  # the one supported path from HLO text to a compile
import numpy as np

from bench.measure import hlo
from bench.measure import kernels as kernels_lib
from bench.measure import timer

# How long one kernel's timed calls last at the least (seconds), and their bounds.
MIN_TIME_S = 0.03
MIN_SAMPLES, MAX_SAMPLES = 10, 400
WARMUP = 3
# A looped kernel's calls (kernels.looped): PROBE_TRIPS iterations first, grown until a
# call lasts about TARGET_CALL_S (long against a call's dispatch and its spread, short
# enough for many samples), at most MAX_TRIPS.
PROBE_TRIPS = 1
SIZING_CALLS = 3  # calls timed at each size while growing N
TARGET_CALL_S = 0.001
MAX_TRIPS = 100_000
# At most this factor at once: one noisy empty call can make a 50 ms kernel look free,
# and 10,000 iterations of it a call of minutes (seen while sampling).
MAX_GROWTH = 32
# The program of the overhead probe: one kernel that does nothing measurable.
_PROBE = '''HloModule probe

ENTRY %main (p0: f32[], p1: f32[]) -> f32[] {
  %p0 = f32[] parameter(0)
  %p1 = f32[] parameter(1)
  ROOT %add = f32[] add(%p0, %p1)
}
'''


class KernelError(ValueError):
  """A kernel's module that does not compile alone (its message says why)."""


class TooSlow(KernelError):
  """A kernel one execution of which takes longer than the caller's limit. `summary`:
  timer.summarize of the seconds per execution of the calls that found it out (one
  call of one execution, or SIZING_CALLS of a few: at a tenth of a second and more
  a call's overhead and spread are small beside it); `check`: measure's Check."""

  def __init__(self, message, summary, check=None):
    super().__init__(message)
    self.summary, self.check = summary, check


def compile_module(text, device=None):
  """The loaded executable of an HLO module's text on `device` (default: the first)."""
  device = device or jax.devices()[0]
  try:
    module = xla_client.hlo.hlo_module_from_text(text)
    stablehlo = xla_client._xla.mlir.hlo_to_stablehlo(  # pylint: disable=protected-access
        module.as_serialized_hlo_module_proto())
    return device.client.compile_and_load(stablehlo, [device], xla_client.CompileOptions())
  except Exception as e:  # jaxlib raises its own XlaRuntimeError and ValueError
    # One line: the first, and the parser's 'error:' line (its first line only says
    # that there was a syntax error; the lines after it quote the text).
    lines = [line.strip() for line in str(e).splitlines() if line.strip()] or ['']
    detail = '' if 'error:' in lines[0] else next(
        (line for line in lines[1:] if 'error:' in line), '')
    raise KernelError(' '.join(filter(None, (f'{type(e).__name__}: {lines[0]}', detail)))) from e


def _instructions(module, opcode):
  return [i for instructions in module.computations.values() for i in instructions
          if i.opcode == opcode]


@dataclasses.dataclass(frozen=True)
class Check:
  same: bool    # alone it compiles to one kernel of the same signature, or of the same
                # kind and ops (the simplifier may have moved a reshape past an op)
  why: str      # '' when same; else what the compiler made of it
  ran: tuple    # (kind, key) of each kernel the module alone runs


def check(kernel, executable, looped=False):
  """Whether `executable` (the kernel's module compiled alone, or with `looped` its
  loop: kernels.looped) runs `kernel` itself. Of a looped program, the kernels of the
  loop's body are judged (executed as often as the loop runs; the counter's increment
  left out), and none at all (`ran` empty) means the compiler hoisted the kernel out."""
  text = executable.hlo_modules()[0].to_string()
  ran = kernels_lib.kernels(text)
  if looped:
    module = hlo.parse(text)
    body = {i.name for loop in _instructions(module, 'while')
            for name in hlo.called(loop)['body'] for i in module.computations[name]}
    ran = [k for k in ran if k.name in body and k.result != 's32[]']
  pairs = tuple((k.kind, k.key) for k in ran)
  if len(ran) == 1 and ran[0].key == kernel.key:
    return Check(True, '', pairs)
  if len(ran) == 1 and ran[0].kind == kernel.kind and ran[0].ops == kernel.ops:
    return Check(True, '', pairs)
  kinds = ', '.join(f'{k.kind} ({"+".join(sorted(set(k.ops)))})' for k in ran) or 'nothing'
  return Check(False, f'alone it compiles to {len(ran)} kernel(s): {kinds}', pairs)


def _array(type_text, rng, device):
  dtype_name, dims = kernels_lib.shape_of(type_text)
  dtype = jax.numpy.dtype({'pred': 'bool', 'f32': 'float32', 'f16': 'float16',
                           'bf16': 'bfloat16', 'f64': 'float64', 's32': 'int32',
                           's64': 'int64', 's8': 'int8', 'u8': 'uint8', 'u32': 'uint32',
                           's16': 'int16', 'u16': 'uint16', 'u64': 'uint64'}[dtype_name])
  if dtype == np.bool_:
    value = rng.random(dims) < 0.5
  elif jax.numpy.issubdtype(dtype, jax.numpy.floating):
    value = rng.standard_normal(dims, dtype=np.float32).astype(dtype)
  else:  # indices: zeros are in range of every dimension
    value = np.zeros(dims, dtype)
  return jax.device_put(value, device)


def inputs(parameters, device=None, seed=0):
  """Arrays of the parameter types (floats standard normal, integers zero, booleans
  half true), on `device`."""
  device = device or jax.devices()[0]
  rng = np.random.default_rng(seed)
  return [_array(t, rng, device) for t in parameters]


def time_executable(executable, arguments, min_time_s=MIN_TIME_S, samples=None):
  """Timed calls of `executable` on `arguments` (the one timer, pipelined): the
  `timer.summarize` block of their seconds. The number of calls is `samples`, or what
  makes up `min_time_s` at the speed of the warm-up's slowest call, within the bounds."""
  def step(carry, _):
    return carry, executable.execute_sharded(arguments).disassemble_into_single_device_arrays()

  calls = itertools.repeat(None)
  if samples:
    return timer.summarize(timer.time_steps(step, None, calls, warmup_steps=1,
                                            timed_steps=samples)[2])
  _, _, first, _ = timer.time_steps(step, None, calls, warmup_steps=WARMUP, timed_steps=3)
  n = min(MAX_SAMPLES, max(MIN_SAMPLES, math.ceil(min_time_s / max(max(first), 1e-7))))
  _, _, samples, _ = timer.time_steps(step, None, calls, warmup_steps=1, timed_steps=n)
  return timer.summarize(samples)


def overhead(device=None):
  """The `timer.summarize` block of one call of the probe program (a scalar add):
  what a call costs beyond its kernel."""
  device = device or jax.devices()[0]
  executable = compile_module(_PROBE, device)
  return time_executable(executable, inputs(('f32[]', 'f32[]'), device))


def _per_execution(executable, arguments, min_time_s, limit_s=None):
  """timer.summarize of the seconds one iteration of a looped kernel takes: calls of
  N iterations, N grown until a call lasts about TARGET_CALL_S beyond an empty one,
  less the median call of 0 iterations (its dispatch and the copies in and out of
  the loop), over N. TooSlow when one iteration takes over `limit_s`."""
  def timed(trips, seconds, samples=None):
    count = jax.device_put(np.int32(trips), arguments[0].device)
    return time_executable(executable, [*arguments, count], seconds, samples)

  empty = timed(0, min_time_s / 4)['median']
  trips = PROBE_TRIPS
  while True:  # grown by the factor that would reach the target, between 2 and MAX_GROWTH
    sizing = timed(trips, 0, 1 if trips == 1 else SIZING_CALLS)
    spent = sizing['median'] - empty
    # At any N, not only the first: a noisy empty call can make a slow kernel look
    # free at N = 1, and a grown N of it then held a sampling run for minutes.
    if limit_s is not None and spent / trips > limit_s:
      raise TooSlow(f'one execution takes {spent / trips:.3g} s, over the limit of {limit_s:g} s: '
                    f'timed by {sizing["n"]} call(s) of {trips}',
                    timer.summarize([max(s - empty, 1e-9) / trips for s in sizing['samples']]))
    if spent >= TARGET_CALL_S / 2 or trips >= MAX_TRIPS:
      break
    factor = TARGET_CALL_S / spent if spent > 0 else MAX_GROWTH
    trips = min(MAX_TRIPS, trips * min(MAX_GROWTH, max(2, math.ceil(factor))))
  trips = int(min(MAX_TRIPS, max(1, round(trips * TARGET_CALL_S / max(spent, 1e-9)))))
  calls = timed(trips, min_time_s)['samples']
  # Floored at a nanosecond: a kernel faster than the empty call's spread is not free.
  return timer.summarize([max(s - empty, 1e-9) / trips for s in calls])


def measure(kernel, probe_median_s, device=None, min_time_s=MIN_TIME_S, limit_s=None):
  """(timer.summarize of the seconds one execution of `kernel` takes, Check: whether
  alone it compiles to the same kernel). Timed in a loop of its own (kernels.looped,
  _per_execution), as it runs inside a step; a kernel the loop would hoist (a fill)
  is timed by the call, less `probe_median_s` (the `overhead` probe's median), and
  its Check says so. Raises KernelError when its module does not compile alone, TooSlow
  (with what the calls that found it out measured) when one execution in its loop
  takes over `limit_s`."""
  device = device or jax.devices()[0]
  if kernel.parameters:
    text, parameters = kernels_lib.looped(kernel)
    executable = compile_module(text, device)
    result = check(kernel, executable, looped=True)
    if result.ran:  # the loop runs it, or what the compiler made of it, every iteration
      try:
        return (_per_execution(executable, inputs(parameters[:-1], device), min_time_s, limit_s),
                result)
      except TooSlow as e:
        e.check = result
        raise
  alone = compile_module(kernel.module, device)
  result = check(kernel, alone)
  summary = time_executable(alone, inputs(kernel.parameters, device), min_time_s)
  why = '; '.join(filter(None, (result.why, 'timed by the call: a loop would hoist it')))
  return (timer.summarize([max(s - probe_median_s, 1e-9) for s in summary['samples']]),
          dataclasses.replace(result, why=why))


# Past glibc's 32 MiB reuse threshold every byte of a fresh buffer is a page faulted
# in anew, so its cost is linear in its size (3.0-3.5 GB/s from 32 to 128 MiB here):
# a larger buffer is probed at this size and scaled, not written whole ten times over
# (a quarter of a batch-128 prediction's time went to those probes).
FRESH_LINEAR_FROM = 64 * 2**20


def fresh_memory(nbytes, probe_median_s, device=None, min_time_s=MIN_TIME_S):
  """Seconds a call spends allocating and first writing `nbytes` of new memory: a
  broadcast into a fresh result of that size, less `probe_median_s`."""
  device = device or jax.devices()[0]
  n = max(int(nbytes) // 4, 1)
  executable = compile_module(
      f'HloModule fresh\n\nENTRY %main (p: f32[]) -> f32[{n}] {{\n  %p = f32[] parameter(0)\n'
      f'  ROOT %b = f32[{n}] broadcast(%p), dimensions={{}}\n}}\n', device)
  summary = time_executable(executable, inputs(('f32[]',), device), min_time_s)
  return max(summary['median'] - probe_median_s, 0.0)
