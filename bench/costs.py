"""What a case costs: parameters, XLA's compiled cost and memory analyses, peaks."""

import resource
import sys

import jax
import numpy as np

# cost_analysis() keys we report; the rest are per-operand breakdowns
# ('bytes accessed0{}', 'utilization3{}', ...).
_XLA_KEYS = {'flops': 'flops', 'bytes accessed': 'bytes_accessed',
             'transcendentals': 'transcendentals'}

_MEMORY_FIELDS = {
    'argument_bytes': 'argument_size_in_bytes',
    'output_bytes': 'output_size_in_bytes',
    'alias_bytes': 'alias_size_in_bytes',
    'temp_bytes': 'temp_size_in_bytes',
    'generated_code_bytes': 'generated_code_size_in_bytes',
}


def _size(tree):
  return int(sum(np.prod(x.shape, dtype=np.int64) for x in jax.tree_util.tree_leaves(tree)))


def param_counts(params, non_trainable):
  """{'total', 'trainable', 'non_trainable'} element counts.

  `non_trainable` holds the variables no optimizer updates (BatchNorm moving
  statistics), which Keras also counts as non-trainable parameters.
  """
  trainable, fixed = _size(params), _size(non_trainable)
  return {'total': trainable + fixed, 'trainable': trainable, 'non_trainable': fixed}


def xla_costs(compiled):
  """XLA's flops, bytes accessed and transcendentals of the compiled program.

  All None when the backend gives no cost analysis. XLA omits a count that is
  zero (a forward pass without exp has no 'transcendentals' key): recorded as 0.
  """
  analysis = compiled.cost_analysis()
  if isinstance(analysis, (list, tuple)):  # older jax: one dict per program
    analysis = analysis[0] if analysis else None
  if not analysis:
    return {name: None for name in _XLA_KEYS.values()}
  return {name: float(analysis.get(key, 0.0)) for key, name in _XLA_KEYS.items()}


def compiled_memory(compiled):
  """memory_analysis() of the compiled program in bytes; None where unavailable."""
  stats = compiled.memory_analysis()
  return {name: (None if stats is None else int(getattr(stats, attr)))
          for name, attr in _MEMORY_FIELDS.items()}


def device_peak_bytes(devices):
  """Largest `peak_bytes_in_use` over `devices`, or None where the backend keeps no
  memory statistics (CPU). It is the peak since the process started."""
  peaks = []
  for device in devices:
    stats = device.memory_stats()
    if not stats or 'peak_bytes_in_use' not in stats:
      return None
    peaks.append(int(stats['peak_bytes_in_use']))
  return max(peaks)


def host_peak_rss_bytes():
  """Peak resident set size of this process so far (ru_maxrss is KiB on Linux)."""
  peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
  return int(peak if sys.platform == 'darwin' else peak * 1024)
