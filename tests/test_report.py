"""The report schema: round trip, validation, rendering, atomic writes."""

import csv
import io
import json
import os

import pytest

from bench.core import fileio
from bench.results import markdown
from bench.results import schema as report_lib
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
  assert md.rstrip().endswith('not comparable (a case failed).')
  assert ('**cnn** has 0.500x the parameters of **mlp**, 10.0x its XLA FLOPs, and takes 50.0x '
          'its time per step. Parameter count points the wrong way, off by a factor of 100') in md
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
