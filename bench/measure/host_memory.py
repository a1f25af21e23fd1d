"""The host memory a case's steps take, measured in the process that runs them.

On a CPU the device's memory is the process's: a step's buffers are the
process's resident pages. ru_maxrss only ever grows, so after the first large
case it says nothing of the next; Linux can reset its resident high-water mark
(VmHWM: writing 5 to /proc/self/clear_refs, Linux 4.0 and later). A case's step
peak is then

  VmHWM over its steps  -  min(resident before the case, resident after it)

with freed heap handed back to the kernel (glibc's malloc_trim) before each
reading and before the reset, so that pages a compiler or an earlier case left
behind count in neither; less the file-backed pages that came in meanwhile (the
runtime's code, paged in on first use, is no buffer). Measured on the
param_vs_runtime study's cases run one after another in one process: the same
case twice 308 and 347 MiB (resnet18), 8 MiB for the seed MLP whose XLA buffers
are 8 MiB; small cases read within some 30 MiB of what they hold.

Null off Linux or where /proc/self/clear_refs cannot be written (some sandboxes).
"""

import ctypes
import ctypes.util
import gc
import re

_STATUS = '/proc/self/status'
_CLEAR_REFS = '/proc/self/clear_refs'
_RESET_PEAK = '5'  # clear_refs: reset the peak resident set size
# Pages the process may touch between the reset and reading it back.
_RESET_SLACK = 4 * 2 ** 20


def _libc_trim():
  """glibc's malloc_trim(0), or a no-op on another C library."""
  try:
    trim = ctypes.CDLL(ctypes.util.find_library('c') or 'libc.so.6').malloc_trim
  except (OSError, AttributeError):
    return lambda: None
  return lambda: trim(0)


_trim = _libc_trim()


def _status():
  """{VmRSS, VmHWM, RssFile} of this process in bytes."""
  with open(_STATUS, encoding='ascii') as f:
    text = f.read()
  return {key: int(re.search(rf'^{key}:\s+(\d+) kB', text, re.M).group(1)) * 1024
          for key in ('VmRSS', 'VmHWM', 'RssFile')}


def _settled():
  """The resident status once garbage is collected and freed heap handed back."""
  gc.collect()
  _trim()
  return _status()


def _reset_peak():
  """Resets VmHWM to the resident size now; OSError where the kernel does not (a write
  it accepts and ignores included: the mark must then sit at the resident size)."""
  with open(_CLEAR_REFS, 'w', encoding='ascii') as f:
    f.write(_RESET_PEAK)
  status = _status()
  if status['VmHWM'] > status['VmRSS'] + _RESET_SLACK:
    raise OSError(f'{_CLEAR_REFS} did not reset the peak')


class StepPeak:
  """Measures the resident peak of one case's steps (module docstring).

  Make one before the case builds anything, call `start()` once it is compiled and
  `stop()` after its steps, and `bytes()` once everything it built is released.
  Every method does nothing (and `bytes()` is None) where the kernel offers no reset.
  """

  def __init__(self):
    try:
      self._before = _settled()
      _reset_peak()
    except (OSError, AttributeError):
      self._before = None
    self._peak = None

  def start(self):
    """The steps start: what the compile left behind is handed back, the peak reset."""
    if self._before is not None:
      _settled()
      _reset_peak()

  def stop(self):
    """The steps are done: their peak is read (the profile's extra steps come after)."""
    if self._before is not None:
      self._peak = _status()

  def bytes(self):
    """The steps' peak over what the process held without the case; None if unmeasured."""
    if self._before is None or self._peak is None:
      return None
    after = _settled()
    paged_in = max(self._peak['RssFile'] - self._before['RssFile'], 0)
    return max(self._peak['VmHWM'] - min(self._before['VmRSS'], after['VmRSS']) - paged_in, 0)


def warm_up():
  """Compiles and runs a small convolution's gradient, so that what the runtime sets
  up on first use (its thread pools, the compiler's state) is in place before the
  first case's peak is measured: otherwise it counts in that case's alone (measured:
  the seed MLP first in a process read 38 MiB, later 8 MiB)."""
  import jax  # pylint: disable=import-outside-toplevel  (the rest of this module needs none)
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel

  def loss(kernel, images):
    features = jax.lax.conv_general_dilated(images, kernel, (1, 1), 'SAME',
                                            dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
    return jnp.mean(jnp.tanh(features.reshape(images.shape[0], -1) @ jnp.ones((8 * 8 * 4, 2))))

  jax.block_until_ready(jax.jit(jax.grad(loss))(jnp.ones((3, 3, 3, 4)), jnp.ones((2, 8, 8, 3))))
