"""What the device can do: achievable matmul FLOP/s and copy bandwidth, measured.

The roofline predictor (bench/analysis.py) divides a case's XLA FLOPs and bytes
by these ceilings, so they are measured on the same device in the same run as
the cases, not taken from a datasheet: a datasheet peak is rarely reached, and
on a shared CPU the achievable one changes from machine to machine.

Both measurements grow their problem until one call takes at least
`_MIN_CALL_S`, so dispatch overhead is negligible on a fast GPU and a slow CPU
is not kept busy for long, then report the best of `_REPEATS` calls: a
ceiling is what the device reached, and slower calls are interference.
"""

import functools
import time

import jax
import jax.numpy as jnp

_MIN_CALL_S = 0.01
_REPEATS = 5
# Square matmul sizes tried, doubling from the first; the largest fits any GPU.
_MATMUL_SIZES = (256, 8192)
# Copy sizes in bytes of the source array. The smallest already exceeds the
# last-level cache of common CPUs and GPUs (H100/H200 L2: 50 MB), so the copy
# streams from memory rather than from cache.
_COPY_BYTES = (64 << 20, 1 << 30)


def _call_s(fn, args):
  t0 = time.perf_counter()
  jax.block_until_ready(fn(*args))
  return time.perf_counter() - t0


def _grow(make, sizes, factor):
  """(size, best time of `_REPEATS` calls) at the first size, from sizes[0] multiplied
  by `factor` up to sizes[1], whose call takes at least _MIN_CALL_S (or the largest).

  `make(size)` returns (jitted function, *arguments). Each size is compiled and
  warmed up by one call before a call is timed.
  """
  size = sizes[0]
  while True:
    fn, *args = make(size)
    _call_s(fn, args)
    if _call_s(fn, args) >= _MIN_CALL_S or size * factor > sizes[1]:
      return size, min(_call_s(fn, args) for _ in range(_REPEATS))
    size *= factor


def matmul_flops_per_s(dtype, device):
  """(FLOP/s of an n x n matmul in `dtype`, n): 2 n^3 FLOPs per call."""
  def make(n):
    keys = jax.random.split(jax.random.key(0))
    a, b = (jax.device_put(jax.random.normal(k, (n, n), dtype), device) for k in keys)
    return jax.jit(jnp.matmul), a, b
  n, seconds = _grow(make, _MATMUL_SIZES, 2)
  return 2 * n**3 / seconds, n


def copy_bytes_per_s(device):
  """(bytes/s of a float32 array copied (read once, written once), bytes of the array).

  x + 1 rather than a bare copy, which XLA may elide or alias.
  """
  def make(nbytes):
    x = jax.device_put(jnp.zeros(nbytes // 4, jnp.float32), device)
    return jax.jit(lambda x: x + 1), x
  nbytes, seconds = _grow(make, _COPY_BYTES, 2)
  return 2 * nbytes / seconds, nbytes


def measure(dtypes, device=None):
  """The report's environment.peaks block for `device` (this process's first by
  default): matmul FLOP/s per dtype in `dtypes`, and copy bandwidth. Measured
  once per process, device and set of dtypes (one to two seconds on a 2-core CPU)."""
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
