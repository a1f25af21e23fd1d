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

Each call of a kernel alone also pays the runtime's dispatch of an executable,
which a kernel inside a step does not: `overhead` times the same call of a program
whose one kernel does nothing measurable (a scalar add), and `measure` subtracts
its median.
"""

import dataclasses
import itertools
import math

import jax
from jax._src.lib import xla_client  # the one supported path from HLO text to a compile
import numpy as np

from bench.measure import kernels as kernels_lib
from bench.measure import timer

# How long one kernel's timed calls last at the least (seconds), and their bounds.
MIN_TIME_S = 0.05
MIN_SAMPLES, MAX_SAMPLES = 10, 400
WARMUP = 3
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


def compiled_kernels(executable):
  """[Kernel] the executable runs."""
  return kernels_lib.kernels(executable.hlo_modules()[0].to_string())


@dataclasses.dataclass(frozen=True)
class Check:
  same: bool    # alone it compiles to one kernel of the same signature, or of the same
                # kind and ops (the simplifier may have moved a reshape past an op)
  why: str      # '' when same; else what the compiler made of it
  ran: tuple    # (kind, key) of each kernel the module alone runs


def check(kernel, executable):
  """Whether `executable` (the kernel's module compiled alone) runs `kernel` itself."""
  ran = compiled_kernels(executable)
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


def time_executable(executable, arguments, min_time_s=MIN_TIME_S):
  """Timed calls of `executable` on `arguments` (the one timer, pipelined): the
  `timer.summarize` block of their seconds. The number of calls is what makes up
  `min_time_s` at the speed of the warm-up's slowest call, within the bounds."""
  def step(carry, _):
    return carry, executable.execute_sharded(arguments).disassemble_into_single_device_arrays()

  calls = itertools.repeat(None)
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


def measure(kernel, probe_median_s, device=None, min_time_s=MIN_TIME_S):
  """(summary of the kernel's seconds per call less the probe's median, floored at
  a nanosecond; Check). Raises KernelError when its module does not compile alone."""
  device = device or jax.devices()[0]
  executable = compile_module(kernel.module, device)
  result = check(kernel, executable)
  summary = time_executable(executable, inputs(kernel.parameters, device), min_time_s)
  # Floored at a nanosecond: a kernel faster than the probe's spread is not free.
  return timer.summarize([max(s - probe_median_s, 1e-9) for s in summary['samples']]), result
