"""A compiled program's optimised HLO text, parsed: instructions, shapes, FLOPs, bytes.

`compiled.as_text()` is XLA's HLO text. `parse` reads it into computations of
instructions (name, type, opcode, operands, attributes, the `op_name` metadata JAX
writes), and for each instruction:

  * its FLOPs and bytes, from the shapes, counted as XLA's cost analysis counts
    them (HloCostAnalysis): 2 per multiply-add of a convolution or dot, 1 per
    element of an elementwise op or reduction step, none for transcendentals
    or data movement; bytes are the op's operands and results as stored. There
    is no public per-instruction cost API in JAX; tests/test_hlo_ops.py checks
    that these add up to the whole program's cost analysis.

What an executed op *is* (its category, Flax layer and phase) is read from these
in bench/profile/hlo_ops.py.

The HLO text format is XLA's, stable in what is read here: an instruction is
`[ROOT] %name = TYPE opcode(operands), attribute=value, ...`.
"""

import dataclasses
import math
import re

_INSTRUCTION = re.compile(
    r'^\s*(?:ROOT\s+)?%(?P<name>[^\s=]+)\s*=\s*(?P<type>\([^=]*?\)|\S+)\s+'
    r'(?P<opcode>[a-z][a-z0-9-]*)\((?P<operands>[^)]*)\)(?P<attributes>.*)$')
_COMPUTATION = re.compile(r'^(?:ENTRY\s+)?%(?P<name>[^\s(]+)\s*\(.*\{\s*$')
_MODULE = re.compile(r'^HloModule\s+([^\s,]+)')
_COMMENT = re.compile(r'/\*.*?\*/')
_OPERAND = re.compile(r'%([^\s,)]+)')
_OP_NAME = re.compile(r'op_name="((?:[^"\\]|\\.)*)"')
_TRIP_COUNT = re.compile(r'"known_trip_count":\{"n":"(\d+)"\}')
_CALLED = re.compile(r'\b(calls|to_apply|body|condition|branch_computations)=(\{[^}]*\}|%[^\s,]+)')
# An array type: element type (its first number is the bit width: f32, bf16,
# f8e4m3fn; pred and token have none) and dimensions.
_ARRAY = re.compile(r'\b([a-z]+)(\d*)[a-z0-9]*\[([\d,]*)\]')

TRANSCENDENTAL_OPS = frozenset((
    'exponential', 'exponential-minus-one', 'log', 'log-plus-one', 'logistic', 'tanh', 'sqrt',
    'rsqrt', 'cbrt', 'sine', 'cosine', 'tan', 'atan2', 'erf', 'power'))
ELEMENTWISE_OPS = frozenset((
    'add', 'subtract', 'multiply', 'divide', 'remainder', 'maximum', 'minimum', 'negate', 'abs',
    'sign', 'compare', 'select', 'clamp', 'floor', 'ceil', 'round-nearest-afz',
    'round-nearest-even', 'and', 'or', 'xor', 'not', 'shift-left', 'shift-right-arithmetic',
    'shift-right-logical', 'is-finite', 'real', 'imag', 'popcnt', 'count-leading-zeros', 'stochastic-convert'))
MOVEMENT_OPS = frozenset((
    'copy', 'transpose', 'pad', 'concatenate', 'slice', 'dynamic-slice', 'dynamic-update-slice',
    'reverse', 'broadcast', 'reshape', 'bitcast', 'iota', 'constant', 'parameter', 'tuple',
    'get-tuple-element', 'convert', 'bitcast-convert', 'copy-start', 'copy-done'))
COLLECTIVE_OPS = ('all-reduce', 'all-gather', 'reduce-scatter', 'all-to-all', 'ragged-all-to-all',
                'collective-permute', 'collective-broadcast')
HOST_OPS = frozenset(('send', 'send-done', 'recv', 'recv-done', 'infeed', 'outfeed'))
# Ops that move nothing: their result is an operand's buffer (or a constant).
FREE_OPS = frozenset(('parameter', 'constant', 'tuple', 'get-tuple-element', 'bitcast'))


@dataclasses.dataclass
class Instruction:
  name: str
  type: str
  opcode: str
  operands: list
  attributes: str
  op_name: str
  text: str = ''  # the whole line as printed (comments removed): a constant's literal too


@dataclasses.dataclass
class Module:
  name: str
  entry: str
  computations: dict  # name -> [Instruction], in program order


def arrays(type_text):
  """[(bytes per element, dims)] of every array in an HLO type (tuples flattened)."""
  out = []
  for kind, bits, dims in _ARRAY.findall(type_text):
    if kind == 'token':
      continue
    size = max(int(bits) // 8, 1) if bits else 1  # pred (no width) is a byte
    out.append((size, tuple(int(d) for d in dims.split(',') if d)))
  return out


def elements(type_text):
  return sum(math.prod(dims) for _, dims in arrays(type_text))


def nbytes(type_text):
  return sum(size * math.prod(dims) for size, dims in arrays(type_text))


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
          op_name=op_name.group(1).replace("\\'", "'").replace('\\"', '"') if op_name else '',
          text=line.strip()))
  if entry is None:
    raise ValueError('no ENTRY computation in the HLO text')
  return Module(name=name, entry=entry, computations=computations)


def called(instruction):
  """{attribute: [computation names]} an instruction calls."""
  return {key: re.findall(r'%([^\s,}]+)', value)
          for key, value in _CALLED.findall(instruction.attributes)}


def executions(module):
  """{computation: how many times it runs per run of the entry} for the computations
  that run as ops of their own (not fused ones, nor reducers): a while loop's body
  runs its known trip count times (XLA's backend_config), its condition once more;
  a loop without a known trip count, a call and each branch of a conditional count
  as often as their caller (an upper bound for branches). A call's computation is
  its `to_apply` (XLA:CPU wraps a while loop in one), a reducer's is not run as ops."""
  out = {module.entry: 1}
  stack = [module.entry]
  while stack:
    name = stack.pop()
    for instruction in module.computations.get(name, []):
      if instruction.opcode == 'fusion':
        continue
      trips = _TRIP_COUNT.search(instruction.attributes) if instruction.opcode == 'while' else None
      n = int(trips.group(1)) if trips else 1
      for key, names in called(instruction).items():
        if key == 'to_apply' and instruction.opcode != 'call':
          continue
        runs = out[name] * (n if key == 'body' else n + 1 if key == 'condition' and trips else 1)
        for callee in names:
          if callee not in out:
            stack.append(callee)
          out[callee] = max(out.get(callee, 0), runs)
  return out


def attribute(instruction, key):
  """The text of an instruction's attribute `key` (a braced value whole), or None."""
  found = re.search(rf'\b{key}=(\{{[^}}]*\}}|[^,\s]+)', instruction.attributes)
  return found.group(1) if found else None


def dims_list(value):
  """The integers of a dimension list attribute such as '{0,2}'."""
  return [int(d) for d in value.strip('{}').split(',') if d.strip()] if value else []


# ------------------------------------------------------------------------ FLOPs

def window(instruction):
  """The `window` attribute per spatial dimension: [{size, stride, pad, lhs_dilate,
  rhs_dilate}], pad as (low, high)."""
  text = attribute(instruction, 'window') or ''
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
  labels = attribute(instruction, 'dim_labels')
  lhs_labels, rest = labels.split('_')
  rhs_labels, out_labels = rest.split('->')
  lhs = arrays(shapes[instruction.operands[0]])[0][1]
  rhs = arrays(shapes[instruction.operands[1]])[0][1]
  out = arrays(instruction.type)[0][1]
  spatial = sorted(c for c in out_labels if c.isdigit())
  taps = 1
  for d, dim_window in zip(spatial, window(instruction)):
    taps *= _valid_taps(dim_window, lhs[lhs_labels.index(d)], out[out_labels.index(d)])
  batch_and_features = out[out_labels.index('b')] * out[out_labels.index('f')]
  return 2 * batch_and_features * rhs[rhs_labels.index('i')] * taps


def _dot_flops(instruction, shapes):
  lhs = arrays(shapes[instruction.operands[0]])[0][1]
  contracted = math.prod(lhs[d] for d in dims_list(attribute(instruction, 'lhs_contracting_dims')))
  return 2 * elements(instruction.type) * contracted


def _window_size(instruction):
  return math.prod(w['size'] for w in window(instruction))


def _reducer_ops(module, instruction):
  """Elementwise ops in a reduction's `to_apply` computation (1 for a plain sum or max)."""
  reducers = called(instruction).get('to_apply') or []
  body = module.computations.get(reducers[0], []) if reducers else []
  return max(1, sum(i.opcode in ELEMENTWISE_OPS for i in body))


def _own_flops(module, instruction, shapes):
  op = instruction.opcode
  if op == 'convolution':
    return _conv_flops(instruction, shapes)
  if op == 'dot':
    return _dot_flops(instruction, shapes)
  # A conversion moves data (MOVEMENT_OPS: its category), but XLA's cost analysis
  # counts it as one FLOP an element, as it counts any elementwise op (the shared
  # gradient of a max over a window's axes converts its location mask: 160k FLOPs of
  # the seed CNN's step at batch 4 went uncounted).
  if op in ELEMENTWISE_OPS or op == 'convert':
    return elements(instruction.type)
  if op == 'reduce':
    inputs = len(instruction.operands) // 2  # a variadic reduce: inputs, then init values
    consumed = sum(elements(shapes[o]) for o in instruction.operands[:inputs])
    produced = elements(instruction.type)
    return max(consumed - produced, 0) * _reducer_ops(module, instruction) // max(inputs, 1)
  if op == 'reduce-window':
    inputs = len(instruction.operands) // 2
    first = arrays(instruction.type)[0][1]
    return math.prod(first) * (_window_size(instruction) - 1) * _reducer_ops(module, instruction)
  if op == 'select-and-scatter':
    source = elements(shapes[instruction.operands[1]])
    return source * _window_size(instruction)
  if op == 'scatter':
    updates = elements(shapes[instruction.operands[-1]])
    return updates * _reducer_ops(module, instruction)
  return 0


def types(module):
  """{instruction name: type} over every computation (names are unique in a module)."""
  return {i.name: i.type for instructions in module.computations.values() for i in instructions}


def flops(module, instruction, shapes=None):
  """FLOPs of `instruction`, including every instruction fused into it."""
  shapes = shapes or types(module)
  total = _own_flops(module, instruction, shapes)
  if instruction.opcode == 'fusion':
    for name in called(instruction).get('calls', []):
      total += sum(flops(module, inner, shapes) for inner in module.computations.get(name, []))
  return total


def accessed_bytes(instruction, shapes):
  """Bytes `instruction` reads and writes: its operands and result as stored (none for
  the free ops, whose result is an operand's buffer)."""
  if instruction.opcode in FREE_OPS:
    return 0
  return nbytes(instruction.type) + sum(nbytes(shapes[o]) for o in instruction.operands
                                        if o in shapes)


def fused(module, instruction):
  """Every instruction of the computations `instruction` fuses, recursively."""
  out = []
  for name in called(instruction).get('calls', []) if instruction.opcode == 'fusion' else ():
    for inner in module.computations.get(name, []):
      out.append(inner)
      out += fused(module, inner)
  return out


def module_name(text):
  found = _MODULE.search(text)
  return found.group(1) if found else None
