"""MFU and its inputs: analytic model FLOPs, datasheet peaks, uint8 normalisation in the
step, the compilation cache's cold/warm split, and the GPU check's refusal on a CPU."""

import io
import json
import os

import jax
import jax.numpy as jnp
from jax import lax
import pytest

from bench.core.errors import UserError
from bench.measure import compile_cache
from bench.measure import costs
from bench.measure import peaks
from bench.results import case_record
from bench.results import schema as report_lib
from bench.run import gpu_check
from bench.run import runner
from bench.run import suite
from bench.workload import build
import configs
from input_pipeline import options
from tests.conftest import build_case, call_cli


def test_model_flops_count_products_and_convolutions_of_the_jaxpr():
  x, w = jnp.ones((2, 8, 8, 3)), jnp.ones((3, 3, 3, 4))

  def conv(x, w, groups=1):
    return lax.conv_general_dilated(x, w, (1, 1), 'SAME', feature_group_count=groups,
                                    dimension_numbers=('NHWC', 'HWIO', 'NHWC'))

  forward = 2 * (2 * 8 * 8 * 4) * (3 * 3 * 3)  # two per multiply-add, padding taps included
  assert costs.model_flops(lambda x, w: jax.nn.relu(conv(x, w)).sum(), x, w) == forward
  # Both gradients: each as costly as the forward.
  assert costs.model_flops(jax.grad(lambda x, w: conv(x, w).sum(), (0, 1)), x, w) == 3 * forward
  # Stride 2: the input gradient skips the zeros between the dilated output gradient's
  # values, so it costs what the forward does (8 = 2 x 4: exactly).
  strided = lambda x, w: lax.conv_general_dilated(x, w, (2, 2), 'SAME',
                                                  dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
  forward2 = 2 * (2 * 4 * 4 * 4) * (3 * 3 * 3)
  assert costs.model_flops(lambda x, w: strided(x, w).sum(), x, w) == forward2
  assert costs.model_flops(jax.grad(lambda x, w: strided(x, w).sum(), (0, 1)), x, w) == 3 * forward2
  depthwise = jnp.ones((3, 3, 1, 3))
  assert costs.model_flops(lambda x, w: conv(x, w, 3), x, depthwise) == 2 * (2 * 8 * 8 * 3) * 9
  assert costs.model_flops(lambda a, b: a @ b, jnp.ones((5, 7)), jnp.ones((7, 3))) == 2 * 5 * 7 * 3
  # Inside a scan: once per iteration.
  scanned = lambda a: lax.scan(lambda c, _: (c @ a, None), a, None, length=4)[0]
  assert costs.model_flops(scanned, jnp.ones((6, 6))) == 4 * 2 * 6**3


@pytest.mark.parametrize('parallel', ['jit', 'pmap'])
def test_train_step_model_flops_of_the_seed_mlp(parallel):
  """Forward 2 x batch x weights; backward twice that, less the first layer's input
  gradient, which nothing asks for. The same under jit and pmap."""
  record, *_ = build_case(model='seed_mlp', batch_size=8, parallel=parallel)
  widths = [32 * 32 * 3, 128, 128, 256, 10]
  weights = sum(a * b for a, b in zip(widths, widths[1:]))
  forward = 2 * 8 * weights
  assert record['utilization']['model_flops'] == 3 * forward - 2 * 8 * widths[0] * widths[1]
  assert record['utilization']['hardware_flops'] == record['xla']['flops']
  assert record['utilization']['normalize_flops'] == 0


def test_datasheet_peaks_and_devices_without_one():
  assert peaks.datasheet('NVIDIA H200', 'bfloat16') == (989e12, 'NVIDIA H200 SXM (H200 '
                                                                'datasheet, 2024)')
  assert peaks.datasheet('NVIDIA H100 PCIe', 'bfloat16')[0] == 756e12
  assert peaks.datasheet('NVIDIA H100 80GB HBM3', 'float32')[0] == 494e12  # TF32
  assert peaks.datasheet('NVIDIA A100-SXM4-80GB', 'float16')[0] == 312e12
  assert peaks.datasheet('TPU v4', 'bfloat16')[0] == 275e12
  assert peaks.datasheet('Tesla V100-SXM2-16GB', 'bfloat16') == (
      None, 'NVIDIA V100 SXM2 (V100 datasheet, 2020) lists no bfloat16 rate')
  assert peaks.datasheet('cpu', 'float32') == (None, "unknown device 'cpu': no datasheet peak")


def test_mfu_is_model_flops_over_step_time_peak_and_devices():
  """Batch 64 on 2 devices, XLA's 3 GFLOP per device and 4 model GFLOP a step, timed
  steps of 20, 10 and 10 ms: the record's figures from what was measured."""
  case = type('Case', (), {'batch_size': 64})()

  def record(peak, samples):
    step = build.Compiled(lower_s=0.1, compile_s=1.0, cache='off', costs={'flops': 3e9},
                          memory={}, device_kind='x', dtype='float32', peak=(peak, 'test'),
                          model_flops=4e9, normalize_flops=0)
    timed = build.timed(case, samples, [0.0] * len(samples), sum(samples), 0, len(samples))
    return case_record.assemble('c', {}, 2, 32, built=build.Built({}, step=step),
                                timed=timed)

  measured = record(1e12, [0.02, 0.01, 0.01])
  use = measured['utilization']
  assert (use['hardware_flops'], measured['xla']['flops_per_example']) == (6e9, 3e9 / 32)
  assert use['mfu'] == pytest.approx(4e9 / (0.01 * 1e12 * 2))  # 20%
  assert use['hfu'] == pytest.approx(6e9 / (0.01 * 1e12 * 2))
  assert measured['throughput'] == pytest.approx({
      'examples_per_s': 6400, 'examples_per_s_per_device': 3200,
      'examples_per_s_total': 3 * 64 / 0.04, 'flops_per_s': 6e9 / 0.01})
  use = record(None, [0.01] * 3)['utilization']
  assert use['mfu'] is None and use['hfu'] is None


@pytest.mark.parametrize('mode', options.NORMALIZATIONS)
def test_uint8_input_costs_exactly_the_normalisation_flops(mode):
  """An eval step's XLA FLOPs with uint8 input exceed the float input's by
  normalize_flops: the normalisation is reported apart, and counted once."""
  fields = dict(model='seed_cnn', batch_size=4, benchmark='eval_step', normalization=mode)
  floats, *_ = build_case(**fields)
  uint8, _, _, batches = build_case(device_normalize=True, **fields)
  assert batches[0]['image'].dtype == jnp.uint8
  assert uint8['utilization']['normalize_flops'] == 4 * 32 * 32 * 3 * options.NORMALIZE_FLOPS[mode]
  assert uint8['xla']['flops'] - floats['xla']['flops'] == uint8['utilization']['normalize_flops']
  assert uint8['utilization']['model_flops'] == floats['utilization']['model_flops']


def _config(tmp_path):
  config = tmp_path / 'tiny.py'
  config.write_text('from configs import base\n'
                    'def get_config():\n'
                    '  c = base.get_config()\n'
                    '  c.warmup_steps, c.timed_steps = 1, 3\n'
                    '  return c\n')
  return str(config)


def test_compile_cache_keeps_cold_and_cached_compiles_apart(tmp_path):
  config, cache = _config(tmp_path), str(tmp_path / 'cache')

  def run(name, *flags):
    result = call_cli(f'--config={config}', f'--workdir={tmp_path / name}', *flags)
    assert result.returncode == 0, result.stderr
    with open(tmp_path / name / 'report.json', encoding='utf-8') as f:
      report = json.load(f)
    return report, (tmp_path / name / 'report.md').read_text()

  try:
    cold, cold_md = run('cold', f'--config.compile_cache={cache}')
    warm, warm_md = run('warm', f'--config.compile_cache={cache}')
    off, _ = run('off', '--config.compile_cache=')
  finally:  # the rest of the session caches where tests/conftest.py says
    compile_cache.configure(compile_cache.AUTO, str(tmp_path))
  assert [r['cases'][0]['compile_cache'] for r in (cold, warm, off)] == ['miss', 'hit', 'off']
  assert cold['environment']['compile_cache'] == cache and os.listdir(cache)
  assert off['environment']['compile_cache'] is None
  assert ' (cached) |' in warm_md and ' (cached) |' not in cold_md
  assert '## Utilisation' in cold_md
  assert "No MFU: unknown device 'cpu': no datasheet peak." in cold_md


def test_compile_cache_directory(monkeypatch):
  monkeypatch.delenv('JAX_COMPILATION_CACHE_DIR', raising=False)
  assert compile_cache.directory('auto', 'runs/w') == os.path.join(os.getcwd(), 'runs',
                                                                    '.jax_cache')
  assert compile_cache.directory('', 'runs/w') is None
  assert compile_cache.directory('~/c', 'runs/w') == os.path.expanduser('~/c')
  monkeypatch.setenv('JAX_COMPILATION_CACHE_DIR', '/shared/cache')
  assert compile_cache.directory('auto', 'runs/w') == '/shared/cache'


def test_gpu_check_refuses_to_run_on_a_cpu(tmp_path):
  result = call_cli(f'--workdir={tmp_path / "check"}', module='bench.gpu_check')
  assert result.returncode == 2
  assert result.stderr.startswith("error: no GPU visible to jax (backend 'cpu', devices: cpu); "
                                  "install the cuda12 extra")
  assert 'never falls back to the CPU' in result.stderr
  assert not (tmp_path / 'check').exists()


def test_gpu_check_refuses_a_platform_that_cannot_start():
  class NoCuda:  # jax with JAX_PLATFORMS=cuda and no GPU
    @staticmethod
    def default_backend():
      raise RuntimeError('Unable to initialize backend \'cuda\': no devices\nmore')

  with pytest.raises(UserError, match=r"^no GPU visible to jax \(Unable to initialize backend "
                                      r"'cuda': no devices\); install the cuda12 extra"):
    gpu_check.require_gpu(NoCuda)


def test_gpu_check_summary_table():
  record = report_lib.new_case('b256', {'batch_size': 256})
  record.update(status='ok', num_devices=1, compile_s=0.5, compile_cache='hit')
  record['throughput']['examples_per_s_per_device'] = 8000.0
  record['step_time_s']['median'] = 0.032
  record['utilization']['mfu'] = 0.21
  record['data_wait_s']['share'] = 0.01
  record['memory']['device_peak_bytes'] = 40 * 2**30
  report = {'cases': [record], 'environment': {'peaks': {
      'matmul_flops_per_s': {'bfloat16': 7e14}, 'copy_bytes_per_s': 4e12}}}
  text = gpu_check.summary([('resnet50', report, None), ('scaling', None, 'one device: no '
                                                         'scaling point')], 'NVIDIA H200')
  assert '| resnet50 | b256 | 1 | 256 | ok | 8000 | 32.0 | 21.0% | 1.0% | 40.0 | 0.500 (cached) |' \
      in text
  assert 'scaling: skipped (one device: no scaling point)' in text
  assert 'resnet50: measured peaks matmul bfloat16 700 TFLOP/s, copy 4000 GB/s' in text


def test_gpu_check_parts():
  """What make gpu-check runs: ResNet-50 b256 (and the real pipeline where tensorflow
  is), the scaling point only with more than one device, the seeds' four train steps."""
  parts = gpu_check.parts(device_count=1, with_tensorflow=True)
  assert [(part, skipped) for part, _, skipped in parts] == [
      ('resnet50', None), ('scaling', 'one device: no scaling point'), ('seeds', None)]
  resnet, seeds = suite.expand(parts[0][1]), suite.expand(parts[2][1])
  assert [name for name, _ in resnet.cases] == ['b256', 'b256_real']
  b256 = resnet.cases[0][1]
  assert (b256.model, b256.model_kwargs.to_dict(), b256.dtype, b256.batch_size,
          b256.image_shape, b256.device_normalize) == (
              'resnet50', {'variant': 'v1_5'}, 'bfloat16', 256, (224, 224, 3), True)
  assert [name for name, _ in seeds.cases] == ['mlp_b32', 'cnn_b32', 'mlp_b256', 'cnn_b256']
  scaling = gpu_check.parts(device_count=8, with_tensorflow=False)
  assert scaling[0][1].select == 'b256'
  assert (tuple(scaling[1][1].scaling.modes), tuple(scaling[1][1].scaling.device_counts)) == (
      ('weak',), (1, 8))


def test_gpu_check_runs_each_part_with_its_config_file(monkeypatch, tmp_path):
  """run() past the GPU check: each part's suite gets its config and the path of the
  shipped config file (the report's suite.config_file), one part's user error is
  listed and the others still run, and the exit status says a part did not."""
  calls = []

  def run_suite(config, workdir, config_file, restart):
    calls.append((config.name, os.path.basename(workdir), config_file, restart))
    if os.path.basename(workdir) == 'seeds':
      raise UserError('no such data')
    return {'cases': [], 'environment': {'peaks': None}}

  monkeypatch.setattr(gpu_check, 'require_gpu', lambda jax: None)
  # Not this test process's compilation cache (conftest's).
  monkeypatch.setattr(compile_cache, 'configure', lambda *args: None)
  monkeypatch.setattr(runner, 'run_suite', run_suite)
  out = io.StringIO()
  assert gpu_check.run(str(tmp_path), minutes=8, out=out) == 1
  assert [(part, restart) for _, part, _, restart in calls] == [('resnet50', True),
                                                                ('seeds', True)]
  assert [config_file for _, _, config_file, _ in calls] == [
      configs.resolve('gpu_resnet50'), configs.resolve('quickstart')]
  assert 'seeds: skipped (error: no such data)' in out.getvalue()
