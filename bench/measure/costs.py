"""What a case costs: parameters, XLA's compiled cost and memory analyses, peaks."""

import resource
import sys

import jax
import numpy as np

from bench.measure import hlo

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


# Asynchronous collectives are split into -start and -done; the -done's type is the
# result, so only it is counted.
_COLLECTIVES = frozenset((*hlo.COLLECTIVE_OPS, *(f'{op}-done' for op in hlo.COLLECTIVE_OPS)))


def collectives(compiled):
  """{'collective_bytes', 'collective_ops'} of one device's compiled program: the
  number of cross-device collectives in its optimised HLO (hlo.parse: every
  computation, each written once) and the bytes of their results (for an
  all-reduce, the gradients it sums). XLA's cost analysis does not count them.
  None where the backend gives no HLO text."""
  try:
    text = compiled.as_text()
  except Exception:  # pylint: disable=broad-except  (a backend without HLO text)
    text = None
  if not text:
    return {'collective_bytes': None, 'collective_ops': None}
  found = [i for instructions in hlo.parse(text).computations.values() for i in instructions
           if i.opcode in _COLLECTIVES]
  return {'collective_bytes': sum(hlo.nbytes(i.type) for i in found),
          'collective_ops': len(found)}


def model_flops(fn, *args, axis_env=None):
  """Analytic FLOPs of one call of `fn(*args)` (arrays or ShapeDtypeStructs): two per
  multiply-add of every matrix product and convolution in its jaxpr, the
  convention of MFU (PaLM, MLPerf). The jaxpr is what the code asks for, before
  XLA: no rematerialisation, fusion or layout work is counted, nor elementwise
  ops. Convolution taps over padding count (XLA's own figure skips them); those
  over the zeros a strided convolution's input gradient dilates its input with do
  not, so each gradient costs about what the forward does (exactly, where the
  stride divides the input). A pmap step is traced per device with `axis_env`
  [(axis, devices)]. Tracing only.
  """
  return _jaxpr_flops(jax.make_jaxpr(fn, axis_env=axis_env)(*args).jaxpr)


def _jaxpr_flops(jaxpr):
  total = 0
  for eqn in jaxpr.eqns:
    name = eqn.primitive.name
    if name in ('dot_general', 'conv_general_dilated'):
      out = int(np.prod(eqn.outvars[0].aval.shape, dtype=np.int64))
      operand = eqn.invars[0 if name == 'dot_general' else 1].aval.shape
      holes = 1
      if name == 'dot_general':
        (contracting, _), _ = eqn.params['dimension_numbers']
      else:  # every output sums the kernel's input features x its taps, whatever the grouping
        contracting = eqn.params['dimension_numbers'].rhs_spec[1:]
        # A strided convolution's input gradient convolves the output gradient dilated by
        # the stride: of every s x s taps, one reads a value and the rest zeros between.
        holes = int(np.prod(eqn.params['lhs_dilation']))
      total += 2 * out * int(np.prod([operand[d] for d in contracting], dtype=np.int64)) // holes
      continue
    inner = [_jaxpr_flops(j) for j in _subjaxprs(eqn.params)]
    if name == 'cond':  # one branch runs: the costliest bounds it
      total += max(inner, default=0)
    else:  # a scan body runs `length` times; a while body's trips are unknown: once
      total += sum(inner) * eqn.params.get('length', 1) if name == 'scan' else sum(inner)
  return total


def _subjaxprs(params):
  for value in params.values():
    for v in value if isinstance(value, (tuple, list)) else (value,):
      if hasattr(v, 'eqns'):
        yield v
      elif hasattr(getattr(v, 'jaxpr', None), 'eqns'):  # a ClosedJaxpr
        yield v.jaxpr


def activation_bytes(model, variables, images):
  """Bytes of the outputs of `model`'s leaf layers (Flax modules that call no other
  module: Dense, Conv, BatchNorm, Dropout...) in one inference forward pass on
  `images`, in the dtype they are computed in. Functions that are not modules
  (activations, pooling) are not counted. Shapes only: nothing is computed.

  What a train step keeps for its backward pass, to within those functions'
  outputs; the compiled program's temp_bytes is the allocator's view of the same.
  """
  return int(sum(np.prod(x.shape, dtype=np.int64) * x.dtype.itemsize
                 for x in jax.tree_util.tree_leaves(leaf_outputs(model, variables, images))))


def leaf_outputs(model, variables, images):
  """The shapes (jax.ShapeDtypeStruct) of `model`'s leaf layer outputs on `images`: a
  list with one entry (the outputs of its calls) per leaf layer (see `activation_bytes`)."""
  def forward(variables, images):
    _, state = model.apply(variables, images, train=False, capture_intermediates=True,
                           mutable=['intermediates'])
    return state['intermediates']

  def leaves(node):
    if set(node) == {'__call__'}:
      return [node['__call__']]
    return [leaf for key, child in node.items() if key != '__call__' for leaf in leaves(child)]

  return leaves(jax.eval_shape(forward, variables, images))


def compiled_memory(compiled):
  """memory_analysis() of the compiled program in bytes; None where unavailable."""
  stats = compiled.memory_analysis()
  return {name: (None if stats is None else int(getattr(stats, attr)))
          for name, attr in _MEMORY_FIELDS.items()}


def device_peak_bytes(devices):
  """`peak_bytes_in_use` of each of `devices` (this process's), or None where the
  backend keeps no memory statistics (CPU). It is the peak since the process
  started: JAX has no way to reset it between cases."""
  peaks = []
  for device in devices:
    stats = device.memory_stats()
    if not stats or 'peak_bytes_in_use' not in stats:
      return None
    peaks.append(int(stats['peak_bytes_in_use']))
  return peaks


def host_peak_rss_bytes():
  """Peak resident set size of this process so far (ru_maxrss is KiB on Linux)."""
  peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
  return int(peak if sys.platform == 'darwin' else peak * 1024)
