"""Profiles: HLO ops named and costed, trace time attributed, the report's section.

The HLO tests read a hand-written program whose every figure is worked out in
the comments; the end-to-end tests profile the seed CNN and MLP at tiny sizes
through bench.main.
"""

import copy
import json
import os

import jax
import numpy as np
import pytest

from bench.measure import hlo
from bench.profile import hlo_ops
from bench.profile import trace
from bench.results import analysis
from bench.results import compare
from bench.results import schema as report_lib
from tests.conftest import call_cli

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


def test_attribute_shares_overlapping_ops_and_counts_idle():
  a, b = ('cpu', 'thread a'), ('cpu', 'thread b')
  events = [(0, 10, 'x', a), (12, 20, 'y', a), (5, 15, 'z', b)]
  times, counts, idle = trace.attribute(events, (0, 25))
  # 0-5 x; 5-10 x and z halve it; 10-12 z; 12-15 y and z; 15-20 y; 20-25 nothing.
  assert times == {'x': 7.5, 'y': 6.5, 'z': 6.0}
  assert idle == 5
  assert counts == {'x': 1, 'y': 1, 'z': 1}
  # Clipped to the window.
  times, _, idle = trace.attribute(events, (8, 14))
  assert times == {'x': 1.0, 'z': 4.0, 'y': 1.0} and idle == 0


def test_attribute_nested_ops_count_for_their_parent_only_outside():
  thread = ('cpu', 'a')
  events = [(0, 10, 'while', thread), (2, 5, 'body', thread), (6, 7, 'body', thread)]
  times, counts, idle = trace.attribute(events, (0, 10))
  assert times == {'while': 6, 'body': 4} and idle == 0
  assert counts == {'while': 1, 'body': 2}


def test_async_host_op_lasts_until_an_op_reads_its_result():
  ops = {'dot': hlo_ops.Op('dot', 'dot', hlo_ops.DOT, 'l', hlo_ops.FORWARD, 0, 0),
         'fusion': hlo_ops.Op('fusion', 'fusion', hlo_ops.ELEMENTWISE, 'l', hlo_ops.FORWARD, 0, 0),
         'add': hlo_ops.Op('add', 'add', hlo_ops.ELEMENTWISE, 'l', hlo_ops.FORWARD, 0, 0,
                       inputs=('dot', 'fusion'))}
  thread = ('cpu', 'a')
  events = [(0, 1, 'dot', thread), (1, 2, 'fusion', thread), (8, 9, 'add', thread),
            (10, 11, 'dot', thread), (12, 13, 'add', thread)]
  extended = trace.until_consumed(events, ops)
  # dot runs until add starts; fusion, run in its own event, is not extended.
  assert [e[:2] for e in extended] == [(0, 8), (1, 2), (8, 9), (10, 12), (12, 13)]
  times, _, idle = trace.attribute(extended, (0, 13))
  assert times == {'dot': 9.5, 'fusion': 0.5, 'add': 2} and idle == 1


def _profiled_run(tmp_path, name, *overrides):
  workdir = tmp_path / name
  result = call_cli('--config=configs/base.py', f'--workdir={workdir}', '--config.warmup_steps=3',
                    '--config.timed_steps=10', *overrides)
  assert result.returncode == 0, result.stderr
  return workdir, json.loads((workdir / 'report.json').read_text())['cases'][0]


def test_profile_of_the_seed_cnn(tmp_path):
  """Every conv layer by name, its gradients told apart, and the attribution adds up
  to the profiled steps' time."""
  workdir, case = _profiled_run(tmp_path, 'cnn', '--config.model=seed_cnn',
                                '--config.batch_size=16', '--config.profile=True',
                                '--config.profile_steps=8')
  p = case['profile']
  # At least the 8 asked for, and enough for a tenth of a second of steps.
  assert p['steps'] == trace.steps_for(8, case['step_time_s']['median']) >= 8
  assert p['directory'] == 'profiles/default'
  assert os.path.exists(workdir / p['trace']) and p['trace'].endswith('.xplane.pb')
  assert not os.path.exists(workdir / 'profiles' / 'default.partial')
  # Ops and idle add up to a profiled step exactly. That step is the mean of the
  # profiled window; the median of its 8 steps is within 10% on a quiet machine, but
  # one step slowed by a neighbour moves the mean (it failed a full run once), so the test
  # only bounds it at 25%; the 10% coverage is measured over the study (issue notes).
  total = sum(row['time_s'] for row in p['categories'])
  assert total == pytest.approx(p['step_s'], rel=1e-9)
  assert total == pytest.approx(p['profiled_median_s'], rel=0.25)
  # The tracer's cost, estimated from its events, is left out of the coverage.
  assert 0 < p['tracer_s'] < 0.5 * p['step_s']
  assert p['coverage'] == pytest.approx((p['step_s'] - p['tracer_s'])
                                        / case['step_time_s']['median'])
  assert sum(row['time_s'] for row in p['ops']) == pytest.approx(p['op_s'], rel=1e-9)
  assert sum(p['phases'].values()) == pytest.approx(p['op_s'], rel=1e-9)
  by_layer = {row['layer'] for row in p['layers']}
  assert {'conv1', 'conv2', 'conv3', 'top/fc1', 'top/predictions'} <= by_layer
  kinds = {(row['layer'], row['category']) for row in p['ops']}
  for layer in ('conv1', 'conv2', 'conv3'):
    assert (layer, hlo_ops.CONV_FORWARD) in kinds and (layer, hlo_ops.CONV_KERNEL_GRAD) in kinds
  # The images are not differentiated: conv1 has no input gradient.
  assert ('conv2', hlo_ops.CONV_INPUT_GRAD) in kinds
  assert ('conv1', hlo_ops.CONV_INPUT_GRAD) not in kinds
  # Per step, the ops' FLOPs are the program's (every op runs once a step).
  assert sum(row['flops'] for row in p['ops']) == pytest.approx(case['xla']['flops'], rel=0.01)
  md = (workdir / 'report.md').read_text()
  assert '## Where the time goes' in md and '| conv2 |' in md
  assert (workdir / 'profile.png').stat().st_size > 0
  report_lib.validate(json.loads((workdir / 'report.json').read_text()))


def test_profile_changes_neither_timings_nor_weights_and_compiles_nothing(tmp_path, monkeypatch):
  compiles = []

  def listener(event, _, **unused):
    if 'compile' in event:  # tracing, lowering and compiling a jitted function
      compiles.append(event)

  jax.monitoring.register_event_duration_secs_listener(listener)
  during = []
  original = trace.profile

  def counted(*args, **kwargs):
    before = len(compiles)
    out = original(*args, **kwargs)
    during.append(len(compiles) - before)
    return out

  monkeypatch.setattr(trace, 'profile', counted)
  trace.tracer_cost_per_event()  # its probe compiles once per process: done here, first
  fields = ('--config.model=seed_mlp', '--config.batch_size=8')
  try:
    _, off = _profiled_run(tmp_path, 'off', *fields)
    _, on = _profiled_run(tmp_path, 'on', *fields, '--config.profile=True')
  finally:
    jax.monitoring.unregister_event_duration_listener(listener)
  assert compiles and during == [0]  # the profiled steps call the compiled step: nothing compiled
  assert off['profile']['steps'] is None
  assert on['profile']['steps'] == trace.steps_for(5, on['step_time_s']['median'])
  assert on['step_time_s']['n'] == off['step_time_s']['n'] == 10
  # The fingerprint is taken before the profiled steps train any further.
  assert on['fingerprint'] == off['fingerprint']
  assert on['xla'] == off['xla']
  assert {row['layer'] for row in on['profile']['layers']} >= {
      'Dense_0', 'Dense_1', 'Dense_2', 'Dense_3'}


def test_profile_needs_timed_steps(tmp_path):
  result = call_cli('--config=configs/base.py', f'--workdir={tmp_path / "w"}',
                    '--config.benchmark=compile', '--config.profile=True')
  assert result.returncode == 2
  assert ("profile=True traces extra timed steps, and benchmark 'compile' has none"
          in result.stderr)
  assert not os.path.exists(tmp_path / 'w')


def _profiled_case(name, layers, idle=0.001):
  """A report case with a profile of `layers` {name: seconds per step} (one conv each)."""
  case = report_lib.new_case(name, {'dtype': 'float32', 'benchmark': 'train_step'})
  rows = [{'layer': layer, 'time_s': t, 'flops': 2e9, 'bytes': 1e8, 'ops': 1}
          for layer, t in layers.items()]
  op_s = sum(layers.values())
  case['profile'].update(
      steps=5, step_s=op_s + idle, op_s=op_s, idle_s=idle, coverage=1.0,
      directory=f'profiles/{name}', layers=rows,
      categories=[{'category': hlo_ops.CONV_FORWARD, 'time_s': op_s, 'flops': 2e9 * len(rows),
                   'bytes': 1e8 * len(rows), 'ops': len(rows)},
                  {'category': hlo_ops.IDLE, 'time_s': idle, 'flops': 0.0, 'bytes': 0.0,
                   'ops': 0}],
      phases={hlo_ops.FORWARD: op_s})
  return case


def test_profile_changes_name_the_layer_that_got_slower():
  base = _profiled_case('c', {'conv1': 0.010, 'conv2': 0.020, 'conv3': 0.005})
  new = copy.deepcopy(base)
  new['profile']['layers'][1]['time_s'] = 0.040
  changes = compare.profile_changes('c', [compare.profile_times(base)],
                                    [compare.profile_times(new)])
  layers = [c for c in changes if c.kind == 'layer']
  assert (layers[0].name, layers[0].base, layers[0].new, layers[0].ratio) == (
      'conv2', 0.020, 0.040, 2.0)
  assert [c.name for c in changes if c.kind == 'category'] == [hlo_ops.CONV_FORWARD, hlo_ops.IDLE]
  # Medians over rounds (bench.ab): one slow round does not move them.
  rounds = [compare.profile_times(base)] * 2 + [compare.profile_times(new)]
  (same,) = [c for c in compare.profile_changes('c', rounds, rounds) if c.name == 'conv2']
  assert same.base == same.new == 0.020


def test_compare_shows_where_the_time_went_when_both_are_profiled():
  def report(case):
    env = {key: None for key in report_lib.ENVIRONMENT_KEYS}
    env.update(versions={}, git_commit=None, hostname='h')
    return report_lib.build('s', None, env, [case], [])
  base = _profiled_case('c', {'conv1': 0.010})
  new = copy.deepcopy(base)
  new['profile']['layers'][0]['time_s'] = 0.015
  text = compare.render(compare.compare(report(base), report(new)), 'text')
  assert 'WHERE THE TIME WENT' in text and 'layer conv1' in text and '1.500' in text
  unprofiled = report_lib.new_case('c', {'dtype': 'float32'})
  assert not compare.compare(report(base), report(unprofiled))['profiles']


def test_dominant_category_named_in_the_verdict():
  case = _profiled_case('seed_cnn', {'conv1': 0.006}, idle=0.004)
  top = analysis.dominant(case)
  assert top['category'] == hlo_ops.CONV_FORWARD and top['share'] == pytest.approx(0.6)
  assert top['bytes_per_s'] == pytest.approx(1e8 / 0.006)
  text = analysis._dominant_text({'dominant': top})  # pylint: disable=protected-access
  assert text == (f'; 60% of its profiled step in {hlo_ops.CONV_FORWARD} at 16.7 GB/s and 333 '
                  'GFLOP/s')
  assert analysis.dominant(report_lib.new_case('x', {})) is None
  assert np.isclose(sum(r['time_s'] for r in case['profile']['categories']),
                    case['profile']['step_s'])


def test_a_loop_body_runs_its_known_trip_count_times():
  """hlo.executions: a while loop's body runs as often as XLA's known trip count, its
  condition once more, everything else once."""
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel

  def f(x):
    return jax.lax.fori_loop(0, 7, lambda i, y: jnp.tanh(y @ y), x)

  ops = hlo_ops.ops(jax.jit(f).lower(jnp.ones((8, 8))).compile().as_text())
  (matmul,) = [op for op in ops.values() if op.category == hlo_ops.DOT]
  assert (matmul.executions, matmul.flops) == (7, 2 * 8**3)
  (loop,) = [op for op in ops.values() if op.opcode == 'while']
  assert loop.executions == 1
  assert sorted({op.executions for op in ops.values()}) == [1, 7, 8]


def test_short_steps_are_profiled_for_a_tenth_of_a_second():
  assert trace.steps_for(5, 0.4e-3) == 250  # ceil(0.1 / 0.0004)
  assert trace.steps_for(5, 0.1) == 5  # the steps asked for are the least
  assert trace.steps_for(5, 1e-6) == trace.MAX_STEPS
  assert trace.steps_for(5, None) == 5  # no timed median: as asked


def test_the_tracers_cost_is_left_out_of_the_coverage():
  op = hlo_ops.Op(name='dot.1', opcode='dot', category=hlo_ops.DOT, layer='Dense_0',
                  phase=hlo_ops.FORWARD, flops=2e6, bytes=1e4)
  # 10 steps: the dot ran 8 ms of them, nothing ran for 2 ms; the tracer added 0.1 ms a step.
  block = trace.summarize({'dot.1': op}, {'dot.1': 8e6}, {'dot.1': 10}, 2e6, 10, [1e-3] * 10,
                          timed_median=0.8e-3, tracer_s=1e-4)
  assert block['step_s'] == pytest.approx(1e-3) and block['tracer_s'] == 1e-4
  assert block['coverage'] == pytest.approx(0.9e-3 / 0.8e-3)
