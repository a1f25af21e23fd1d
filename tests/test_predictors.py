"""What predicts step time: the kernel predictions a run recorded, judged as they are,
beside proxies fitted on the other model families only; an older report still reads."""

import json

import numpy as np
import pytest

from bench.results import predictors
from bench.results import schema as report_lib
from bench.results import writer
from tests import test_report
from tests.conftest import call_cli

_MODELS = ('seed_mlp', 'seed_cnn', 'seed_cifar', 'width_net', 'resnet18', 'mobilenet_v2')
# Each family runs its FLOPs at its own rate: what a fit on the other families cannot know.
_RATE = (0.4, 2.5, 1.0, 3.0, 0.6, 1.6)


def _study(kernels=True):
  """24 timed cases of six families, time = 1e-10 * FLOPs ** 1.1 / the family's _RATE;
  each case's kernel prediction 1.1x its time, interval the prediction / 1.5 to x 1.5,
  but the last case's 2x (outside its interval)."""
  rng = np.random.default_rng(0)
  cases = []
  for model, rate in zip(_MODELS, _RATE):
    for size in range(4):
      flops = 10 ** rng.uniform(8, 11)
      seconds = 1e-10 * flops ** 1.1 / rate
      case = test_report._case(f'{model}_{size}', int(flops / 1e3), flops, seconds)
      case['config']['model'] = model
      case['memory']['temp_bytes'] = flops / 10
      if kernels:
        predicted = seconds * (2.0 if len(cases) == 23 else 1.1)
        case['kernels'].update(predicted_s=predicted, low_s=predicted / 1.5,
                               high_s=predicted * 1.5, why='')
      cases.append(case)
  return report_lib.build('synthetic', 'configs/x.py', test_report._ENV, cases, [])


def test_families_by_model_name():
  assert [predictors.family(m) for m in ('seed_mlp', 'seed_cifar', 'width_unet', 'resnet50',
                                         'xception', 'vit')] == [
      'MLPs', 'CIFAR nets', 'width nets', 'ResNets', 'Xception', 'vit']


def test_the_kernel_predictor_is_judged_as_recorded_and_proxies_on_other_families(monkeypatch):
  report = _study()
  seen = []
  real = predictors._proxy_predictor

  def recording(key, fitted):
    seen.append((key, {predictors.family(c['config']['model']) for c in fitted}))
    return real(key, fitted)

  monkeypatch.setattr(predictors, '_proxy_predictor', recording)
  result = predictors.judge(report)
  # Every proxy fitted once per held-out family, on the five others.
  assert len(seen) == 6 * len(predictors.FITTED) and all(len(f) == 5 for _, f in seen)
  errors = {row['proxy']: row for row in result['proxies']}
  kernel = errors[predictors.KERNELS]
  assert (kernel['n'], kernel['median'], kernel['worst']) == (24, pytest.approx(1.1),
                                                              pytest.approx(2.0))
  assert kernel['within'] == pytest.approx(23 / 24)
  assert errors[predictors.KERNEL_SUM]['n'] == 0  # no case had its kernels measured alone
  assert errors['flops']['median'] > 1.5  # a family's rate is not in the others'
  assert (result['inside'], result['judged']) == (23, 24)
  lines = predictors.markdown(result)
  assert lines[1:4] == ['## What predicts step time', '', predictors.verdict(result)]
  assert lines[3] == ('The kernel predictor, which never saw these models, predicts them '
                      'best: median fold error 1.10x over 24 cases (worst 2.00x), against '
                      '2.25x for the best proxy fitted on the other families (parameters).')
  assert ('| kernel predictor (sampled kernels only) | never fitted on a model | 24 | 1.10x | '
          '2.00x | 96% |') in lines
  assert 'Measured inside the kernel predictor\'s interval (its kernels\' held-out 10th-90th ' \
         'percentile errors added up): 23 of 24 cases.' in ' '.join(lines)
  # The kernel sum has no column where no case has one.
  assert not any(predictors.LABELS[predictors.KERNEL_SUM] in line for line in lines)


def test_the_verdict_names_a_proxy_that_beats_the_kernel_predictor():
  report = _study()
  for case in report['cases']:  # 3x off everywhere: any proxy does better
    case['kernels']['predicted_s'] = 3 * case['step_time_s']['median']
  verdict = predictors.verdict(predictors.judge(report))
  assert verdict.endswith('; the kernel predictor, which never saw these models, 3.00x.')
  assert 'fitted on the other families, predicts these cases best' in verdict


def test_without_kernel_predictions_or_enough_families_there_is_no_section():
  report = _study(kernels=False)
  one_family = dict(report, cases=[c for c in report['cases']
                                   if c['config']['model'] == 'seed_cnn'])
  assert predictors.judge(one_family) is None
  for case in one_family['cases']:
    case['kernels']['why'] = 'no kernel database at /x.db'
  assert predictors.missing(one_family) == (
      '"What predicts step time" needs kernel predictions (a run on a machine whose kernel '
      'database has sampled kernels: `flax-bench kernels sample`) or timed cases of 3 or more '
      'model families for the proxies; this report has 4 timed cases of 1 family: seed CNN. '
      'No kernel prediction: no kernel database at /x.db.')
  # Proxies alone, with enough families, and why there is no kernel prediction; the
  # kernel predictor alone, with one family.
  for case in report['cases']:
    case['kernels']['why'] = 'the kernel database is off'
  proxies = predictors.judge(report)
  assert proxies['judged'] == 0 and predictors.missing(report) is None
  assert predictors.markdown(proxies)[5].startswith(
      '24 timed cases. No kernel predictions: the kernel database is off. The proxies are ')
  with_kernels = _study()
  alone = dict(with_kernels, cases=with_kernels['cases'][4:8])
  result = predictors.judge(alone)
  assert {row['proxy']: row['n'] for row in result['proxies']}[predictors.KERNELS] == 4
  assert all(row['n'] == 0 for row in result['proxies'] if row['proxy'] in predictors.FITTED)


def test_a_report_of_the_schema_before_kernels_still_reads(tmp_path):
  report = _study(kernels=False)
  older = json.loads(json.dumps(report))
  older['schema_version'] = 11
  for case in older['cases']:
    del case['kernels']
  (tmp_path / 'report.json').write_text(json.dumps(older))
  assert report_lib.read(str(tmp_path / 'report.json'))['schema_version'] == 11
  assert predictors.judge(older)['judged'] == 0
  older['schema_version'] = report_lib.SCHEMA_VERSION  # this version's must have it
  with pytest.raises(ValueError, match=r"case keys differ from schema 12: missing \['kernels'\]"):
    report_lib.validate(older)


def test_analysis_command_shows_the_section_and_draws_the_predictions(tmp_path):
  writer.write(str(tmp_path), _study())
  result = call_cli(str(tmp_path / 'report.json'), f'--plots={tmp_path / "plots"}',
                    module='bench.analysis')
  assert result.returncode == 0, result.stderr
  assert '\n## What predicts step time\n' in result.stdout
  assert (tmp_path / 'plots' / 'predicted.png').stat().st_size > 0
  as_json = call_cli(str(tmp_path / 'report.json'), '--format=json', module='bench.analysis')
  judged = json.loads(as_json.stdout)['predictors']
  assert {row['family'] for row in judged['cases']} == {
      'MLPs', 'seed CNN', 'CIFAR nets', 'width nets', 'ResNets', 'MobileNetV2'}
