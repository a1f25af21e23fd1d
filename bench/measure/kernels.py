"""The kernels a compiled program runs, each with a signature and a program of its own.

A kernel is what the runtime launches: every instruction of a computation that runs
as ops of its own (the entry, a loop's body and condition, a called computation:
hlo.executions, with loop trip counts) that is neither free (a parameter, a tuple,
a bitcast) nor control flow (a while, a call, a conditional, whose bodies' kernels
are counted themselves). A fusion is one kernel: XLA:CPU runs a convolution as a
YNNPACK fusion of its own, an elementwise chain or a reduction as a loop fusion.

Each kernel is written as an HLO module of its own (`Kernel.module`): a fusion's
fused computation becomes the entry, any other instruction is the entry's root
over parameters for its operands; layouts, metadata and backend configuration
are dropped (the compiler chooses them again for the kernel alone, as it chose
them in context), a bitcast becomes the reshape it is under default layouts.
Each computation is written in one order for one graph (its parameters, then the
rest after their operands from the root), a fusion's parameters numbered in the
order the graph reads them: the compiler prints and numbers the same fusion
differently in context and alone. `Kernel.signature` is that module with every
name replaced by its position, so two kernels of the same operation, shapes,
dtypes and attributes (a convolution's window, strides, padding, dilations,
dimension labels and group counts; a dot's dimension numbers; a fusion's fused
ops) share it wherever they come from; `Kernel.key` is its hash, the kernel
database's key.

Plain text in, no jax: bench/measure/kernel_bench.py compiles and times a kernel's
module alone, bench/results/kernel_model.py predicts it from `features`.
"""

import dataclasses
import hashlib
import re

from bench.measure import hlo

KINDS = ('convolution', 'dot', 'reduce-window', 'select-and-scatter', 'scatter', 'gather',
         'reduction', 'elementwise', 'transpose', 'movement', 'fill', 'custom-call')
# Not a kernel: the bodies these run are walked for their own kernels.
_CONTROL = frozenset(('while', 'call', 'conditional', 'async-start', 'async-done',
                      'async-update', 'after-all', 'add-dependency', 'opt-barrier'))
# Not measurable alone on one device: they wait on other devices or the host.
UNMEASURED = frozenset((*hlo.COLLECTIVE_OPS, *hlo.HOST_OPS, 'all-reduce-start',
                        'all-reduce-done', 'all-gather-start', 'all-gather-done',
                        'collective-permute-start', 'collective-permute-done',
                        'rng-get-and-update-state'))
# The fused op whose presence decides a kernel's kind, in this order: a fusion of a
# convolution and an add is a convolution.
_DECIDES = (('convolution', 'convolution'), ('dot', 'dot'), ('select-and-scatter',
            'select-and-scatter'), ('scatter', 'scatter'), ('reduce-window', 'reduce-window'),
            ('gather', 'gather'), ('reduce', 'reduction'), ('custom-call', 'custom-call'))
_FILL_OPS = frozenset(('iota', 'broadcast', 'constant'))
_TRANSPOSE_OPS = frozenset(('transpose', 'copy'))

_LAYOUT = re.compile(r'(\])\{[^{}]*\}')
_DROPPED = ('metadata', 'backend_config', 'frontend_attributes', 'sharding', 'statistics',
            'origin', 'control-predecessors')
# A name: %name in an instruction, or a parameter's bare `name: type` in a computation's
# header (the only place HLO text writes one without its %).
_NAME = re.compile(r'%([A-Za-z0-9_.\-]+)|(?:(?<=\()|(?<=, ))([A-Za-z0-9_.\-]+)(?=: )')
_PARAMETER = re.compile(r'parameter\((\d+)\)')


@dataclasses.dataclass(frozen=True)
class Kernel:
  name: str          # its instruction's name in the program
  kind: str          # one of KINDS
  module: str        # an HLO module of the kernel alone (no layouts)
  signature: str     # `module` with names by position: equal for equal kernels
  key: str           # sha256 of the signature, 16 hex digits
  flops: float       # per execution, as XLA's cost analysis counts them
  bytes: float       # per execution: operands and result as stored
  executions: int    # per run of the program (a loop body's trip count)
  ops: tuple         # the opcodes it runs (a fusion's fused ops, sorted, with repeats)
  parameters: tuple  # the types of its operands, in parameter order
  result: str        # its result type


def _value_end(text, i):
  """The index just past the attribute value that starts at text[i]: braced (nested,
  quoted strings inside skipped), quoted, or bare up to the next comma."""
  depth, quoted, j = 0, False, i
  while j < len(text):
    c = text[j]
    if quoted:
      quoted = not (c == '"' and text[j - 1] != '\\')
      if not quoted and depth == 0:
        return j + 1
    elif c == '"':
      quoted = True
    elif c == '{':
      depth += 1
    elif c == '}':
      depth -= 1
      if depth == 0:
        return j + 1
    elif c == ',' and depth == 0:
      return j
    j += 1
  return j


def _drop_attributes(text):
  """`text` (an instruction's line) without the attributes in _DROPPED."""
  for key in _DROPPED:
    while (start := text.find(f', {key}=')) >= 0:
      text = text[:start] + text[_value_end(text, start + len(key) + 3):]
  return text


def _clean(instruction):
  """An instruction's line for a module of its own: no layouts, no dropped attributes,
  a bitcast as a reshape (its meaning under the default layouts the kernel gets)."""
  text = _LAYOUT.sub(r'\1', _drop_attributes(instruction.text))
  if instruction.opcode == 'bitcast':
    text = text.replace(' bitcast(', ' reshape(', 1)
  return text


def _plain(type_text):
  return _LAYOUT.sub(r'\1', type_text)


def _root(instructions):
  return next((i for i in instructions if i.text.startswith('ROOT ')), instructions[-1])


def _parameters(instructions):
  """The parameter instructions, by number."""
  return [i for _, i in sorted((int(_PARAMETER.search(i.text).group(1)), i)
                               for i in instructions if i.opcode == 'parameter')]


def _post_order(instructions):
  """The instructions the root reaches, each after its operands (in operand order):
  one order for one graph, however the compiler printed it. Dead instructions (a
  compiled program has none) are left out."""
  by_name = {i.name: i for i in instructions}
  done, out, stack = set(), [], [(_root(instructions), False)]
  while stack:
    instruction, expanded = stack.pop()
    if expanded:
      out.append(instruction)
    elif instruction.name not in done:
      done.add(instruction.name)
      stack.append((instruction, True))
      stack += [(by_name[o], False) for o in reversed(instruction.operands) if o not in done]
  return out


def _ordered(instructions):
  """The parameters by number, then the rest in post order."""
  return _parameters(instructions) + [i for i in _post_order(instructions)
                                      if i.opcode != 'parameter']


def _computation(name, instructions, entry=False):
  """An HLO computation's text: its header from its parameters and root."""
  root = _root(instructions)
  header = ', '.join(f'{i.name}: {_plain(i.type)}' for i in _parameters(instructions))
  lines = [_clean(i) for i in _ordered(instructions)]
  if not root.text.startswith('ROOT '):
    lines[-1] = 'ROOT ' + lines[-1]
  return (f"{'ENTRY ' if entry else ''}%{name} ({header}) -> {_plain(root.type)} {{\n  "
          + '\n  '.join(lines) + '\n}')


def _callees(module, instructions, out):
  """The computations `instructions` call, callees first, each once (appended to out)."""
  for instruction in instructions:
    for names in hlo.called(instruction).values():
      for name in names:
        if name not in out and name in module.computations:
          _callees(module, _ordered(module.computations[name]), out)
          out.append(name)
  return out


def _by_first_use(instructions):
  """A fused computation renumbered: its parameters in the order the post order first
  reads them, so that a fusion's key does not depend on the order of its operands
  (which differs between a kernel in context and alone)."""
  used = [i.name for i in _post_order(instructions) if i.opcode == 'parameter']
  order = used + [i.name for i in _parameters(instructions) if i.name not in used]
  return [dataclasses.replace(i, text=_PARAMETER.sub(f'parameter({order.index(i.name)})',
                                                     i.text, count=1))
          if i.opcode == 'parameter' else i for i in instructions]


def _entry(module, instruction, types):
  """The instructions of the kernel's own entry: a fusion's fused computation
  (renumbered), or parameters for the instruction's distinct operands and the
  instruction itself."""
  if instruction.opcode == 'fusion':
    return _by_first_use(module.computations[hlo.called(instruction)['calls'][0]])
  operands = list(dict.fromkeys(instruction.operands))  # multiply(%x, %x) reads x once
  parameters = [hlo.Instruction(name=f'p{k}', type=types[o], opcode='parameter', operands=[],
                                attributes='', op_name='',
                                text=f'%p{k} = {_plain(types[o])} parameter({k})')
                for k, o in enumerate(operands)]
  renamed = instruction.text
  for k, operand in enumerate(operands):
    renamed = re.sub(rf'%{re.escape(operand)}(?=[\s,)])', f'%p{k}', renamed)
  own = dataclasses.replace(instruction, text='ROOT ' + renamed.removeprefix('ROOT '),
                            operands=[f'p{operands.index(o)}' for o in instruction.operands])
  return parameters + [own]


def _text(module, entry):
  """The module of the entry's instructions: the computations they call, then it."""
  callees = _callees(module, _ordered(entry), [])
  parts = [_computation(name, module.computations[name]) for name in callees]
  parts.append(_computation('main', entry, entry=True))
  return 'HloModule kernel\n\n' + '\n\n'.join(parts) + '\n'


def module_text(module, instruction, types=None):
  """The HLO module of `instruction` alone (see the module docstring)."""
  return _text(module, _entry(module, instruction, types or hlo.types(module)))


def canonical(text):
  """`text` with every name (an instruction's, a computation's, a header's parameter)
  replaced by its order of first appearance."""
  names = {}

  def rename(found):
    name = found.group(1) or found.group(2)
    return ('%' if found.group(1) else '') + names.setdefault(name, str(len(names)))

  return _NAME.sub(rename, text)


def kind(module, instruction):
  """The kernel's kind: what the ops it runs decide (_DECIDES), else a fill (iota,
  broadcast, constant), a transpose or copy, another data movement, or elementwise."""
  ops = {i.opcode for i in [instruction, *hlo.fused(module, instruction)]} - {'fusion'}
  ops -= hlo.FREE_OPS
  for opcode, name in _DECIDES:
    if opcode in ops:
      return name
  if not ops or ops <= _FILL_OPS:
    return 'fill'
  if ops - _FILL_OPS <= _TRANSPOSE_OPS | {'reshape'}:
    return 'transpose'
  if ops - _FILL_OPS <= hlo.MOVEMENT_OPS:
    return 'movement'
  return 'elementwise'


def kernels(text):
  """[Kernel] of a compiled program's HLO text, in program order (collectives and
  host transfers left out: nothing times them alone)."""
  module = hlo.parse(text)
  types = hlo.types(module)
  out = []
  for computation, runs in hlo.executions(module).items():
    for instruction in module.computations.get(computation, []):
      if (instruction.opcode in hlo.FREE_OPS or instruction.opcode in _CONTROL
          or instruction.opcode in UNMEASURED):
        continue
      entry = _entry(module, instruction, types)
      source = _text(module, entry)
      signature = canonical(source)
      inner = [instruction, *hlo.fused(module, instruction)]
      parameters = tuple(_plain(i.type) for i in _parameters(entry))
      out.append(Kernel(
          name=instruction.name, kind=kind(module, instruction), module=source,
          signature=signature, key=hashlib.sha256(signature.encode()).hexdigest()[:16],
          flops=float(hlo.flops(module, instruction, types)),
          bytes=float(hlo.accessed_bytes(instruction, types)), executions=runs,
          ops=tuple(sorted(i.opcode for i in inner if i.opcode not in hlo.FREE_OPS
                           and i.opcode != 'fusion')),
          parameters=parameters, result=_plain(instruction.type)))
  return out


def _arrays(type_text):
  """The array types of a type, a tuple's flattened: ['f32[2,3]', 's32[]']."""
  return re.findall(r'\b[a-z][a-z0-9]*\[[\d,]*\]', type_text)


def looped(kernel):
  """(HLO module text, its parameters' types) of `kernel` run N times in a while loop,
  N its last parameter (s32[]): a runtime count, so that one compile serves every N
  and the compiler cannot unroll the loop. The loop carries the kernel's operands and
  results (its results' initial values are parameters too) through an optimization
  barrier at the top of each iteration, so the kernel is computed every iteration
  rather than hoisted out as loop-invariant, and its buffers are the loop's own, as a
  kernel's are inside a step: no allocation, no dispatch per execution. A kernel with
  no operand (a fill) is hoisted anyway: kernel_bench times those by the call."""
  operands, results = list(kernel.parameters), _arrays(kernel.result)
  carry = ['s32[]', 's32[]', *operands, *results]
  shape = f'({", ".join(carry)})'
  take = [f'%lp_a{k} = {t} get-tuple-element(%lp_b), index={k + 2}'
          for k, t in enumerate(operands)]
  args = ', '.join(f'%lp_a{k}' for k in range(len(operands)))
  if kernel.result.startswith('('):
    outs = [f'%lp_r{j}' for j in range(len(results))]
    split = [f'%lp_r{j} = {t} get-tuple-element(%lp_r), index={j}' for j, t in enumerate(results)]
  else:
    outs, split = ['%lp_r'], []
  body = [f'%lp_c = {shape} parameter(0)', f'%lp_b = {shape} opt-barrier(%lp_c)',
          '%lp_i = s32[] get-tuple-element(%lp_b), index=0',
          '%lp_n = s32[] get-tuple-element(%lp_b), index=1',
          *take, f'%lp_r = {kernel.result} call({args}), to_apply=%lp_kernel', *split,
          '%lp_one = s32[] constant(1)', '%lp_next = s32[] add(%lp_i, %lp_one)',
          f'ROOT %lp_t = {shape} tuple(%lp_next, %lp_n, '
          f'{", ".join([*(f"%lp_a{k}" for k in range(len(operands))), *outs])})']
  condition = [f'%lp_c = {shape} parameter(0)', '%lp_i = s32[] get-tuple-element(%lp_c), index=0',
               '%lp_n = s32[] get-tuple-element(%lp_c), index=1',
               'ROOT %lp_less = pred[] compare(%lp_i, %lp_n), direction=LT']
  given = [*operands, *results, 's32[]']
  entry = [f'%lp_x{k} = {t} parameter({k})' for k, t in enumerate(given)]
  entry += ['%lp_zero = s32[] constant(0)',
            f'%lp_init = {shape} tuple(%lp_zero, %lp_x{len(given) - 1}, '
            f'{", ".join(f"%lp_x{k}" for k in range(len(given) - 1))})',
            f'%lp_w = {shape} while(%lp_init), condition=%lp_more, body=%lp_body',
            f'ROOT %lp_last = {results[-1]} get-tuple-element(%lp_w), index={len(carry) - 1}']
  header = ', '.join(f'lp_x{k}: {t}' for k, t in enumerate(given))
  kernel_text = kernel.module.removeprefix('HloModule kernel\n').replace(
      'ENTRY %main ', '%lp_kernel ', 1)
  return ('HloModule looped\n' + kernel_text
          + f'\n%lp_body (lp_c: {shape}) -> {shape} {{\n  ' + '\n  '.join(body) + '\n}\n'
          + f'\n%lp_more (lp_c: {shape}) -> pred[] {{\n  ' + '\n  '.join(condition) + '\n}\n'
          + f'\nENTRY %main ({header}) -> {results[-1]} {{\n  ' + '\n  '.join(entry) + '\n}\n',
          tuple(given))


def shape_of(type_text):
  """(element type, dims) of an array type such as 'f32[2,3]' (a tuple's first array)."""
  found = re.search(r'\b([a-z][a-z0-9]*)\[([\d,]*)\]', type_text)
  return found.group(1), tuple(int(d) for d in found.group(2).split(',') if d)
