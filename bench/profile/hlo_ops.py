"""What each executed op of a compiled program is: category, Flax layer, phase.

A profiler trace names the ops it timed by their HLO instruction name
(`ynn_fusion.3`, `convolution.1`, `wrapped_reduce-window`). `ops` reads the
compiled program's HLO text (bench/measure/hlo.py parses it) and gives, for every
instruction that runs as an op of its own (not one fused into another):

  * its category: a convolution (forward, input-gradient or kernel-gradient), a
    dot, pooling (reduce-window, select-and-scatter), gather/scatter, a
    reduction, data movement (copy, transpose, pad, concatenate...), a
    collective, a host transfer, or an elementwise fusion;
  * its Flax layer, from the `op_name` metadata JAX writes
    (`jit(train_step)/transpose(jvp(SeedCNN))/SeedCNN.features/conv3/...` is
    layer `conv3` in the backward pass). XLA's own instructions carry no
    metadata (the iotas and index reductions a max-pool gradient is expanded
    into on a CPU): they take the layer of the nearest instruction that uses
    their result and has one;
  * its FLOPs and bytes, as hlo.flops and hlo.accessed_bytes count them.
"""

import collections
import dataclasses
import re

from bench.measure import hlo

# Categories, in the order tables list them.
CONV_FORWARD = 'convolution forward'
CONV_INPUT_GRAD = 'convolution input-gradient'
CONV_KERNEL_GRAD = 'convolution kernel-gradient'
DOT = 'dot (matmul)'
POOLING = 'pooling (reduce-window, select-and-scatter)'
GATHER_SCATTER = 'gather / scatter'
REDUCTION = 'reduction'
ELEMENTWISE = 'elementwise fusion'
DATA_MOVEMENT = 'copy / transpose / pad / concatenate'
COLLECTIVE = 'collective'
HOST_TRANSFER = 'host transfer'
OTHER = 'other'
# Not an op's category: the time of a profiled step in which no op ran (bench/profile/trace.py).
IDLE = 'idle (no op running)'
CATEGORIES = (CONV_FORWARD, CONV_INPUT_GRAD, CONV_KERNEL_GRAD, DOT, POOLING, GATHER_SCATTER,
              REDUCTION, ELEMENTWISE, DATA_MOVEMENT, COLLECTIVE, HOST_TRANSFER, OTHER)

# Phases of a train step, from the op_name's transformation prefix.
FORWARD, BACKWARD, UPDATE = 'forward', 'backward', 'update'

# Layers of ops outside the model.
LOSS = '(loss)'
OPTIMIZER = '(optimizer update)'
OUTSIDE = '(outside the model)'
UNNAMED = '(no metadata)'

# op_name primitives of pooling layers: their ops are pooling, whatever XLA made of them.
_POOLING_PRIMITIVES = ('reduce_window', 'select_and_scatter', 'max_pool', 'avg_pool')


def _scope(op_name):
  """(whether a jvp is in it, the model's name, the Flax path under the model) of an
  op_name; the model is None for an op outside any model."""
  segments = op_name.split('/')
  for i, segment in enumerate(segments):
    found = re.fullmatch(r'(?:transpose\()?jvp\((.*?)\)+', segment)
    if found:
      model, rest = found.group(1), segments[i + 1:-1]
      if not model or '(' in model:  # jvp() or jvp(jit(_take)): the loss, not a model
        model = None
      break
  else:  # no differentiation: the first plain scope after the jit is the model
    rest = [s for s in segments[1:-1] if '(' not in s]
    model, rest = (rest[0], rest[1:]) if rest else (None, [])
    found = None
  # Function scopes (jit(relu)) and method scopes (SeedCNN.features) are not layers;
  # a BatchNorm repeats its own name.
  path = []
  for s in rest:
    if '(' not in s and '.' not in s and (not path or path[-1] != s):
      path.append(s)
  return found is not None, model, path


def _phase(op_name, training):
  if 'transpose(jvp(' in op_name:
    return BACKWARD
  if 'jvp(' in op_name or not training:
    return FORWARD
  return UPDATE


def layer(op_name, training=True):
  """The Flax module path of an op_name: its name-stack scopes under the model,
  without function scopes (`jit(relu)`), method scopes (`SeedCNN.features`) and
  the primitive at its end. An op of the model outside any submodule is the model
  itself; in a train step, an op outside the model is LOSS (differentiated) or
  OPTIMIZER; in a forward program, OUTSIDE."""
  if not op_name:
    return UNNAMED
  differentiated, model, path = _scope(op_name)
  if model is None:
    return LOSS if differentiated else (OPTIMIZER if training else OUTSIDE)
  return '/'.join(path) or model


def _primitive(op_name):
  return op_name.rsplit('/', 1)[-1] if op_name else ''


def _dims(type_text):
  """An array's dimensions in some canonical order: XLA may lay a convolution's
  operands and result out in any order of their dimensions (`dim_labels`)."""
  return tuple(sorted(hlo.arrays(type_text)[0][1]))


def _is_kernel_gradient(instruction, kernels, activations):
  """Whether a backward convolution computes a kernel's gradient rather than its
  input's. Its result has the dimensions of a kernel of its layer; or, failing
  that, not those of an activation its layer's forward convolutions read, which
  an input gradient has. The second test catches what XLA makes of a depthwise
  kernel's gradient on a CPU: a full convolution over every pair of channels,
  (C, k, k, C) for a (k, k, C, 1) kernel, whose diagonal is then kept."""
  dims = _dims(instruction.type)
  if any(tuple(sorted(kernel)) == dims for kernel in kernels):
    return True
  return bool(activations) and dims not in activations


def _category(module, instruction, fused, op_name, kernels, activations):
  opcodes = {instruction.opcode} | {i.opcode for i in fused}
  primitive = _primitive(op_name)
  if 'convolution' in opcodes:
    conv = _convolution(instruction, fused)
    if 'transpose(jvp(' not in (conv.op_name or op_name):
      return CONV_FORWARD
    return (CONV_KERNEL_GRAD if _is_kernel_gradient(conv, kernels, activations)
            else CONV_INPUT_GRAD)
  if 'dot' in opcodes:
    return DOT
  if any(op.startswith(c) for op in opcodes for c in hlo.COLLECTIVE_OPS):
    return COLLECTIVE
  if opcodes & hlo.HOST_OPS:
    return HOST_TRANSFER
  if ({'reduce-window', 'select-and-scatter'} & opcodes
      or any(p in primitive for p in _POOLING_PRIMITIVES)):
    return POOLING
  if {'scatter', 'gather'} & opcodes:
    return GATHER_SCATTER
  if 'reduce' in opcodes:
    return REDUCTION
  if opcodes <= hlo.MOVEMENT_OPS:
    return DATA_MOVEMENT
  if instruction.opcode == 'fusion' or opcodes & (hlo.ELEMENTWISE_OPS | hlo.TRANSCENDENTAL_OPS):
    return ELEMENTWISE
  return OTHER


def _inherited_op_names(module, instructions):
  """op_name of each instruction, or for one without, that of the nearest user
  (breadth first) that has one, else of its nearest operand that has one."""
  users = collections.defaultdict(list)
  for i in instructions:
    for operand in i.operands:
      users[operand].append(i.name)
  own = {i.name: i.op_name or _root_op_name(module, i) for i in instructions}
  by_name = {i.name: i for i in instructions}

  def search(start, neighbours):
    seen, queue = {start}, collections.deque([start])
    while queue:
      name = queue.popleft()
      if own.get(name):
        return own[name]
      for n in neighbours(name):
        if n not in seen:
          seen.add(n)
          queue.append(n)
    return ''

  return {name: op_name or search(name, lambda n: users[n])
          or search(name, lambda n: by_name[n].operands if n in by_name else [])
          for name, op_name in own.items()}


def _root_op_name(module, instruction):
  """A fusion's op_name: its own, else its fused computation's root's."""
  for name in hlo.called(instruction).get('calls', []) if instruction.opcode == 'fusion' else ():
    body = module.computations.get(name, [])
    named = [i.op_name for i in body if i.op_name]
    if named:
      return named[-1]
  return ''


def _convolution(instruction, fused):
  """The convolution an op runs (itself, or the first it fuses), or None."""
  return next((i for i in [instruction] + fused if i.opcode == 'convolution'), None)


@dataclasses.dataclass
class Op:
  """What an executed HLO instruction is."""
  name: str
  opcode: str
  category: str
  layer: str
  phase: str
  flops: int
  bytes: int
  inputs: tuple = ()  # the executed ops whose results it reads (through tuples and bitcasts)
  executions: int = 1  # per run of the program (hlo.executions: loop bodies run more)


def _inputs(instruction, by_name):
  """Names of the executed instructions `instruction` reads, looking through the free
  ones (get-tuple-element, bitcast, tuple); parameters and constants are no op's."""
  out, stack, seen = [], list(instruction.operands), set()
  while stack:
    name = stack.pop()
    if name in seen or name not in by_name:
      continue
    seen.add(name)
    source = by_name[name]
    if source.opcode in ('parameter', 'constant'):
      continue
    if source.opcode in hlo.FREE_OPS:
      stack += source.operands
    else:
      out.append(name)
  return tuple(sorted(out))


def ops(text, kernels=None):
  """{instruction name: Op} for every instruction of the program that runs as an op
  of its own: those of the entry computation and of the computations it runs
  (loop bodies, branches, calls), not those fused into another.

  `kernels` maps a layer path to the shapes of its parameters (the kernels among
  them tell a kernel-gradient convolution from an input-gradient one)."""
  module = hlo.parse(text)
  kernels = kernels or {}
  # A train step differentiates; a forward or eval program has no jvp in any op_name.
  training = 'jvp(' in text
  shapes = hlo.types(module)
  inner = set()  # fused computations and reducers: not executed as ops of their own
  for instructions in module.computations.values():
    for i in instructions:
      called = hlo.called(i)
      inner.update(called.get('to_apply', []))
      if i.opcode == 'fusion':
        inner.update(called.get('calls', []))
  runs = hlo.executions(module)
  # (instruction, what it fuses, its op_name, its layer, its computation, its runs)
  executed = []
  for name, instructions in module.computations.items():
    if name not in inner:
      op_names = _inherited_op_names(module, instructions)
      by_name = {i.name: i for i in instructions}
      executed += [(i, hlo.fused(module, i), op_names[i.name],
                    layer(op_names[i.name], training), by_name, runs.get(name, 1))
                   for i in instructions]
  # A convolution's layer is its own op_name's where it has one: a fusion takes the
  # op_name of its root, which may be a later layer's or the loss's.
  conv_layers = {i.name: layer(conv.op_name, training) if conv.op_name else where
                 for i, fused, _, where, _, _ in executed
                 if (conv := _convolution(i, fused)) is not None}
  # The activations each layer's forward convolutions read (the operands that are not
  # a kernel: XLA may put either first): an input gradient has the shape of one.
  activations = collections.defaultdict(set)
  for i, fused, op_name, _, _, _ in executed:
    conv = _convolution(i, fused)
    if conv is not None and _phase(conv.op_name or op_name, training) == FORWARD:
      where = conv_layers[i.name]
      layer_kernels = {tuple(sorted(k)) for k in kernels.get(where, ())}
      activations[where].update(d for d in map(_dims, map(shapes.get, conv.operands))
                                if d not in layer_kernels)
  out = {}
  for i, fused, op_name, where, by_name, executions in executed:
    conv_layer = conv_layers.get(i.name, where)
    out[i.name] = Op(
        name=i.name, opcode=i.opcode,
        category=_category(module, i, fused, op_name, kernels.get(conv_layer, ()),
                           activations.get(conv_layer, set())),
        layer=where, phase=_phase(op_name, training),
        flops=hlo.flops(module, i, shapes), bytes=hlo.accessed_bytes(i, shapes),
        inputs=_inputs(i, by_name), executions=executions)
  return out
