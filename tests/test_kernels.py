"""A compiled program's kernels (bench/measure/kernels.py) and a kernel alone
(bench/measure/kernel_bench.py): what is listed, counted and keyed, worked out by hand
on written programs, and what the compiler makes of each kernel's module alone."""

import re

import jax
import jax.numpy as jnp
import pytest

from bench.measure import kernel_bench
from bench.measure import kernels

# A program as XLA:CPU prints it (shapes tiny): a loop of 5 known trips, wrapped in a
# call as XLA:CPU wraps it, whose body convolves (a fusion holding the convolution),
# scales by a constant vector (outside the fusion, as XLA:CPU puts an array constant)
# and counts; around it a copy of
# the input, a bitcast (free) and a sum over the channels.
HLO = '''HloModule jit_loop, entry_computation_layout={(f32[2,5,5,3]{3,2,1,0}, f32[3,3,3,3]{3,2,1,0})->f32[50]{0}}

%fused_conv (param_0: f32[2,5,5,3], param_1: f32[3,3,3,3]) -> f32[2,5,5,3] {
  %param_0 = f32[2,5,5,3]{3,2,1,0} parameter(0)
  %param_1 = f32[3,3,3,3]{3,2,1,0} parameter(1)
  ROOT %conv = f32[2,5,5,3]{3,2,1,0} convolution(%param_0, %param_1), window={size=3x3 pad=1_1x1_1}, dim_labels=b01f_01io->b01f, metadata={op_name="jit(loop)/while/body/conv_general_dilated" source_file="a{b,c}.py"}
}

%fused_scale (param_0.1: f32[2,5,5,3], param_1.1: f32[3]) -> f32[2,5,5,3] {
  %param_0.1 = f32[2,5,5,3]{3,2,1,0} parameter(0)
  %tanh = f32[2,5,5,3]{3,2,1,0} tanh(%param_0.1)
  %scales = f32[3]{0} parameter(1)
  %bscales = f32[2,5,5,3]{3,2,1,0} broadcast(%scales), dimensions={3}
  ROOT %scaled = f32[2,5,5,3]{3,2,1,0} multiply(%tanh, %bscales)
}

%body (arg: (s32[], f32[2,5,5,3], f32[3,3,3,3])) -> (s32[], f32[2,5,5,3], f32[3,3,3,3]) {
  %arg = (s32[], f32[2,5,5,3]{3,2,1,0}, f32[3,3,3,3]{3,2,1,0}) parameter(0)
  %i = s32[] get-tuple-element(%arg), index=0
  %x = f32[2,5,5,3]{3,2,1,0} get-tuple-element(%arg), index=1
  %k = f32[3,3,3,3]{3,2,1,0} get-tuple-element(%arg), index=2
  %conv_fusion = f32[2,5,5,3]{3,2,1,0} fusion(%x, %k), kind=kCustom, calls=%fused_conv, backend_config={"fusion_backend_config":{"kind":"__ynn"}}
  %scales.1 = f32[3]{0} constant({0.5, 1, 2})
  %scale_fusion = f32[2,5,5,3]{3,2,1,0} fusion(%conv_fusion, %scales.1), kind=kLoop, calls=%fused_scale
  %one = s32[] constant(1)
  %next = s32[] add(%i, %one), metadata={op_name="jit(loop)/while/body/add"}
  ROOT %carry = (s32[], f32[2,5,5,3]{3,2,1,0}, f32[3,3,3,3]{3,2,1,0}) tuple(%next, %scale_fusion, %k)
}

%condition (arg.1: (s32[], f32[2,5,5,3], f32[3,3,3,3])) -> pred[] {
  %arg.1 = (s32[], f32[2,5,5,3]{3,2,1,0}, f32[3,3,3,3]{3,2,1,0}) parameter(0)
  %i.1 = s32[] get-tuple-element(%arg.1), index=0
  %trips = s32[] constant(5)
  ROOT %lt = pred[] compare(%i.1, %trips), direction=LT
}

%loop (init: (s32[], f32[2,5,5,3], f32[3,3,3,3])) -> (s32[], f32[2,5,5,3], f32[3,3,3,3]) {
  %init = (s32[], f32[2,5,5,3]{3,2,1,0}, f32[3,3,3,3]{3,2,1,0}) parameter(0)
  ROOT %while = (s32[], f32[2,5,5,3]{3,2,1,0}, f32[3,3,3,3]{3,2,1,0}) while(%init), condition=%condition, body=%body, backend_config={"known_trip_count":{"n":"5"}}
}

%sum (a: f32[], b: f32[]) -> f32[] {
  %a = f32[] parameter(0)
  %b = f32[] parameter(1)
  ROOT %s = f32[] add(%a, %b)
}

ENTRY %main (image: f32[2,5,5,3], kernel: f32[3,3,3,3]) -> f32[50] {
  %image = f32[2,5,5,3]{3,2,1,0} parameter(0), metadata={op_name="image"}
  %kernel = f32[3,3,3,3]{3,2,1,0} parameter(1), metadata={op_name="kernel"}
  %copy = f32[2,5,5,3]{3,2,1,0} copy(%image)
  %zero = s32[] constant(0)
  %start = (s32[], f32[2,5,5,3]{3,2,1,0}, f32[3,3,3,3]{3,2,1,0}) tuple(%zero, %copy, %kernel)
  %call = (s32[], f32[2,5,5,3]{3,2,1,0}, f32[3,3,3,3]{3,2,1,0}) call(%start), to_apply=%loop, frontend_attributes={xla_cpu_small_call="true"}
  %result = f32[2,5,5,3]{3,2,1,0} get-tuple-element(%call), index=1
  %flat = f32[50,3]{1,0} bitcast(%result)
  %zero.1 = f32[] constant(0)
  ROOT %pixels = f32[50]{0} reduce(%flat, %zero.1), dimensions={1}, to_apply=%sum
}
'''

# name: (kind, executions, FLOPs, bytes) of each kernel, in program order: the entry's,
# the condition's, the body's. Parameters, tuples, get-tuple-elements, constants, the
# bitcast, the call and the while are none; the reducer %sum runs inside the reduce.
EXPECTED = {
    # copies 2*5*5*3 = 150 floats: reads and writes 600 bytes
    'copy': ('transpose', 1, 0, 1200),
    # 150 inputs summed into 50; reads 600 + the 4 of its init, writes 200
    'pixels': ('reduction', 1, 100, 804),
    # once per trip and once more to leave; two s32 in, one pred out
    'lt': ('elementwise', 6, 1, 9),
    # 3x3, padded by 1, over 5 positions: per spatial dimension 5*3 - 2 = 13 (output,
    # tap) pairs read the input (each edge output misses one tap), so 2 x batch 2 x 3
    # output features x 3 input features x 13^2; reads 600 + 324 bytes, writes 600
    'conv_fusion': ('convolution', 5, 2 * 2 * 3 * 3 * 13**2, 600 + 324 + 600),
    # one multiply per element (tanh is a transcendental, a broadcast moves); reads
    # 600 + the 12 of the constant, writes 600
    'scale_fusion': ('elementwise', 5, 150, 1212),
    'next': ('elementwise', 5, 1, 12),
}


def _by_name(text):
  return {k.name: k for k in kernels.kernels(text)}


def _check(kernel):
  return kernel_bench.check(kernel, kernel_bench.compile_module(kernel.module))


def test_kernels_of_a_loop_their_kinds_runs_flops_and_bytes():
  found = kernels.kernels(HLO)
  assert [k.name for k in found] == list(EXPECTED)
  assert {k.name: (k.kind, k.executions, k.flops, k.bytes) for k in found} == EXPECTED
  conv, scale = _by_name(HLO)['conv_fusion'], _by_name(HLO)['scale_fusion']
  assert conv.ops == ('convolution',) and scale.ops == ('broadcast', 'multiply', 'tanh')
  assert conv.parameters == ('f32[2,5,5,3]', 'f32[3,3,3,3]') and conv.result == 'f32[2,5,5,3]'
  assert _by_name(HLO)['lt'].parameters == ('s32[]', 's32[]')
  # An operand read twice is one parameter of the kernel alone.
  doubled = _by_name(HLO.replace('add(%i, %one)', 'add(%i, %i)'))['next']
  assert doubled.parameters == ('s32[]',) and 'add(%p0, %p0)' in doubled.module
  assert _check(doubled).same


def test_a_kernels_module_has_no_layouts_metadata_or_backend_config_and_compiles_alone():
  found = _by_name(HLO)
  conv = found['conv_fusion'].module
  assert 'ENTRY %main (param_0: f32[2,5,5,3], param_1: f32[3,3,3,3]) -> f32[2,5,5,3]' in conv
  assert not re.search(r'\]\{|metadata|backend_config|source_file', conv)
  # The reducer comes with the reduce, before the entry.
  assert found['pixels'].module.index('%sum (') < found['pixels'].module.index('ENTRY')
  for kernel in found.values():
    assert _check(kernel) == kernel_bench.Check(True, '', ((kernel.kind, kernel.key),)), kernel.name


# A fusion holding an array constant (XLA:CPU keeps only scalars in its fusions) and
# a bitcast.
SCALE = '''HloModule scale

%fused_scale (param_0: f32[2,3]) -> f32[6] {
  %param_0 = f32[2,3]{1,0} parameter(0)
  %tanh = f32[2,3]{1,0} tanh(%param_0)
  %scales = f32[3]{0} constant({0.5, 1, 2})
  %bscales = f32[2,3]{1,0} broadcast(%scales), dimensions={1}
  %scaled = f32[2,3]{1,0} multiply(%tanh, %bscales)
  ROOT %flat = f32[6]{0} bitcast(%scaled)
}

ENTRY %main (x: f32[2,3]) -> f32[6] {
  %x = f32[2,3]{1,0} parameter(0)
  ROOT %scale_fusion = f32[6]{0} fusion(%x), kind=kLoop, calls=%fused_scale
}
'''


def test_an_array_constant_keeps_its_literal_and_alone_becomes_a_parameter():
  [kernel] = kernels.kernels(SCALE)
  assert '%scales = f32[3] constant({0.5, 1, 2})' in kernel.module  # the braces stay
  # Without layouts a bitcast is the reshape it was under the default ones.
  assert 'ROOT %flat = f32[6] reshape(%scaled)' in kernel.module and 'bitcast' not in kernel.module
  check = _check(kernel)
  # Alone, XLA:CPU takes the constant out of the fusion and passes it in: another
  # signature, the same kind and ops (a constant is free), so the same kernel.
  assert check.same and check.ran[0][0] == 'elementwise' and check.ran[0][1] != kernel.key


def test_names_metadata_print_order_and_operand_order_do_not_enter_the_signature():
  renamed = (HLO.replace('conv_fusion', 'convolution.7').replace('fused_conv', 'fc')
             .replace('param_0', 'p.0').replace('a{b,c}.py', 'other.py').replace('%sum', '%add.3'))
  assert [k.key for k in kernels.kernels(renamed)] == [k.key for k in kernels.kernels(HLO)]
  # The fused computation printed the other way round, with its parameters numbered the
  # other way: the graph is the same, so is the key (XLA numbers a fusion's operands
  # by where they come from, which differs in context and alone).
  swapped = HLO.replace('''  %param_0 = f32[2,5,5,3]{3,2,1,0} parameter(0)
  %param_1 = f32[3,3,3,3]{3,2,1,0} parameter(1)''', '''  %param_1 = f32[3,3,3,3]{3,2,1,0} parameter(0)
  %param_0 = f32[2,5,5,3]{3,2,1,0} parameter(1)''').replace('fusion(%x, %k)', 'fusion(%k, %x)')
  swapped_conv = _by_name(swapped)['conv_fusion']
  assert swapped_conv.key == _by_name(HLO)['conv_fusion'].key
  # Its own module reads the operands in the order the graph uses them.
  assert swapped_conv.parameters == ('f32[2,5,5,3]', 'f32[3,3,3,3]')
  # What decides the cost does enter it: another padding, another key.
  repadded = HLO.replace('pad=1_1x1_1', 'pad=0_2x1_1')
  assert _by_name(repadded)['conv_fusion'].key != _by_name(HLO)['conv_fusion'].key
  assert kernels.canonical('%main (x.1: f32[], y: f32[]) -> f32[] {\n  %x.1 = f32[] parameter(0)\n'
                           '  ROOT %a = f32[] add(%x.1, %y)') == (
                               '%0 (1: f32[], 2: f32[]) -> f32[] {\n  %1 = f32[] parameter(0)\n'
                               '  ROOT %3 = f32[] add(%1, %2)')


def _conv(x, w, strides=(1, 1), padding='SAME'):
  return jax.lax.conv_general_dilated(x, w, strides, padding,
                                      dimension_numbers=('NHWC', 'HWIO', 'NHWC'))


def _kernels_of(function, *arguments, **jit_options):
  return kernels.kernels(jax.jit(function, **jit_options).lower(*arguments).compile().as_text())


def test_the_same_convolution_in_two_programs_has_one_key():
  x, w = jnp.ones((2, 8, 8, 3)), jnp.ones((3, 3, 3, 4))

  def then_more(x, w):
    with jax.named_scope('elsewhere'):  # other names and metadata
      return jnp.tanh(_conv(x, w)).sum(axis=(1, 2))

  def convolutions(*found):
    return [k for k in found if k.kind == 'convolution']

  [alone] = convolutions(*_kernels_of(_conv, x, w))
  [inside] = convolutions(*_kernels_of(then_more, x, w))
  assert inside.key == alone.key
  # SAME over 8 positions with 3 taps: 8*3 - 2 = 22 pairs per dimension.
  assert alone.flops == 2 * 2 * 4 * 3 * 22**2
  [strided] = convolutions(*_kernels_of(lambda x, w: _conv(x, w, strides=(2, 2)), x, w))
  [valid] = convolutions(*_kernels_of(lambda x, w: _conv(x, w, padding='VALID'), x, w))
  assert len({alone.key, strided.key, valid.key}) == 3


def test_a_dot_an_elementwise_fusion_and_a_tuple_reduction_compile_alone_to_themselves():
  found = _kernels_of(lambda a, b: jnp.tanh(a @ b) * 2 + 1, jnp.ones((4, 8)), jnp.ones((8, 5)))
  assert sorted(k.kind for k in found) == ['dot', 'elementwise']
  # argmax: a fusion with a tuple result (the maximum and its index).
  found += _kernels_of(lambda x: jnp.argmax(x, axis=1), jnp.ones((4, 10)))
  assert found[-1].result == '(f32[4], s32[4])'
  for kernel in found:
    assert _check(kernel) == kernel_bench.Check(True, '', ((kernel.kind, kernel.key),))


def test_a_scatter_alone_copies_its_operand_first():
  """In context the scatter updates its donated operand in place; alone, the entry's
  parameter is not the program's to overwrite, so XLA copies it first: two kernels."""
  found = _kernels_of(lambda x, i, u: x.at[i].add(u), jnp.ones((10, 4)), jnp.array([1, 3, 3]),
                      jnp.ones((3, 4)), donate_argnums=0)
  [scatter] = [k for k in found if k.kind == 'scatter']
  check = _check(scatter)
  assert not check.same and [kind for kind, _ in check.ran] == ['transpose', 'scatter']
  assert check.ran[1][1] == scatter.key  # the scatter itself is the same
  assert check.why == 'alone it compiles to 2 kernel(s): transpose (copy), scatter (scatter)'


# The Adam update of one parameter as the seed MLP's train step runs it (one fusion;
# shapes tiny): the bias corrections 1 - b^t arrive as scalars and divide.
ADAM = '''HloModule adam

%fused_update (param_0: f32[4,3], param_1: f32[4,3], param_2: f32[], param_3: f32[4,3], param_4: f32[]) -> f32[4,3] {
  %param_0 = f32[4,3]{1,0} parameter(0)
  %param_1 = f32[4,3]{1,0} parameter(1)
  %param_2 = f32[] parameter(2)
  %param_3 = f32[4,3]{1,0} parameter(3)
  %param_4 = f32[] parameter(4)
  %one = f32[] constant(1)
  %m_correction = f32[] subtract(%one, %param_2)
  %bm = f32[4,3]{1,0} broadcast(%m_correction), dimensions={}
  %v_correction = f32[] subtract(%one, %param_4)
  %bv = f32[4,3]{1,0} broadcast(%v_correction), dimensions={}
  %v_hat = f32[4,3]{1,0} divide(%param_3, %bv)
  %sqrt = f32[4,3]{1,0} sqrt(%v_hat)
  %eps = f32[] constant(1e-08)
  %beps = f32[4,3]{1,0} broadcast(%eps), dimensions={}
  %denominator = f32[4,3]{1,0} add(%sqrt, %beps)
  %scaled = f32[4,3]{1,0} multiply(%bm, %denominator)
  %step = f32[4,3]{1,0} divide(%param_1, %scaled)
  %lr = f32[] constant(-0.001)
  %blr = f32[4,3]{1,0} broadcast(%lr), dimensions={}
  %delta = f32[4,3]{1,0} multiply(%step, %blr)
  ROOT %new = f32[4,3]{1,0} add(%param_0, %delta)
}

ENTRY %main (p: f32[4,3], m: f32[4,3], b1: f32[], v: f32[4,3], b2: f32[]) -> f32[4,3] {
  %p = f32[4,3]{1,0} parameter(0)
  %m = f32[4,3]{1,0} parameter(1)
  %b1 = f32[] parameter(2)
  %v = f32[4,3]{1,0} parameter(3)
  %b2 = f32[] parameter(4)
  ROOT %multiply_add_fusion = f32[4,3]{1,0} fusion(%p, %m, %b1, %v, %b2), kind=kLoop, calls=%fused_update
}
'''


def test_an_adam_update_alone_is_simplified_into_two_kernels():
  """Given the fused computation alone, XLA's simplifier divides by a scalar as a
  multiplication by its reciprocal, computed once in a kernel of its own: a scalar
  kernel and one with a divide less per element, not the kernel that ran in context."""
  [kernel] = kernels.kernels(ADAM)
  # 2 scalar subtracts, then 6 ops per element of 12 (sqrt a transcendental);
  # 3 arrays of 48 bytes and 2 scalars in, 48 bytes out.
  assert (kernel.kind, kernel.flops, kernel.bytes) == ('elementwise', 2 + 6 * 12, 200)
  check = _check(kernel)
  assert not check.same and [kind for kind, _ in check.ran] == ['elementwise', 'elementwise']
  assert check.why == ('alone it compiles to 2 kernel(s): elementwise (divide+subtract), '
                       'elementwise (add+broadcast+divide+multiply+sqrt+subtract)')


@pytest.mark.parametrize('line, kept', [
    ('%c = f32[2]{0} add(%a, %b), metadata={op_name="a{b,c}" source_file="x"}, '
     'backend_config={"a":{"b":1}}', '%c = f32[2]{0} add(%a, %b)'),
    ('%r = f32[] reduce(%x, %z), dimensions={0}, metadata={op_name="s}, t"}, to_apply=%sum',
     '%r = f32[] reduce(%x, %z), dimensions={0}, to_apply=%sum'),
    # The backend configuration as a quoted string, its quotes escaped.
    ('%w = s32[] while(%t), condition=%c, body=%b, backend_config="{\\"n\\":\\"5\\"}", '
     'sharding={replicated}', '%w = s32[] while(%t), condition=%c, body=%b'),
    ('%k = f32[2] custom-call(%a), custom_call_target="f", '
     'frontend_attributes={x="{,}"}', '%k = f32[2] custom-call(%a), custom_call_target="f"'),
])
def test_drop_attributes_with_braces_and_commas_inside_values(line, kept):
  assert kernels._drop_attributes(line) == kept  # pylint: disable=protected-access


@pytest.mark.parametrize('text, end', [
    ('{op_name="a{b,c}" source_file="x"}, next', 34),  # past the brace that closes
    ('{"a":{"b":1}}, next', 13),
    ('"f,{x}", next', 7),  # past the closing quote
    ('kLoop, calls=%f', 5),  # up to the comma
    ('%f', 2),  # to the end
])
def test_value_end(text, end):
  assert kernels._value_end(text, 0) == end  # pylint: disable=protected-access


def test_measure_and_the_overhead_probe():
  probe = kernel_bench.overhead()
  assert probe['median'] > 0 and probe['n'] >= kernel_bench.MIN_SAMPLES
  [dot] = [k for k in _kernels_of(jnp.dot, jnp.ones((4, 8)), jnp.ones((8, 5))) if k.kind == 'dot']
  summary, check = kernel_bench.measure(dot, probe['median'], min_time_s=0.01)
  assert summary['n'] >= kernel_bench.MIN_SAMPLES and len(summary['samples']) == summary['n']
  assert min(summary['samples']) > 0
  assert check == kernel_bench.Check(True, '', (('dot', dot.key),))


def test_a_module_that_does_not_compile_raises_a_one_line_kernel_error():
  broken = HLO.replace('f32[3,3,3,3]{3,2,1,0} parameter(1)', 'f32[3,3,3,3]{3,2,1,0} parameter()')
  with pytest.raises(kernel_bench.KernelError) as raised:
    kernel_bench.compile_module(broken)
  message = str(raised.value)
  assert '\n' not in message and 'error:' in message and 'HloModule' in message
  # A kernel of the wrong shapes: the compiler's own complaint, one line too.
  wrong = _by_name(HLO)['next'].module.replace('ROOT %next = s32[]', 'ROOT %next = s32[2]')
  with pytest.raises(kernel_bench.KernelError, match=r'^[^\n]*error[^\n]*$'):
    kernel_bench.compile_module(wrong)
