"""A compiled program's optimised HLO, read for what each executed op is.

A profiler trace names the ops it timed by their HLO instruction name
(`ynn_fusion.3`, `convolution.1`, `wrapped_reduce-window`). This module reads
the compiled program's HLO text (`compiled.as_text()`) and gives, for every
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
  * its FLOPs and bytes, from the shapes, counted as XLA's cost analysis counts
    them (HloCostAnalysis): 2 per multiply-add of a convolution or dot, 1 per
    element of an elementwise op or reduction step, none for transcendentals
    or data movement; bytes are the op's operands and results as stored. There
    is no public per-instruction cost API in JAX; tests/test_profile.py checks
    that these add up to the whole program's cost analysis.

The HLO text format is XLA's, stable in what is read here: an instruction is
`[ROOT] %name = TYPE opcode(operands), attribute=value, ...`.
"""

import collections
import dataclasses
import math
import re

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
# Not an op's category: the time of a profiled step in which no op ran (bench/profiling.py).
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

_INSTRUCTION = re.compile(
    r'^\s*(?:ROOT\s+)?%(?P<name>[^\s=]+)\s*=\s*(?P<type>\([^=]*?\)|\S+)\s+'
    r'(?P<opcode>[a-z][a-z0-9-]*)\((?P<operands>[^)]*)\)(?P<attributes>.*)$')
_COMPUTATION = re.compile(r'^(?:ENTRY\s+)?%(?P<name>[^\s(]+)\s*\(.*\{\s*$')
_MODULE = re.compile(r'^HloModule\s+([^\s,]+)')
_COMMENT = re.compile(r'/\*.*?\*/')
_OPERAND = re.compile(r'%([^\s,)]+)')
_OP_NAME = re.compile(r'op_name="((?:[^"\\]|\\.)*)"')
_CALLED = re.compile(r'\b(calls|to_apply|body|condition|branch_computations)=(\{[^}]*\}|%[^\s,]+)')
# An array type: element type (its first number is the bit width: f32, bf16,
# f8e4m3fn; pred and token have none) and dimensions.
_ARRAY = re.compile(r'\b([a-z]+)(\d*)[a-z0-9]*\[([\d,]*)\]')

_TRANSCENDENTAL = frozenset((
    'exponential', 'exponential-minus-one', 'log', 'log-plus-one', 'logistic', 'tanh', 'sqrt',
    'rsqrt', 'cbrt', 'sine', 'cosine', 'tan', 'atan2', 'erf', 'power'))
_ELEMENTWISE = frozenset((
    'add', 'subtract', 'multiply', 'divide', 'remainder', 'maximum', 'minimum', 'negate', 'abs',
    'sign', 'compare', 'select', 'clamp', 'floor', 'ceil', 'round-nearest-afz',
    'round-nearest-even', 'and', 'or', 'xor', 'not', 'shift-left', 'shift-right-arithmetic',
    'shift-right-logical', 'is-finite', 'real', 'imag', 'popcnt', 'count-leading-zeros', 'stochastic-convert'))
_MOVEMENT = frozenset((
    'copy', 'transpose', 'pad', 'concatenate', 'slice', 'dynamic-slice', 'dynamic-update-slice',
    'reverse', 'broadcast', 'reshape', 'bitcast', 'iota', 'constant', 'parameter', 'tuple',
    'get-tuple-element', 'convert', 'bitcast-convert', 'copy-start', 'copy-done'))
_COLLECTIVES = ('all-reduce', 'all-gather', 'reduce-scatter', 'all-to-all', 'ragged-all-to-all',
                'collective-permute', 'collective-broadcast')
_HOST = frozenset(('send', 'send-done', 'recv', 'recv-done', 'infeed', 'outfeed'))
_POOLING_PRIMITIVES = ('reduce_window', 'select_and_scatter', 'max_pool', 'avg_pool')
# Ops that move nothing: their result is an operand's buffer (or a constant).
_FREE = frozenset(('parameter', 'constant', 'tuple', 'get-tuple-element', 'bitcast'))


@dataclasses.dataclass
class Instruction:
  name: str
  type: str
  opcode: str
  operands: list
  attributes: str
  op_name: str


@dataclasses.dataclass
class Module:
  name: str
  entry: str
  computations: dict  # name -> [Instruction], in program order


def _arrays(type_text):
  """[(bytes per element, dims)] of every array in an HLO type (tuples flattened)."""
  out = []
  for kind, bits, dims in _ARRAY.findall(type_text):
    if kind == 'token':
      continue
    size = max(int(bits) // 8, 1) if bits else 1  # pred (no width) is a byte
    out.append((size, tuple(int(d) for d in dims.split(',') if d)))
  return out


def elements(type_text):
  return sum(math.prod(dims) for _, dims in _arrays(type_text))


def nbytes(type_text):
  return sum(size * math.prod(dims) for size, dims in _arrays(type_text))


def parse(text):
  """The Module of an HLO text; ValueError if it holds no ENTRY computation."""
  name, entry, computations, current = None, None, {}, None
  for line in text.splitlines():
    line = _COMMENT.sub('', line)
    if name is None and (found := _MODULE.match(line)):
      name = found.group(1)
      continue
    if current is None:
      if found := _COMPUTATION.match(line):
        current = computations.setdefault(found.group('name'), [])
        if line.startswith('ENTRY'):
          entry = found.group('name')
      continue
    if line.strip() == '}':
      current = None
      continue
    if found := _INSTRUCTION.match(line):
      op_name = _OP_NAME.search(found.group('attributes'))
      current.append(Instruction(
          name=found.group('name'), type=found.group('type'), opcode=found.group('opcode'),
          operands=_OPERAND.findall(found.group('operands')),
          attributes=found.group('attributes'),
          op_name=op_name.group(1).replace("\\'", "'").replace('\\"', '"') if op_name else ''))
  if entry is None:
    raise ValueError('no ENTRY computation in the HLO text')
  return Module(name=name, entry=entry, computations=computations)


def _called(instruction):
  """{attribute: [computation names]} an instruction calls."""
  return {key: re.findall(r'%([^\s,}]+)', value)
          for key, value in _CALLED.findall(instruction.attributes)}


def _attribute(instruction, key):
  found = re.search(rf'\b{key}=(\{{[^}}]*\}}|[^,\s]+)', instruction.attributes)
  return found.group(1) if found else None


def _dims_list(value):
  return [int(d) for d in value.strip('{}').split(',') if d.strip()] if value else []


# ------------------------------------------------------------------------ FLOPs

def _window(instruction):
  """The `window` attribute per spatial dimension: [{size, stride, pad, lhs_dilate,
  rhs_dilate}], pad as (low, high)."""
  text = _attribute(instruction, 'window') or ''
  fields = dict(re.findall(r'(\w+)=([\d_x-]+)', text))
  rank = len(fields['size'].split('x')) if 'size' in fields else 0

  def per_dim(key, default):
    return fields[key].split('x') if key in fields else [default] * rank

  return [{'size': int(size), 'stride': int(stride), 'pad': tuple(int(p) for p in pad.split('_')),
           'lhs_dilate': int(lhs), 'rhs_dilate': int(rhs)}
          for size, stride, pad, lhs, rhs in zip(per_dim('size', '1'), per_dim('stride', '1'),
                                                  per_dim('pad', '0_0'), per_dim('lhs_dilate', '1'),
                                                  per_dim('rhs_dilate', '1'))]


def _valid_taps(window, in_size, out_size):
  """(output position, kernel position) pairs of one spatial dimension that read an
  input element, not padding or a hole of lhs dilation: what XLA counts."""
  count = 0
  for o in range(out_size):
    for k in range(window['size']):
      p = o * window['stride'] + k * window['rhs_dilate'] - window['pad'][0]
      if p >= 0 and p % window['lhs_dilate'] == 0 and p // window['lhs_dilate'] < in_size:
        count += 1
  return count


def _conv_flops(instruction, shapes):
  """2 per multiply-add that reads an input element: batch x output features x input
  features per group x the valid (output, kernel) position pairs of each spatial
  dimension."""
  labels = _attribute(instruction, 'dim_labels')
  lhs_labels, rest = labels.split('_')
  rhs_labels, out_labels = rest.split('->')
  lhs = _arrays(shapes[instruction.operands[0]])[0][1]
  rhs = _arrays(shapes[instruction.operands[1]])[0][1]
  out = _arrays(instruction.type)[0][1]
  spatial = sorted(c for c in out_labels if c.isdigit())
  taps = 1
  for d, window in zip(spatial, _window(instruction)):
    taps *= _valid_taps(window, lhs[lhs_labels.index(d)], out[out_labels.index(d)])
  batch_and_features = out[out_labels.index('b')] * out[out_labels.index('f')]
  return 2 * batch_and_features * rhs[rhs_labels.index('i')] * taps


def _dot_flops(instruction, shapes):
  lhs = _arrays(shapes[instruction.operands[0]])[0][1]
  contracted = math.prod(lhs[d] for d in _dims_list(_attribute(instruction, 'lhs_contracting_dims')))
  return 2 * elements(instruction.type) * contracted


def _window_size(instruction):
  return math.prod(w['size'] for w in _window(instruction))


def _reducer_ops(module, instruction):
  """Elementwise ops in a reduction's `to_apply` computation (1 for a plain sum or max)."""
  called = _called(instruction).get('to_apply') or []
  body = module.computations.get(called[0], []) if called else []
  return max(1, sum(i.opcode in _ELEMENTWISE for i in body))


def _own_flops(module, instruction, shapes):
  op = instruction.opcode
  if op == 'convolution':
    return _conv_flops(instruction, shapes)
  if op == 'dot':
    return _dot_flops(instruction, shapes)
  if op in _ELEMENTWISE:
    return elements(instruction.type)
  if op == 'reduce':
    inputs = len(instruction.operands) // 2  # a variadic reduce: inputs, then init values
    consumed = sum(elements(shapes[o]) for o in instruction.operands[:inputs])
    produced = elements(instruction.type)
    return max(consumed - produced, 0) * _reducer_ops(module, instruction) // max(inputs, 1)
  if op == 'reduce-window':
    inputs = len(instruction.operands) // 2
    first = _arrays(instruction.type)[0][1]
    return math.prod(first) * (_window_size(instruction) - 1) * _reducer_ops(module, instruction)
  if op == 'select-and-scatter':
    source = elements(shapes[instruction.operands[1]])
    return source * _window_size(instruction)
  if op == 'scatter':
    updates = elements(shapes[instruction.operands[-1]])
    return updates * _reducer_ops(module, instruction)
  return 0


def _shapes(module):
  """{instruction name: type} over every computation (names are unique in a module)."""
  return {i.name: i.type for instructions in module.computations.values() for i in instructions}


def flops(module, instruction, shapes=None):
  """FLOPs of `instruction`, including every instruction fused into it."""
  shapes = shapes or _shapes(module)
  total = _own_flops(module, instruction, shapes)
  if instruction.opcode == 'fusion':
    for name in _called(instruction).get('calls', []):
      total += sum(flops(module, inner, shapes) for inner in module.computations.get(name, []))
  return total


def _accessed_bytes(instruction, shapes):
  if instruction.opcode in _FREE:
    return 0
  return nbytes(instruction.type) + sum(nbytes(shapes[o]) for o in instruction.operands
                                        if o in shapes)


# ------------------------------------------------------------- What an op is

def _fused(module, instruction):
  """Every instruction of the computations `instruction` fuses, recursively."""
  out = []
  for name in _called(instruction).get('calls', []) if instruction.opcode == 'fusion' else ():
    for inner in module.computations.get(name, []):
      out.append(inner)
      out += _fused(module, inner)
  return out


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


def _is_kernel_gradient(instruction, kernels):
  """Whether a backward convolution computes a kernel's gradient: its result has the
  dimensions of a kernel of its layer, in some order."""
  dims = sorted(_arrays(instruction.type)[0][1])
  return any(sorted(kernel) == dims for kernel in kernels)


def _category(module, instruction, fused, op_name, kernels):
  opcodes = {instruction.opcode} | {i.opcode for i in fused}
  primitive = _primitive(op_name)
  if 'convolution' in opcodes:
    conv = next(i for i in [instruction] + fused if i.opcode == 'convolution')
    if 'transpose(jvp(' not in (conv.op_name or op_name):
      return CONV_FORWARD
    return CONV_KERNEL_GRAD if _is_kernel_gradient(conv, kernels) else CONV_INPUT_GRAD
  if 'dot' in opcodes:
    return DOT
  if any(op.startswith(c) for op in opcodes for c in _COLLECTIVES):
    return COLLECTIVE
  if opcodes & _HOST:
    return HOST_TRANSFER
  if ({'reduce-window', 'select-and-scatter'} & opcodes
      or any(p in primitive for p in _POOLING_PRIMITIVES)):
    return POOLING
  if {'scatter', 'gather'} & opcodes:
    return GATHER_SCATTER
  if 'reduce' in opcodes:
    return REDUCTION
  if opcodes <= _MOVEMENT:
    return DATA_MOVEMENT
  if instruction.opcode == 'fusion' or opcodes & (_ELEMENTWISE | _TRANSCENDENTAL):
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
  for name in _called(instruction).get('calls', []) if instruction.opcode == 'fusion' else ():
    body = module.computations.get(name, [])
    named = [i.op_name for i in body if i.op_name]
    if named:
      return named[-1]
  return ''


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
    if source.opcode in _FREE:
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
  module = parse(text)
  kernels = kernels or {}
  # A train step differentiates; a forward or eval program has no jvp in any op_name.
  training = 'jvp(' in text
  shapes = _shapes(module)
  inner = set()  # fused computations and reducers: not executed as ops of their own
  for instructions in module.computations.values():
    for i in instructions:
      called = _called(i)
      inner.update(called.get('to_apply', []))
      if i.opcode == 'fusion':
        inner.update(called.get('calls', []))
  out = {}
  for name, instructions in module.computations.items():
    if name in inner:
      continue
    op_names = _inherited_op_names(module, instructions)
    by_name = {i.name: i for i in instructions}
    for i in instructions:
      fused = _fused(module, i)
      op_name = op_names[i.name]
      where = layer(op_name, training)
      out[i.name] = Op(
          name=i.name, opcode=i.opcode,
          category=_category(module, i, fused, op_name, kernels.get(where, ())),
          layer=where, phase=_phase(op_name, training),
          flops=flops(module, i, shapes), bytes=_accessed_bytes(i, shapes),
          inputs=_inputs(i, by_name))
  return out


def module_name(text):
  found = _MODULE.search(text)
  return found.group(1) if found else None
