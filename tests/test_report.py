"""The report schema: round trip, validation, rendering, atomic writes."""

import csv
import io
import json
import os

import pytest

from bench.core import fileio
from bench.results import markdown
from bench.results import schema as report_lib
from bench.results import significance
from bench.results import writer

_ENV = {'python': '3.11', 'versions': {'flax_bench': '0.1.0', 'jax': '0.10.2', 'flax': '0.12.8',
                                       'optax': '0.2.8'},
        'backend': 'cpu', 'device_kind': 'cpu', 'device_count': 1, 'local_device_count': 1,
        'process_count': 1, 'devices_per_process': [1], 'cpu_model': 'test cpu',
        'cpu_count': 2, 'xla_flags': None, 'compile_cache': None,
        'git_commit': 'abcdef0123456789', 'git_dirty': True, 'hostname': 'h',
        'command': 'x', 'timestamp_utc': '2026-01-01T00:00:00+00:00',
        'peaks': {'device': 'cpu:0 cpu', 'matmul_flops_per_s': {'float32': 1e11},
                  'matmul_size': {'float32': 1024}, 'copy_bytes_per_s': 1e10,
                  'copy_bytes': 1 << 26, 'repeats': 5, 'seconds': 0.5}}


def _case(name, params, flops, median):
  case = report_lib.new_case(name, {'model': name, 'batch_size': 32, 'dtype': 'float32',
                                    'benchmark': 'train_step'})
  case['status'] = 'ok'
  case['params'] = {'total': params, 'trainable': params, 'non_trainable': 0}
  case['xla'].update(flops=flops, bytes_accessed=2 * flops, transcendentals=0.0,
                     flops_per_example=flops / 32)
  case['step_time_s'].update(median=median, mean=median, min=median, max=median, p10=median,
                             p90=median, iqr=0.0, iqr_over_median=0.0, n=2,
                             samples=[median, median])
  return case


def _report():
  cases = [_case('mlp', 400, 1e6, 0.001), _case('cnn', 200, 1e7, 0.05)]
  failed = report_lib.new_case('big', {'model': 'x'})
  failed['error'] = 'XlaRuntimeError: RESOURCE_EXHAUSTED: out of memory'
  return report_lib.build('t', 'configs/t.py', _ENV, cases + [failed],
                          [('cnn', 'mlp'), ('big', 'mlp')])


@pytest.mark.fast
def test_round_trip(tmp_path):
  report = _report()
  writer.write(str(tmp_path), report)
  assert report_lib.load(str(tmp_path / 'report.json')) == report
  assert sorted(os.listdir(tmp_path)) == ['report.csv', 'report.json', 'report.md']


def test_ratios_and_verdict():
  report = _report()
  cnn_mlp = report['ratios'][0]
  assert cnn_mlp == {'numerator': 'cnn', 'denominator': 'mlp', 'params': 0.5, 'flops': 10.0,
                     'bytes_accessed': 10.0, 'step_time': 50.0, 'epoch_time': None}
  assert report['ratios'][1]['step_time'] is None
  md = markdown.to_markdown(report)
  assert '\n- big vs mlp: not comparable (a case failed).\n' in md
  assert ('\n- **cnn** has 0.500x the parameters of **mlp**, 10.0x its XLA FLOPs, and takes '
          '50.0x its time per step. Parameter count points the wrong way: the parameter ratio '
          '(0.500x) misses the time ratio (50.0x) by a factor of 100, the FLOPs ratio (10.0x) '
          'by 5.00.\n') in md
  assert '| cnn / mlp | 0.500x | 10.0x | 10.0x | 50.0x |' in md
  assert '- big: XlaRuntimeError: RESOURCE_EXHAUSTED' in md
  assert md.splitlines()[2].startswith('flax-bench 0.1.0, jax 0.10.2, flax 0.12.8')


def test_csv_has_one_row_per_case_without_samples():
  rows = list(csv.DictReader(io.StringIO(writer.to_csv(_report()))))
  assert [row['name'] for row in rows] == ['mlp', 'cnn', 'big']
  assert rows[1]['params.total'] == '200' and rows[1]['model'] == 'cnn'
  assert rows[2]['status'] == 'failed' and rows[2]['step_time_s.median'] == ''
  assert not any('samples' in column for column in rows[0])
  # The run's identity first in every row; whole numbers (XLA's float counts) as integers.
  assert list(rows[0])[:5] == ['suite', 'harness_version', 'git_commit', 'device_kind',
                               'jax_version']
  assert [rows[1][k] for k in ('suite', 'git_commit', 'device_kind', 'jax_version')] == [
      't', 'abcdef0123456789', 'cpu', '0.10.2']
  assert rows[1]['harness_version'] == '0.1.0'
  assert rows[1]['xla.flops'] == '10000000' and rows[1]['step_time_s.median'] == '0.05'


def test_validate_rejects_schema_drift():
  report = _report()
  del report['cases'][0]['xla']['flops']
  with pytest.raises(ValueError, match=r"case 'mlp' xla keys differ .*missing \['flops'\]"):
    report_lib.validate(report)
  report = _report()
  report['schema_version'] = 0
  with pytest.raises(ValueError, match='schema_version 0'):
    report_lib.validate(report)


def test_failed_render_leaves_previous_report_intact(tmp_path):
  writer.write(str(tmp_path), _report())
  before = {name: (tmp_path / name).read_text() for name in report_lib.FILES}
  broken = _report()
  broken['cases'][0]['step_time_s']['median'] = float('nan')  # not valid JSON
  with pytest.raises(ValueError):
    writer.write(str(tmp_path), broken)
  assert {name: (tmp_path / name).read_text() for name in report_lib.FILES} == before
  assert sorted(os.listdir(tmp_path)) == sorted(report_lib.FILES)


def test_atomic_write_interrupted_before_rename(tmp_path, monkeypatch):
  path = tmp_path / 'report.json'
  path.write_text('{"old": true}')

  def killed(src, dst):
    raise KeyboardInterrupt  # the process dies between writing and renaming
  monkeypatch.setattr(os, 'replace', killed)
  with pytest.raises(KeyboardInterrupt):
    fileio.atomic_write_text(str(path), json.dumps({'new': True}))
  assert json.loads(path.read_text()) == {'old': True}
  assert os.listdir(tmp_path) == ['report.json']


def test_a_ratio_across_batches_says_so_and_gives_it_per_example():
  cnn = _case('cnn', 200, 8e7, 0.4)
  cnn['config']['batch_size'] = 256
  shaped = _case('big_input', 200, 4e7, 0.2)
  shaped['config']['image_shape'] = (64, 64, 3)
  mlp = _case('mlp', 400, 1e6, 0.001)
  mlp['config']['image_shape'] = cnn['config']['image_shape'] = (32, 32, 3)
  report = report_lib.build('t', 'configs/t.py', _ENV, [mlp, cnn, shaped],
                            [('cnn', 'mlp'), ('big_input', 'mlp')])
  md = markdown.to_markdown(report)
  # 400x the time per step for 8x the examples: 50x per example.
  assert ('takes 400x its time per step. Parameter count points the wrong way: the parameter '
          'ratio (0.500x) misses the time ratio (400x) by a factor of 800, the FLOPs ratio '
          '(80.0x) by 5.00. **Not like with like**: batch 256 against 32, so these ratios '
          'compare different work per step; per example, it takes 50.0x its time.\n') in md
  # Another input shape: no per-example figure makes the work the same.
  assert ('**Not like with like**: input 64x64x3 against 32x32x3, so these ratios compare '
          'different work per step.\n') in md


def test_sections_a_report_cannot_have_say_what_they_need():
  md = markdown.to_markdown(_report())
  assert md.endswith(
      '\n## Sections not in this report\n\n'
      '- "Does parameter count predict step time?" needs 4 or more timed cases with status ok '
      '(input-only cases do not count); this report has 2.\n'
      '- "What predicts step time" needs kernel predictions (a run on a machine whose kernel '
      'database has sampled kernels: `flax-bench kernels sample`) or timed cases of 3 or more '
      'model families for the proxies; this report has 2 timed cases of 2 families: cnn, mlp.\n'
      '- "What predicts peak memory" needs timed cases on one CPU device whose step buffers '
      'take at least 32.0 MiB, of 3 or more model families; this report has 0 such cases.\n')
  gpu = _report()
  gpu['environment'] = {**gpu['environment'], 'backend': 'gpu'}  # not the shared _ENV
  assert ('- "What predicts peak memory" needs a run on CPU: a step\'s peak is measured there '
          'only; this report ran on gpu.\n') in markdown.to_markdown(gpu)
  # A report with no timed case (compile-only, say) is not about these sections.
  compiled = report_lib.build('t', 'configs/t.py', _ENV, [], [])
  assert 'Sections not in this report' not in markdown.to_markdown(compiled)


def test_noisy_cases_get_a_line_and_quiet_ones_do_not():
  quiet, noisy = _case('quiet', 400, 1e6, 0.001), _case('noisy', 400, 1e6, 0.581)
  quiet['step_time_s'].update(iqr_over_median=0.05, n=50)
  # The loaded machine's cnn_b256: IQR/median 0.96 over 50 steps.
  noisy['step_time_s'].update(iqr_over_median=0.96, n=50)
  md = markdown.to_markdown(report_lib.build('t', 'configs/t.py', _ENV, [quiet, noisy], []))
  assert ('\n**Noisy**: noisy (IQR/median 0.960, +-25%): each median is known to about that much '
          'either way (95%, from its IQR and step count as if the steps were independent; '
          'bursts of load make it worse), the ratio of two such medians to 1.4 times that: too '
          'loose to read a 10% difference. Rerun on a quieter machine or with more '
          '--config.timed_steps.\n') in md
  assert 'quiet (IQR' not in md
  assert significance.noise_line('quiet', quiet['step_time_s']) is None
  assert significance.noise_line('noisy', noisy['step_time_s']) == (
      'noisy: noisy samples (IQR/median 0.960 over 50 steps): its median is known to about '
      '+-25% (95%), the ratio of two such medians to +-35%: too loose to read a 10% '
      'difference; rerun on a quieter machine or with more --config.timed_steps')
  # The threshold: at 50 steps an IQR/median of 0.27 still reads a 10% difference, 0.28 not.
  assert not significance.noisy({'median': 1.0, 'iqr_over_median': 0.27, 'n': 50})
  assert significance.noisy({'median': 1.0, 'iqr_over_median': 0.28, 'n': 50})


def test_evaluation_says_what_was_trained_and_what_chance_is():
  shapes = _case('cnn_shapes_b32', 226_118, 1e9, 0.074)
  shapes['dataset'].update(name='shapes', num_classes=6)
  shapes['eval'].update(split='train[80%:]', num_examples=72, loss=1.85, accuracy=7 / 72,
                        wall_s=1.1)
  shapes['timing'].update(warmup_steps=10, timed_steps=50)
  shapes['num_devices'] = 1
  shapes['utilization'].update(device_kind='cpu', dtype='float32', model_flops=1.11e9,
                               hardware_flops=0.973e9, normalize_flops=0.0,
                               peak_source="unknown device 'cpu': no datasheet peak")
  md = markdown.to_markdown(report_lib.build('t', 'configs/t.py', _ENV, [shapes], []))
  # 7 of 72 right: the Wilson interval 4.8%-18.7% holds chance (1/6), so it is no
  # evidence of anything, and the table says so.
  assert ('| cnn_shapes_b32 | shapes | train[80%:] | 72 | 60 steps | 1.85 | 9.7% | 4.8%-18.7% | '
          '16.7% | 1.10 |') in md
  assert 'an accuracy whose interval holds chance is no evidence of learning' in md
  # The seed CNN's XLA count is below its model FLOPs: the note says why.
  assert ("but not the multiply-adds that read padding, which the model FLOPs count: a 'same' "
          "convolution's border, and the zero border a convolution's input gradient reads (a "
          "'full' convolution of the output's gradient), so a CNN's XLA FLOPs can fall below "
          'its model FLOPs.') in md
