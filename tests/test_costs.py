"""Costs against numbers known exactly: parameter splits and analytic FLOPs."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import pytest

from bench.measure import costs
from bench.measure import peaks
from bench.results import schema as report_lib
import models
from tests.conftest import build_case

# Seed MLP: sum over its four Dense layers of inputs x outputs.
_MLP_DOT = 3072 * 128 + 128 * 128 + 128 * 256 + 256 * 10
_MLP_PARAMS = 445_450
_MLP_UNITS = 128 + 128 + 256 + 10  # bias adds per example
_MLP_RELUS = 128 + 128 + 256


@pytest.mark.parametrize('batch', [8, 64])
def test_seed_mlp_forward_flops_are_exact(batch):
  record, *_ = build_case(benchmark='forward', batch_size=batch)
  # 2 flops per multiply-add, plus one per bias add and one per ReLU.
  assert record['xla']['flops'] == 2 * batch * _MLP_DOT + batch * (_MLP_UNITS + _MLP_RELUS)
  assert record['xla']['transcendentals'] == 0
  # Arguments: float32 parameters and images; jit prunes what a forward pass does
  # not read (labels, step counter, RNG key).
  assert record['memory']['argument_bytes'] == 4 * _MLP_PARAMS + batch * 32 * 32 * 3 * 4


@pytest.mark.parametrize('dtype,itemsize', [('float32', 4), ('bfloat16', 2)])
def test_activation_bytes_are_the_leaf_layer_outputs(dtype, itemsize):
  record, *_ = build_case(benchmark='forward', batch_size=8, dtype=dtype)
  assert record['memory']['activation_bytes'] == 8 * _MLP_UNITS * itemsize
  # Seed CNN at 32x32: conv1 30x30x32, (pool) conv2 13x13x64, (pool) conv3 4x4x128,
  # then top/fc1 256 and top/predictions 10; `top` itself calls modules, so it is
  # not counted again, nor are ReLU and pooling (functions, not modules).
  record, *_ = build_case(model='seed_cnn', benchmark='compile', batch_size=4)
  assert record['memory']['activation_bytes'] == 4 * 4 * (
      30 * 30 * 32 + 13 * 13 * 64 + 4 * 4 * 128 + 256 + 10)


def test_peaks_grow_the_problem_until_a_call_is_long_enough(monkeypatch):
  timings = []

  def fake_seconds_per_call(call, calls):
    timings.append((call, calls))
    return call * 1e-3  # "call" is the size here: 1 ms per unit

  monkeypatch.setattr(peaks, '_seconds_per_call', fake_seconds_per_call)
  # Sizes 4 and 8 take less than 10 ms: 16 is the first long enough, timed one call at a time.
  assert peaks._grow(lambda size: size, (4, 1024), 2) == (16, 0.016)
  # At each size: a warm-up call and a timed one; at the last, the repeats too.
  assert timings == [(4, 1), (4, 1), (8, 1), (8, 1), (16, 1), (16, 1)] + [(16, 1)] * peaks._REPEATS
  # The largest size is used even when its calls are short, each timing then spanning
  # enough calls to last 10 ms (dispatch overhead spread over them).
  timings.clear()
  assert peaks._grow(lambda size: size, (1, 2), 2) == (2, 0.002)
  assert timings == [(1, 1), (1, 1), (2, 1), (2, 1)] + [(2, 5)] * peaks._REPEATS


def test_peaks_measure_every_dtype_on_the_device():
  measured = peaks.measure(['float32', 'bfloat16', 'float32'])
  assert set(measured) == set(report_lib.PEAK_KEYS)
  assert sorted(measured['matmul_flops_per_s']) == ['bfloat16', 'float32']
  for dtype, flops in measured['matmul_flops_per_s'].items():
    n = measured['matmul_size'][dtype]
    assert flops > 0 and 256 <= n <= 8192 and n & (n - 1) == 0
  assert measured['copy_bytes_per_s'] > 0 and measured['copy_bytes'] >= 64 << 20
  assert measured['device'] == 'cpu:0 cpu'


def test_seed_mlp_train_step_flops_match_analytic_count():
  flops = {}
  for batch in (8, 64):
    record, *_ = build_case(benchmark='train_step', batch_size=batch)
    flops[batch] = record['xla']['flops']
    # Forward, weight-gradient and input-gradient matmuls (none for the input
    # itself), plus Adam's ~13 elementwise flops per parameter.
    analytic = batch * (6 * _MLP_DOT - 2 * 3072 * 128) + 13 * _MLP_PARAMS
    assert flops[batch] == pytest.approx(analytic, rel=0.01)
    # One sqrt per parameter (Adam), exp of 10 logits and one log per example
    # (softmax cross-entropy), two bias-correction powers.
    assert record['xla']['transcendentals'] == _MLP_PARAMS + 11 * batch + 2
  # The per-example part is the matmuls to within 0.5%: elementwise work is small.
  per_example = (flops[64] - flops[8]) / 56
  assert 6 * _MLP_DOT - 2 * 3072 * 128 <= per_example <= 1.005 * (6 * _MLP_DOT - 2 * 3072 * 128)


class _TinyBN(nn.Module):
  num_classes: int = 10
  dtype: object = jnp.float32

  @nn.compact
  def __call__(self, x, train=False):
    x = nn.Conv(4, (3, 3), use_bias=False)(x)
    x = nn.BatchNorm(use_running_average=not train)(x)
    return nn.Dense(self.num_classes)(x.mean(axis=(1, 2)))


models.register('test_tiny_bn')(_TinyBN)


def test_batchnorm_statistics_are_non_trainable():
  record, *_ = build_case(model='test_tiny_bn', image_shape=(8, 8, 3))
  conv, bn_scale_bias, bn_stats, dense = 3 * 3 * 3 * 4, 2 * 4, 2 * 4, 4 * 10 + 10
  assert record['params'] == {'total': conv + bn_scale_bias + bn_stats + dense,
                              'trainable': conv + bn_scale_bias + dense,
                              'non_trainable': bn_stats}


def test_train_step_updates_batch_stats_and_donates_state():
  _, step, state, batches = build_case(model='test_tiny_bn', image_shape=(8, 8, 3))
  before = state.batch_stats['BatchNorm_0']['mean'].copy()
  new_state, metrics = step(state, batches[0])
  assert int(new_state.step) == 1
  assert not jnp.allclose(new_state.batch_stats['BatchNorm_0']['mean'], before)
  assert state.params['Conv_0']['kernel'].is_deleted()  # donated: updated in place
  assert set(metrics) == {'loss', 'accuracy'}


def test_memory_analysis_and_peaks():
  record, *_ = build_case(batch_size=16)
  memory = record['memory']
  # Arguments hold at least the float32 parameters and Adam's two moments.
  assert memory['argument_bytes'] >= 3 * 4 * _MLP_PARAMS
  # The donated state comes back in place: aliased output bytes cover the parameters.
  assert memory['alias_bytes'] >= 3 * 4 * _MLP_PARAMS
  assert memory['temp_bytes'] > 0
  assert costs.device_peak_bytes([_NoStats()]) is None
  assert costs.host_peak_rss_bytes() > 10 * 2**20


class _NoStats:
  """A device whose backend keeps no memory statistics, as on CPU."""

  def memory_stats(self):
    return None


class _FakeCompiled:
  """What costs.py reads of a compiled program: its cost analysis and HLO text."""

  def __init__(self, analysis=None, text=''):
    self._analysis, self._text = analysis, text

  def cost_analysis(self):
    return self._analysis

  def as_text(self):
    return self._text


def test_xla_costs_keeps_totals_and_marks_missing_analysis():
  full = _FakeCompiled({'flops': 10.0, 'bytes accessed': 20.0, 'bytes accessed0{}': 5.0,
                        'utilization0{}': 1.0})
  assert costs.xla_costs(full) == {'flops': 10.0, 'bytes_accessed': 20.0, 'transcendentals': 0.0}
  assert costs.xla_costs(_FakeCompiled(None)) == {
      'flops': None, 'bytes_accessed': None, 'transcendentals': None}


def test_collectives_count_result_bytes_of_each_collective_once():
  hlo = _FakeCompiled(text='\n'.join([
      'HloModule m, entry_computation_layout={()->f32[]}',
      '%sum (a: f32[], b: f32[]) -> f32[] {',
      '  %a = f32[] parameter(0)',
      '  %b = f32[] parameter(1)',
      '  ROOT %add = f32[] add(%a, %b)',
      '}',
      'ENTRY %main () -> f8e4m3fn[64] {',
      '  %all-reduce = (f32[4,3]{1,0}, f32[]) all-reduce(%dot, %r), channel_id=1, '
      'to_apply=%sum',  # 48 + 4
      '  %ag-start = (f8e4m3fn[8]{0}, f8e4m3fn[64]{0}) all-gather-start(%p)',  # counted at done
      '  %x = f32[2] add(%a, %b), metadata={op_name="= f32[9] all-reduce("}',  # not one
      '  %cb = pred[3] collective-broadcast(%q)',  # 3
      '  %t = ((f32[8]{0}), /*index=1*/bf16[2,2]{1,0}) reduce-scatter(%a, %b)',  # 32 + 8
      '  ROOT %ag-done = f8e4m3fn[64]{0} all-gather-done(%ag-start)',  # 64
      '}',
  ]))
  assert costs.collectives(hlo) == {'collective_bytes': 52 + 64 + 3 + 40, 'collective_ops': 4}
  assert costs.collectives(_FakeCompiled()) == {'collective_bytes': None, 'collective_ops': None}


def test_collectives_of_compiled_programs():
  # One device: jit's step has no collective; pmap keeps its one-member all-reduce of
  # the 3x5 float32 sum (60 bytes).
  x = jnp.ones((1, 3, 5), jnp.float32)
  psum = jax.pmap(lambda v: jax.lax.psum(v, 'i'), axis_name='i').lower(x).compile()
  assert costs.collectives(psum) == {'collective_bytes': 60, 'collective_ops': 1}
  jitted = jax.jit(lambda v: v * 2).lower(x).compile()
  assert costs.collectives(jitted) == {'collective_bytes': 0, 'collective_ops': 0}
