"""The GPU check's parts, each a suite with its report, and the one table it prints.

Its command line, and what it runs and why, is bench/gpu_check.py.
"""

import importlib.util
import os
import sys
import time

from bench.core.errors import UserError
import configs

MLPERF_IMAGES_PER_S = 7950  # MLPerf Training v4.0, 8x H200, ResNet-50: per GPU


def require_gpu(jax):
  """Raises UserError unless jax's default backend is a GPU."""
  try:
    backend = jax.default_backend()
  except RuntimeError as e:  # JAX_PLATFORMS names a platform that cannot start
    raise UserError(f'no GPU visible to jax ({str(e).splitlines()[0]}); install the cuda12 '
                    "extra (pip install -e '.[cuda12]', which make gpu-check does) and check "
                    'nvidia-smi, CUDA_VISIBLE_DEVICES and JAX_PLATFORMS') from None
  if backend != 'gpu':
    kinds = sorted({d.device_kind for d in jax.devices()})
    raise UserError(f'no GPU visible to jax (backend {backend!r}, devices: {", ".join(kinds)}); '
                    "install the cuda12 extra (pip install -e '.[cuda12]', which make gpu-check "
                    'does) and check nvidia-smi and CUDA_VISIBLE_DEVICES: this check never falls '
                    'back to the CPU')


def parts(device_count, with_tensorflow):
  """[(part, config or None, why it is skipped)] in the order they run."""
  # pylint: disable=import-outside-toplevel  (after the GPU check: see run)
  from configs import gpu_resnet50
  from configs import quickstart
  resnet = gpu_resnet50.get_config()
  resnet.select = 'b256,b256_real' if with_tensorflow else 'b256'
  scaling = gpu_resnet50.get_config()
  scaling.select = 'b256'
  scaling.scaling.modes = ('weak',)
  scaling.scaling.device_counts = (1, device_count)
  seeds = quickstart.get_config()
  seeds.select = 'mlp_b32,cnn_b32,mlp_b256,cnn_b256'
  return [('resnet50', resnet, None),
          ('scaling', scaling if device_count > 1 else None,
           None if device_count > 1 else 'one device: no scaling point'),
          ('seeds', seeds, None)]


def _gib(value):
  return 'n/a' if value is None else f'{value / 2**30:.1f}'


def rows(part, report):
  """The summary rows of one part's report."""
  # pylint: disable=import-outside-toplevel
  from bench.results.formatting import fmt, percent
  from bench.results.tables import compile_cell
  out = []
  for case in report['cases']:
    use, throughput = case['utilization'], case['throughput']
    out.append([part, case['name'], case['num_devices'], case['config']['batch_size'],
                case['status'], fmt(throughput['examples_per_s_per_device']),
                fmt(case['step_time_s']['median'], 1e3), percent(use['mfu']),
                percent(case['data_wait_s']['share']),
                _gib(case['memory']['device_peak_bytes']), compile_cell(case)])
  return out


def summary(results, device_kind):
  """The table gpu_check prints: `results` is [(part, report or None, why skipped)]."""
  # pylint: disable=import-outside-toplevel
  from bench.results.formatting import fmt, table
  body, notes = [], []
  for part, report, skipped in results:
    if report is None:
      notes.append(f'{part}: skipped ({skipped})')
      continue
    body += rows(part, report)
    peaks = report['environment']['peaks'] or {}
    matmul = peaks.get('matmul_flops_per_s') or {}
    notes.append(f'{part}: measured peaks ' + ', '.join(
        f'matmul {dtype} {fmt(flops, 1e-12)} TFLOP/s' for dtype, flops in matmul.items())
        + f', copy {fmt(peaks.get("copy_bytes_per_s"), 1e-9)} GB/s')
  lines = [f'GPU check on {device_kind}: images/s per device (MLPerf v4.0 H200: '
           f'{MLPERF_IMAGES_PER_S} per GPU), MFU against the datasheet peak, data wait share, '
           'peak device memory (GiB, the process\'s peak so far).', '']
  lines += table(('part', 'case', 'devices', 'batch', 'status', 'images/s/device', 'median ms',
                  'MFU', 'data wait', 'peak GiB', 'compile s'), body)
  return '\n'.join(lines + [''] + notes) + '\n'


def run(workdir, minutes, out=sys.stdout):
  """Runs the parts; returns the exit status."""
  import jax  # pylint: disable=import-outside-toplevel
  require_gpu(jax)
  # pylint: disable=import-outside-toplevel
  from bench.measure import compile_cache
  from bench.run import runner
  compile_cache.configure(compile_cache.AUTO, os.path.join(workdir, 'resnet50'))
  with_tensorflow = importlib.util.find_spec('tensorflow') is not None
  start, results = time.monotonic(), []
  for part, config, skipped in parts(jax.device_count(), with_tensorflow):
    if config is not None and time.monotonic() - start > minutes * 60:
      config, skipped = None, f'the {minutes}-minute budget was spent'
    if config is None:
      results.append((part, None, skipped))
      continue
    config_file = configs.resolve('quickstart' if part == 'seeds' else 'gpu_resnet50')
    try:
      report = runner.run_suite(config, os.path.join(workdir, part), config_file=config_file,
                                restart=True)
    except UserError as e:  # one part's problem (its data, say): the others still run
      results.append((part, None, f'error: {e}'))
      continue
    results.append((part, report, None))
  text = summary(results, jax.devices()[0].device_kind)
  if not with_tensorflow:
    text += 'resnet50: b256_real skipped (tensorflow is not installed: pip install -e .)\n'
  out.write(text)
  failed = any(report is None or any(c['status'] != 'ok' for c in report['cases'])
               for _, report, skipped in results if skipped != 'one device: no scaling point')
  return 1 if failed else 0
