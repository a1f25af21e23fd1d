"""HLO ops named and costed: a hand-written program whose every figure is worked out in
its comments, and compiled train steps whose per-op FLOPs and bytes add up to XLA's."""

import jax
import pytest

from bench.measure import hlo
from bench.profile import hlo_ops
from bench.profile import trace

# A train step's program as XLA prints it (shapes tiny): a conv layer `conv1`
# (forward in a fusion, input and kernel gradients), a relu and a max-pool of the
# model itself, a dense layer `head`, the loss, an all-reduce and an optimizer update.
HLO = '''HloModule jit_train_step, entry_computation_layout={(f32[2,6,6,3]{3,2,1,0})->f32[]}

%fused_conv (p0: f32[2,6,6,3], p1: f32[3,3,3,4]) -> f32[2,4,4,4] {
  %p0 = f32[2,6,6,3]{3,2,1,0} parameter(0)
  %p1 = f32[3,3,3,4]{3,2,1,0} parameter(1)
  ROOT %conv.0 = f32[2,4,4,4]{3,2,1,0} convolution(%p0, %p1), window={size=3x3}, dim_labels=b01f_01io->b01f, metadata={op_name="jit(train_step)/jvp(Net)/Net.features/conv1/conv_general_dilated" stack_frame_id=1}
}

%region_max (a: f32[], b: f32[]) -> f32[] {
  %a = f32[] parameter(0)
  %b = f32[] parameter(1)
  ROOT %m = f32[] maximum(%a, %b)
}

%region_add (a.1: f32[], b.1: f32[]) -> f32[] {
  %a.1 = f32[] parameter(0)
  %b.1 = f32[] parameter(1)
  ROOT %s = f32[] add(%a.1, %b.1)
}

%fused_relu (p: f32[2,4,4,4]) -> f32[2,4,4,4] {
  %p = f32[2,4,4,4]{3,2,1,0} parameter(0)
  %zero = f32[] constant(0)
  %bz = f32[2,4,4,4]{3,2,1,0} broadcast(%zero), dimensions={}
  ROOT %relu = f32[2,4,4,4]{3,2,1,0} maximum(%p, %bz), metadata={op_name="jit(train_step)/jvp(Net)/Net.features/jit(relu)/max"}
}

ENTRY %main.9 (x: f32[2,6,6,3], k: f32[3,3,3,4], w: f32[16,10], g: f32[2,4,4,4]) -> (f32[16,10], f32[3,3,3,4]) {
  %x = f32[2,6,6,3]{3,2,1,0} parameter(0), metadata={op_name="batch[\\'image\\']"}
  %k = f32[3,3,3,4]{3,2,1,0} parameter(1)
  %w = f32[16,10]{1,0} parameter(2)
  %g = f32[2,4,4,4]{3,2,1,0} parameter(3)
  %conv_fusion = f32[2,4,4,4]{3,2,1,0} fusion(%x, %k), kind=kCustom, calls=%fused_conv
  %relu_fusion = f32[2,4,4,4]{3,2,1,0} fusion(%conv_fusion), kind=kLoop, calls=%fused_relu, metadata={op_name="jit(train_step)/jvp(Net)/Net.features/jit(relu)/max"}
  %init = f32[] constant(-inf)
  %pool = f32[2,2,2,4]{3,2,1,0} reduce-window(%relu_fusion, %init), window={size=1x2x2x1 stride=1x2x2x1}, to_apply=%region_max, metadata={op_name="jit(train_step)/jvp(Net)/Net.features/reduce_window_max"}
  %flat = f32[2,16]{1,0} bitcast(%pool)
  %dense = f32[2,10]{1,0} dot(%flat, %w), lhs_contracting_dims={1}, rhs_contracting_dims={0}, metadata={op_name="jit(train_step)/jvp(Net)/head/dot_general"}
  %loss = f32[2,10]{1,0} exponential(%dense), metadata={op_name="jit(train_step)/jvp()/exp"}
  %k_t = f32[3,3,4,3]{3,2,1,0} transpose(%k), dimensions={0,1,3,2}
  %input_grad = f32[2,6,6,3]{3,2,1,0} convolution(%g, %k_t), window={size=3x3 pad=2_2x2_2}, dim_labels=b01f_01io->b01f, metadata={op_name="jit(train_step)/transpose(jvp(Net))/Net.features/conv1/conv_general_dilated"}
  %x_t = f32[3,6,6,2]{3,2,1,0} transpose(%x), dimensions={3,1,2,0}
  %g_t = f32[4,4,2,4]{3,2,1,0} transpose(%g), dimensions={1,2,0,3}
  %kernel_grad = f32[3,3,3,4]{3,2,1,0} convolution(%x_t, %g_t), window={size=4x4}, dim_labels=b01f_01io->b01f, metadata={op_name="jit(train_step)/transpose(jvp(Net))/Net.features/conv1/conv_general_dilated"}
  %zero.1 = f32[] constant(0)
  %bias_grad = f32[4]{0} reduce(%relu_fusion, %zero.1), dimensions={0,1,2}, to_apply=%region_add, metadata={op_name="jit(train_step)/transpose(jvp(Net))/Net.features/conv1/reduce_sum"}
  %ar = f32[16,10]{1,0} all-reduce(%w), replica_groups={}, to_apply=%region_add
  %update = f32[16,10]{1,0} subtract(%w, %ar), metadata={op_name="jit(train_step)/sub"}
  %tok = token[] after-all()
  %out = token[] outfeed(%loss, %tok), outfeed_shape=f32[2,10]{1,0}
  ROOT %result = (f32[16,10]{1,0}, f32[3,3,3,4]{3,2,1,0}) tuple(%update, %kernel_grad)
}
'''
KERNELS = {'conv1': [(3, 3, 3, 4), (4,)], 'head': [(16, 10), (10,)]}

# (category, layer, phase, FLOPs) of the ops in HLO:
EXPECTED = {
    # 2 x 2*4*4*4 outputs x 3*3*3 taps
    'conv_fusion': (hlo_ops.CONV_FORWARD, 'conv1', hlo_ops.FORWARD, 6912),
    # one maximum per element: 2*4*4*4
    'relu_fusion': (hlo_ops.ELEMENTWISE, 'Net', hlo_ops.FORWARD, 128),
    # 2*2*2*4 outputs x (4 - 1) comparisons
    'pool': (hlo_ops.POOLING, 'Net', hlo_ops.FORWARD, 96),
    # 2 x 2*10 outputs x 16
    'dense': (hlo_ops.DOT, 'head', hlo_ops.FORWARD, 640),
    # exp is a transcendental, not a FLOP
    'loss': (hlo_ops.ELEMENTWISE, hlo_ops.LOSS, hlo_ops.FORWARD, 0),
    # no metadata: the layer of its user, input_grad
    'k_t': (hlo_ops.DATA_MOVEMENT, 'conv1', hlo_ops.BACKWARD, 0),
    # padded by 2: per spatial dimension 12 of the 6 x 3 (output, kernel) pairs read the
    # 4 input rows, so 2 x 2*3 (batch, output features) x 4 input features x 12*12
    'input_grad': (hlo_ops.CONV_INPUT_GRAD, 'conv1', hlo_ops.BACKWARD, 6912),
    # its result has conv1's kernel dimensions: 2 x 3*4 x 2 x (3*4)^2
    'kernel_grad': (hlo_ops.CONV_KERNEL_GRAD, 'conv1', hlo_ops.BACKWARD, 6912),
    # 128 inputs summed into 4
    'bias_grad': (hlo_ops.REDUCTION, 'conv1', hlo_ops.BACKWARD, 124),
    # no metadata: the layer of its user, the update
    'ar': (hlo_ops.COLLECTIVE, hlo_ops.OPTIMIZER, hlo_ops.UPDATE, 0),
    'update': (hlo_ops.ELEMENTWISE, hlo_ops.OPTIMIZER, hlo_ops.UPDATE, 160),
    'out': (hlo_ops.HOST_TRANSFER, hlo_ops.LOSS, hlo_ops.FORWARD, 0),
}


def test_hlo_ops_categories_layers_phases_and_flops():
  ops = hlo_ops.ops(HLO, KERNELS)
  got = {name: (op.category, op.layer, op.phase, op.flops) for name, op in ops.items()
         if name in EXPECTED}
  assert got == EXPECTED
  # Fused computations and reducers are not ops of their own.
  assert not {'conv.0', 'relu', 'm', 's'} & set(ops)


def test_hlo_bytes_and_inputs():
  ops = hlo_ops.ops(HLO, KERNELS)
  # Result 2*10 + operands 2*16 (the bitcast pool) and 16*10, 4 bytes each.
  assert ops['dense'].bytes == 4 * (20 + 32 + 160)
  assert ops['conv_fusion'].bytes == 4 * (128 + 216 + 108)
  assert ops['flat'].bytes == 0  # a bitcast moves nothing
  # dense reads the pool through the bitcast; parameters are no op's.
  assert ops['dense'].inputs == ('pool',)
  assert ops['kernel_grad'].inputs == ('g_t', 'x_t')
  assert ops['conv_fusion'].inputs == ()
  assert hlo.module_name(HLO) == 'jit_train_step'


def test_hlo_input_and_kernel_gradient_told_apart_by_the_kernel_shape():
  # Without the layer's kernel shapes, a backward convolution is an input gradient.
  assert hlo_ops.ops(HLO)['kernel_grad'].category == hlo_ops.CONV_INPUT_GRAD


def test_depthwise_gradients_categorised_with_their_flops_worked_out():
  """A depthwise layer's three convolutions, FLOPs by hand: N=4 images of 16x16 with
  C=8 channels, a 3x3 kernel per channel, SAME padding: each spatial dimension has
  16 * 3 - 2 = 46 (output, tap) pairs that read the input (the edge outputs miss
  one tap), so the forward pass and the input gradient are 2 * N * C * 46^2 =
  135,424 FLOPs each. XLA:CPU computes the kernel's gradient as a full convolution
  over every pair of channels, (C, 3, 3, C), and keeps its diagonal: C times that,
  1,083,392 FLOPs, and it was filed as an input gradient by the kernel-shape test."""
  import flax.linen as nn  # pylint: disable=import-outside-toplevel
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  from models.layers import DepthwiseConv2D  # pylint: disable=import-outside-toplevel

  class Net(nn.Module):
    @nn.compact
    def __call__(self, x):
      x = nn.Conv(8, (3, 3), name='conv')(x)
      # Squared, so that the gradient needs the forward pass (a plain sum would not).
      return jnp.square(DepthwiseConv2D(3, name='dw')(x)).sum()

  net, x = Net(), jnp.zeros((4, 16, 16, 3))
  params = net.init(jax.random.key(0), x)['params']
  grad = jax.jit(jax.grad(lambda p, x: net.apply({'params': p}, x)))
  ops = hlo_ops.ops(grad.lower(params, x).compile().as_text(), trace.kernel_shapes(params))
  flops = {}
  for op in ops.values():
    if op.layer == 'dw' and op.category.startswith('convolution'):
      flops.setdefault(op.category, []).append(op.flops)
  forward = 2 * 4 * 8 * 46**2
  assert flops == {hlo_ops.CONV_FORWARD: [forward], hlo_ops.CONV_INPUT_GRAD: [forward],
                   hlo_ops.CONV_KERNEL_GRAD: [8 * forward]}
  # The ordinary convolution's kernel gradient (its input needs none): 2 * N * 8 * 3 * 46^2.
  assert [(op.category, op.flops) for op in ops.values()
          if op.layer == 'conv' and op.phase == hlo_ops.BACKWARD
          and op.category.startswith('convolution')] == [
              (hlo_ops.CONV_KERNEL_GRAD, 2 * 4 * 8 * 3 * 46**2)]


@pytest.mark.parametrize('op_name, training, expected', [
    ('jit(train_step)/jvp(ResNet)/ResNet.features/conv2_block1/0_conv/conv_general_dilated',
     True, 'conv2_block1/0_conv'),
    ('jit(train_step)/transpose(jvp(ResNet))/ResNet.features/conv1_bn/conv1_bn/rsqrt', True,
     'conv1_bn'),  # a BatchNorm repeats its own name
    ('jit(train_step)/jvp(SeedCNN)/SeedCNN.features/reduce_window_max', True, 'SeedCNN'),
    ('jit(train_step)/transpose(jvp(jit(take_along_axis)))/scatter-add', True, hlo_ops.LOSS),
    ('jit(train_step)/jit(_where)/select_n', True, hlo_ops.OPTIMIZER),
    ('jit(forward)/SeedCNN/SeedCNN.features/conv1/conv_general_dilated', False, 'conv1'),
    ('jit(forward)/argmax', False, hlo_ops.OUTSIDE),
    ('', True, hlo_ops.UNNAMED),
])
def test_layer_from_op_name(op_name, training, expected):
  assert hlo_ops.layer(op_name, training) == expected


@pytest.mark.parametrize('model, shape', [('seed_cnn', (32, 32, 3)), ('seed_mlp', (32, 32, 3)),
                                          ('mobilenet_v2', (32, 32, 3))])
def test_hlo_flops_and_bytes_add_up_to_xla_cost_analysis(model, shape):
  """The per-op FLOPs and bytes of a compiled train step sum to XLA's own totals for
  the program (measured: within 0.001% and 0.002% for these three)."""
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  import optax  # pylint: disable=import-outside-toplevel
  import models  # pylint: disable=import-outside-toplevel
  from bench.workload import steps  # pylint: disable=import-outside-toplevel
  net, tx = models.create(model, num_classes=10, dtype=jnp.float32), optax.adam(1e-3)
  state = jax.eval_shape(steps.train_state_init(net, tx, shape, None), jax.random.key(0))
  batch = {'image': jax.ShapeDtypeStruct((4, *shape), jnp.float32),
           'label': jax.ShapeDtypeStruct((4,), jnp.int32)}
  compiled = jax.jit(steps.make_train_step(net, tx), donate_argnums=0).lower(
      state, batch).compile()
  ops = hlo_ops.ops(compiled.as_text(), trace.kernel_shapes(state.params))
  xla = compiled.cost_analysis()
  assert sum(op.flops for op in ops.values()) == pytest.approx(xla['flops'], rel=1e-4)
  assert sum(op.bytes for op in ops.values()) == pytest.approx(xla['bytes accessed'], rel=1e-3)
  layers = {op.layer for op in ops.values() if op.category == hlo_ops.CONV_FORWARD}
  if model == 'seed_cnn':
    assert layers == {'conv1', 'conv2', 'conv3'}
    kernel_grads = {op.layer for op in ops.values() if op.category == hlo_ops.CONV_KERNEL_GRAD}
    assert kernel_grads == {'conv1', 'conv2', 'conv3'}
