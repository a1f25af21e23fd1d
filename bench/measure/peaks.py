"""What the device can do: achievable matmul FLOP/s and copy bandwidth, measured.

The roofline predictor (bench/results/analysis.py) divides a case's XLA FLOPs and bytes
by these ceilings, so they are measured on the same device in the same run as
the cases, not taken from a datasheet: a datasheet peak is rarely reached, and
on a shared CPU the achievable one changes from machine to machine.

The runner measures them after the last case: device and host memory peaks
count from process start (JAX has no reset), and the copy's gigabyte on a fast
GPU would otherwise show up as every case's peak.

Both measurements grow their problem until one call takes at least
`_MIN_CALL_S` (or the size cap is reached), then time enough back-to-back calls
to last that long, so dispatch overhead is negligible even where the largest
problem takes microseconds, and report the best of `_REPEATS` such timings: a
ceiling is what the device reached, and slower timings are interference.
"""

import functools
import math
import re
import time

import jax
import jax.numpy as jnp

_MIN_CALL_S = 0.01
_REPEATS = 5
# Square matmul sizes tried, doubling from the first; the largest fits any GPU.
_MATMUL_SIZES = (256, 8192)
# Copy sizes in bytes of the array. The smallest already exceeds the last-level
# cache of common CPUs and GPUs (H100/H200 L2: 50 MB), so the copy streams from
# memory rather than from cache.
_COPY_BYTES = (64 << 20, 1 << 30)

_T = 1e12


def _tensor_cores(half, tf32):
  """An NVIDIA Ampere-or-newer row: bfloat16 and float16 share one tensor-core rate,
  and float32 runs as TF32 (XLA's default for float32 matmuls and convolutions
  there); in TFLOP/s."""
  return {'bfloat16': half * _T, 'float16': half * _T, 'float32': tf32 * _T}


# H200 and H100 list the same rates per form factor.
_HOPPER_SXM, _HOPPER_NVL = _tensor_cores(989, 494), _tensor_cores(835, 418)
# Dense (no structured sparsity) peak FLOP/s of one device, per computation dtype, from
# the vendors' datasheets: (pattern matched against jax's device_kind, the device
# and its source, {dtype: FLOP/s}). The first match wins. V100 has no bfloat16 and
# TPUs list bfloat16 only: a dtype missing from its row has no peak, and no MFU. A
# jax device on TPU v2/v3 is one core, half a chip.
DATASHEET = (
    (r'H200 NVL', 'NVIDIA H200 NVL (H200 datasheet, 2024)', _HOPPER_NVL),
    (r'H200', 'NVIDIA H200 SXM (H200 datasheet, 2024)', _HOPPER_SXM),
    (r'H100 NVL', 'NVIDIA H100 NVL (H100 datasheet, 2023)', _HOPPER_NVL),
    (r'H100.*PCIe', 'NVIDIA H100 PCIe (H100 datasheet, 2023)', _tensor_cores(756, 378)),
    (r'H100', 'NVIDIA H100 SXM (H100 datasheet, 2023)', _HOPPER_SXM),
    # 40 and 80 GB, SXM4 and PCIe: the same rates.
    (r'A100', 'NVIDIA A100 (A100 datasheet, 2021)', _tensor_cores(312, 156)),
    (r'\bL4\b', 'NVIDIA L4 (L4 datasheet, 2023)', _tensor_cores(121, 60)),
    (r'V100.*PCIE', 'NVIDIA V100 PCIe (V100 datasheet, 2020)',
     {'float16': 112 * _T, 'float32': 14 * _T}),
    (r'V100', 'NVIDIA V100 SXM2 (V100 datasheet, 2020)',
     {'float16': 125 * _T, 'float32': 15.7 * _T}),
    (r'TPU v6 lite', 'TPU v6e (Google Cloud TPU docs)', {'bfloat16': 918 * _T}),
    (r'TPU v5 lite', 'TPU v5e (Google Cloud TPU docs)', {'bfloat16': 197 * _T}),
    (r'TPU v5', 'TPU v5p (Google Cloud TPU docs)', {'bfloat16': 459 * _T}),
    (r'TPU v4', 'TPU v4 (Google Cloud TPU docs)', {'bfloat16': 275 * _T}),
    (r'TPU v3', 'TPU v3, one core (Google Cloud TPU docs: 123 per chip)',
     {'bfloat16': 61.5 * _T}),
)


def datasheet(device_kind, dtype):
  """(dense peak FLOP/s of one `device_kind` device in `dtype`, where the figure comes
  from), or (None, why there is none): never a guess for a device not in DATASHEET."""
  for pattern, source, peaks in DATASHEET:
    if re.search(pattern, device_kind or ''):
      if dtype in peaks:
        return peaks[dtype], source
      return None, f'{source} lists no {dtype} rate'
  return None, f'unknown device {device_kind!r}: no datasheet peak'


def _seconds_per_call(call, calls):
  """Mean seconds per call of `calls` calls of `call` dispatched back to back."""
  t0 = time.perf_counter()
  for _ in range(calls):
    out = call()
  jax.block_until_ready(out)
  return (time.perf_counter() - t0) / calls


def _grow(make, sizes, factor):
  """(size, best seconds per call over `_REPEATS` timings) at the first size, from
  sizes[0] multiplied by `factor` up to sizes[1], whose call takes at least
  _MIN_CALL_S (or the largest, timed over as many calls as make _MIN_CALL_S).

  `make(size)` returns a function that dispatches one call and returns its
  result. Each size is compiled and warmed up by one call before a call is timed.
  """
  size = sizes[0]
  while True:
    call = make(size)
    _seconds_per_call(call, 1)
    seconds = _seconds_per_call(call, 1)
    if seconds >= _MIN_CALL_S or size * factor > sizes[1]:
      calls = math.ceil(_MIN_CALL_S / max(seconds, 1e-9))
      return size, min(_seconds_per_call(call, calls) for _ in range(_REPEATS))
    size *= factor


def matmul_flops_per_s(dtype, device):
  """(FLOP/s of an n x n matmul in `dtype`, n): 2 n^3 FLOPs per call."""
  def make(n):
    keys = jax.random.split(jax.random.key(0))
    a, b = (jax.device_put(jax.random.normal(k, (n, n), dtype), device) for k in keys)
    matmul = jax.jit(jnp.matmul)
    return lambda: matmul(a, b)
  n, seconds = _grow(make, _MATMUL_SIZES, 2)
  return 2 * n**3 / seconds, n


def copy_bytes_per_s(device):
  """(bytes/s of a float32 array read and written once in place, bytes of the array).

  x + 1 rather than a bare copy, which XLA may elide, and in place (the input is
  donated): a fresh output buffer per call costs page faults on a CPU, which
  took 8x longer than the copy itself on a 2-core VM.
  """
  add_one = jax.jit(lambda x: x + 1, donate_argnums=0)

  def make(nbytes):
    state = [jax.device_put(jnp.zeros(nbytes // 4, jnp.float32), device)]

    def call():
      state[0] = add_one(state[0])
      return state[0]
    return call
  nbytes, seconds = _grow(make, _COPY_BYTES, 2)
  return 2 * nbytes / seconds, nbytes


def measure(dtypes, device=None):
  """The report's environment.peaks block for `device` (this process's first by
  default): matmul FLOP/s per dtype in `dtypes`, and copy bandwidth. Measured
  once per process, device and set of dtypes (one to three seconds on a 2-core CPU)."""
  return _measure(tuple(sorted(set(dtypes))), device or jax.local_devices()[0])


@functools.lru_cache(maxsize=None)
def _measure(dtypes, device):
  t0 = time.perf_counter()
  flops, sizes = {}, {}
  for dtype in dtypes:
    flops[dtype], sizes[dtype] = matmul_flops_per_s(jnp.dtype(dtype), device)
  bandwidth, nbytes = copy_bytes_per_s(device)
  return {'device': f'{device.platform}:{device.id} {device.device_kind}',
          'matmul_flops_per_s': flops, 'matmul_size': sizes, 'copy_bytes_per_s': bandwidth,
          'copy_bytes': nbytes, 'repeats': _REPEATS, 'seconds': time.perf_counter() - t0}
