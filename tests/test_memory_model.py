"""What predicts peak memory: XLA's buffers against parameters, leave one family out,
on cases whose measured peaks follow a known law."""

import pytest

from bench.results import memory_model
from bench.results import schema as report_lib
from bench.results import writer
from tests import test_report
from tests.conftest import call_cli

MIB = 2 ** 20


def _case(name, model, params, buffers, measured):
  case = test_report._case(name, params, buffers * 10.0, buffers * 1e-9)
  case['config']['model'] = model
  case['num_devices'] = 1
  # Arguments + outputs - aliased + temps = buffers.
  case['memory'].update(argument_bytes=buffers // 2, output_bytes=buffers // 2,
                        alias_bytes=buffers // 4, temp_bytes=buffers // 4,
                        host_step_peak_bytes=measured)
  return case


def _report():
  """Three families whose peaks are 1.5 * buffers + 20 MiB exactly, parameters
  telling little: the MLPs have the most parameters and the smallest peaks."""
  cases = []
  for model, params, sizes in (('seed_mlp', 4e7, (40, 60)), ('resnet18', 1e7, (100, 300)),
                               ('mobilenet_v2', 3e6, (80, 200))):
    for size in sizes:
      cases.append(_case(f'{model}_{size}', model, int(params * size / 40), size * MIB,
                         int(1.5 * size * MIB + 20 * MIB)))
  cases.append(_case('tiny', 'seed_cnn', 1000, 8 * MIB, 30 * MIB))  # under MIN_BUFFERS
  return report_lib.build('memory', 'configs/x.py', test_report._ENV, cases, [])


def test_buffers_are_what_the_step_holds_at_once():
  case = _case('c', 'seed_mlp', 10, 64 * MIB, 100 * MIB)
  assert memory_model.buffers(case) == 64 * MIB
  case['memory']['temp_bytes'] = None
  assert memory_model.buffers(case) is None


def test_leave_one_family_out_on_a_known_law():
  result = memory_model.leave_one_family_out(_report())
  rows = {r['name']: r for r in result['cases']}
  assert 'tiny' not in rows  # its buffers are under MIN_BUFFERS: not judged
  assert {r['family'] for r in rows.values()} == {'MLPs', 'ResNets', 'MobileNetV2'}
  # XLA's buffers, as is, miss the law's 1.5x and 20 MiB: worked out per case.
  by_proxy = {p['proxy']: p for p in result['proxies']}
  errors = sorted((1.5 * s + 20) / s for s in (40, 60, 100, 300, 80, 200))
  assert by_proxy[memory_model.BUFFERS]['worst'] == pytest.approx(errors[-1])
  assert by_proxy[memory_model.BUFFERS]['median'] == pytest.approx((errors[2] + errors[3]) / 2)
  # Fitted on the other families, a * buffers + b recovers the law for the one held out.
  assert by_proxy[memory_model.BUFFERS_FIT]['worst'] == pytest.approx(1.0, abs=1e-6)
  assert rows['resnet18_300']['predicted'][memory_model.BUFFERS_FIT] == pytest.approx(
      470 * MIB, rel=1e-6)
  # Parameters point the wrong way across families: a poor predictor.
  assert by_proxy[memory_model.PARAMS]['median'] > 2
  assert all(p['n'] == 6 for p in result['proxies'])


def test_too_few_families_or_no_measured_peaks_is_no_table():
  report = _report()
  report['cases'] = [c for c in report['cases'] if c['config']['model'] != 'resnet18']
  assert memory_model.leave_one_family_out(report) is None
  assert memory_model.markdown(None) == []
  # report.md says what the section needs instead ('tiny' is under MIN_BUFFERS).
  assert memory_model.missing(report) == (
      '"What predicts peak memory" needs timed cases on one CPU device whose step buffers '
      'take at least 32.0 MiB, of 3 or more model families; this report has 4 such cases of '
      '2 families: MLPs, MobileNetV2.')
  assert memory_model.missing(_report()) is None
  # On a GPU the step's buffers are not in the process's resident memory: no judgement.
  gpu = _report()
  gpu['environment'] = {**gpu['environment'], 'backend': 'gpu'}  # not the shared dict
  assert memory_model.usable(gpu) == [] and memory_model.leave_one_family_out(gpu) is None
  assert memory_model.missing(gpu) == ('"What predicts peak memory" needs a run on CPU: a '
                                       "step's peak is measured there only; this report ran "
                                       'on gpu.')
  several = _report()
  for case in several['cases']:
    case['num_devices'] = 2  # buffers per device, the peak the process's: not compared
  assert memory_model.usable(several) == []


def test_analysis_command_prints_the_memory_table(tmp_path):
  writer.write(str(tmp_path), _report())
  result = call_cli(str(tmp_path / 'report.json'), module='bench.analysis')
  assert result.returncode == 0, result.stderr
  assert '## What predicts peak memory (leave one family out)' in result.stdout
  assert "| a * XLA's buffers + b | 6 | 1.00x | 1.00x |" in result.stdout
  assert '| resnet18_300 | ResNets | 75.0 | 470 |' in result.stdout
