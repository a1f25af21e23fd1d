"""The kernel predictors: features read exactly from a compiled kernel, a known law
recovered on held-out rows, a kind with too few rows on the roofline, intervals
that hold what they say."""

import math
import pickle

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bench.results import kernel_model
from bench.run import kernel_sampler

CACHES = (32 * 2**10, 2**20, 32 * 2**20)


def _only(kernels, kind):
  (kernel,) = [k for k in kernels if k.kind == kind]
  return vars(kernel)


def test_convolution_features_are_read_from_its_module():
  # 2 images of 9x9x3, a 3x3 kernel to 4 features, stride 2, SAME: 5x5 out, padding
  # 1 each side, so 2 + 3 + 3 + 3 + 2 = 13 valid taps per dimension.
  def conv(x, w):
    return jax.lax.conv_general_dilated(x, w, (2, 2), 'SAME',
                                        dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
  x, w = jax.ShapeDtypeStruct((2, 9, 9, 3), jnp.float32), jax.ShapeDtypeStruct((3, 3, 3, 4), jnp.float32)
  kernel = _only(kernel_sampler.program_kernels(conv, (x, w)), 'convolution')
  got = kernel_model.features(kernel, CACHES)
  flops = 2 * 2 * 4 * 3 * 13 * 13
  nbytes = 4 * (2 * 9 * 9 * 3 + 3 * 3 * 3 * 4 + 2 * 5 * 5 * 4)
  assert got == {
      'log_flops': math.log10(1 + flops), 'log_bytes': math.log10(1 + nbytes),
      'log_intensity': math.log10((flops + 1) / (nbytes + 1)),
      'log_out_elements': math.log10(1 + 2 * 5 * 5 * 4),
      'log_largest_operand': math.log10(1 + 4 * 2 * 9 * 9 * 3),
      'cache_level': 0, 'fused_ops': 1, 'transcendental_ops': 0, 'operands': 2, 'outputs': 1,
      'batch': 2, 'out_spatial': 25, 'in_spatial': 81, 'window': 9, 'in_features': 3,
      'out_features': 4, 'stride': 4, 'groups': 1, 'lhs_dilate': 1, 'rhs_dilate': 1,
      # 13 x 13 valid (position, tap) pairs of 5 x 5 positions x 9 taps; NHWC/HWIO labels.
      'valid_taps': pytest.approx(13 * 13 / (5 * 5 * 9)), 'lhs_batch_at': 0,
      'rhs_output_at': 3, 'out_features_at': 3}


def test_dot_features_and_a_transposed_operand():
  # (6, 5) @ (7, 5)^T: M 6, N 7, K 5; the right operand contracts its minor dimension.
  a, b = jax.ShapeDtypeStruct((6, 5), jnp.float32), jax.ShapeDtypeStruct((7, 5), jnp.float32)
  kernel = _only(kernel_sampler.program_kernels(lambda a, b: a @ b.T, (a, b)), 'dot')
  got = kernel_model.features(kernel, CACHES)
  assert {k: got[k] for k in kernel_model.OWN['dot']} == {
      'm': 6, 'n': 7, 'k': 5, 'batch': 1, 'lhs_k_minor': 1, 'rhs_k_minor': 1}
  assert got['log_flops'] == math.log10(1 + 2 * 6 * 7 * 5)
  assert got['cache_level'] == 0 and got['operands'] == 2


def _law_rows(n, seed, kind='elementwise'):
  """Elementwise kernels of 1 to 1e7 elements and 1 to 8 fused ops (one a tanh
  in three), timed by the law 2 us + FLOPs / 1e10 + bytes / 1e9, times 5% noise."""
  rng = np.random.default_rng(seed)
  rows = []
  for i in range(n):
    elements = int(10 ** rng.uniform(0, 7))
    ops = ('add',) * int(rng.integers(1, 9)) + (('tanh',) if i % 3 == 0 else ())
    operands = int(rng.integers(1, 4))
    flops, nbytes = elements * len(ops), 4 * elements * (operands + 1)
    law = 2e-6 + flops / 1e10 + nbytes / 1e9
    rows.append({'kind': kind, 'key': f'{seed}-{i}', 'module': '', 'flops': float(flops),
                 'bytes': float(nbytes), 'ops': ops, 'parameters': (f'f32[{elements}]',) * operands,
                 'result': f'f32[{elements}]', 'median_s': law * math.exp(rng.normal(0, 0.05)),
                 'law': law})
  return rows


def test_a_known_law_is_recovered_on_held_out_rows():
  model = kernel_model.fit(_law_rows(300, seed=0), peaks=(1e10, 1e9), caches=CACHES)
  held_out = _law_rows(200, seed=1)
  predicted = model.predict_all(held_out)
  folds = [max(p / r['law'], r['law'] / p) for r, (p, _, _) in zip(held_out, predicted)]
  # Against the noise-free law (2% and 6% here): the median within 5%, nine in ten
  # within 12%.
  assert np.median(folds) < 1.05
  assert np.percentile(folds, 90) < 1.12
  errors = model.errors()['elementwise']
  assert errors['n'] == 300 and errors['signatures'] == 300
  assert errors['model'] in kernel_model.CANDIDATES
  assert set(errors['compared']) == set(kernel_model.CANDIDATES)
  # The kept predictor is the one of least held-out median error.
  assert errors['median'] == min(c['median'] for c in errors['compared'].values())
  # The intervals (10th-90th percentile of held-out ratios) hold about 80% of new rows.
  inside = [low <= r['median_s'] <= high for r, (_, low, high) in zip(held_out, predicted)]
  assert 0.65 <= np.mean(inside) <= 0.95
  # A pickled model predicts the same.
  again = pickle.loads(pickle.dumps(model))
  assert again.predict(held_out[0]) == predicted[0]


def test_rows_that_did_not_run_as_timed_are_left_out_and_peaks_are_the_sessions():
  rows = _law_rows(60, seed=4)
  big = max(range(1, 60), key=lambda i: rows[i]['bytes'])
  rows[0]['median_s'] = 1e-14  # an unresolved call's floor
  rows[big]['median_s'] = kernel_model.roofline(rows[big], (1e10, 1e9)) / 20  # hoisted
  model = kernel_model.fit(rows, peaks=(1e10, 1e9), caches=CACHES)
  assert model.errors()['elementwise']['n'] == 58
  for i, row in enumerate(rows):  # each session's probed peaks: the best of them count
    row.update(matmul_flops_per_s=1e10 - i, copy_bytes_per_s=1e9 - i)
  assert kernel_model.measured_peaks(rows) == (1e10, 1e9)
  assert kernel_model.fit(rows, caches=CACHES).peaks == (1e10, 1e9)


def test_a_kind_with_too_few_kernels_falls_back_to_the_roofline():
  rows = _law_rows(60, seed=2) + _law_rows(kernel_model.MIN_SIGNATURES - 1, seed=3, kind='fill')
  model = kernel_model.fit(rows, peaks=(1e10, 1e9), caches=CACHES)
  errors = model.errors()
  assert errors['fill']['model'] == 'fallback' and errors['fill']['median'] is None
  assert 'under 6' in errors['fill']['note']
  row = rows[-1]
  bound = max(row['flops'] / 1e10, row['bytes'] / 1e9)
  seconds, low, high = model.predict(row)
  assert seconds == bound / model.utilisation
  assert low == min(bound, seconds) and high == seconds * kernel_model.FALLBACK_SPREAD
  # A kind never sampled: the same fallback.
  assert model.predict({**row, 'kind': 'scatter'}) == (seconds, low, high)
