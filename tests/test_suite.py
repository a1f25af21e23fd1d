"""Suite expansion: override precedence, selection, validation; failing cases."""

import glob
import importlib
import json
import os

import pytest

from bench.core.errors import UserError
from bench.run import runner
from bench.run import suite
from configs import base
from configs import quickstart
from tests import exploding  # noqa: F401  (registers the model 'exploding')
from tests.conftest import REPO


def test_base_overrides_reach_cases_that_do_not_set_the_field():
  config = quickstart.get_config()
  config.timed_steps = 7  # as --config.timed_steps=7 does
  config.batch_size = 8  # every quickstart case sets its own batch size
  expanded = suite.expand(config)
  assert [name for name, _ in expanded.cases] == ['mlp_b32', 'cnn_b32', 'mlp_b256', 'cnn_b256',
                                                  'cnn_shapes_b32']
  assert [case.timed_steps for _, case in expanded.cases] == [7] * 5
  assert [case.batch_size for _, case in expanded.cases] == [32, 32, 256, 256, 32]
  assert [case.model for _, case in expanded.cases] == ['seed_mlp', 'seed_cnn'] * 2 + ['seed_cnn']
  assert [case.dataset for _, case in expanded.cases] == ['synthetic'] * 4 + ['shapes']
  assert expanded.ratios == [('cnn_b32', 'mlp_b32'), ('cnn_b256', 'mlp_b256')]


def test_config_without_cases_is_one_case_named_after_it():
  expanded = suite.expand(base.get_config())
  assert [name for name, _ in expanded.cases] == ['default']
  assert expanded.cases[0][1].model == 'seed_mlp' and 'cases' not in expanded.cases[0][1]


def test_select_keeps_order_and_drops_ratios_of_unselected_cases():
  config = quickstart.get_config()
  config.select = 'mlp_b256,cnn_b256'
  expanded = suite.expand(config)
  assert [name for name, _ in expanded.cases] == ['mlp_b256', 'cnn_b256']
  assert expanded.ratios == [('cnn_b256', 'mlp_b256')]


@pytest.mark.parametrize('mutate, message', [
    (lambda c: c.cases.mlp_b32.update(batch_size=0),
     "case 'mlp_b32': config field 'batch_size' = 0 must be an integer >= 1"),
    (lambda c: c.cases.cnn_b32.update(model='resnet9'),
     "case 'cnn_b32': config field 'model' = 'resnet9' must be one of .*seed_mlp"),
    (lambda c: c.update(warmup_steps=0), "'warmup_steps' = 0 must be an integer >= 1"),
    (lambda c: c.update(benchmark='backward'), "'benchmark' = 'backward' must be one of"),
    (lambda c: c.update(image_shape=(32, 32)), 'must be three positive integers'),
    (lambda c: c.update(ratios=(('cnn_b32', 'nope'),)), "config.ratios entry .* must be a pair"),
    (lambda c: c.cases.mlp_b32.update(model_kwargs={'width': 3}),
     "model 'seed_mlp' has no kwarg 'width' in model_kwargs; it accepts: features"),
])
def test_invalid_fields_are_user_errors(mutate, message):
  config = quickstart.get_config()
  config.unlock()
  mutate(config)
  with pytest.raises(UserError, match=message):
    suite.expand(config)


def test_unknown_fields_are_user_errors():
  config = base.get_config()
  config.batchsize = 3  # a typo in a config file
  with pytest.raises(UserError, match="unknown config field 'batchsize'"):
    suite.expand(config)
  config = quickstart.get_config()
  config.cases.mlp_b32.timedsteps = 3
  with pytest.raises(UserError, match="case 'mlp_b32' sets unknown field 'timedsteps'"):
    suite.expand(config)


def test_failing_case_is_recorded_and_the_suite_goes_on(tmp_path):
  config = base.get_config()
  config.name = 'mixed'
  config.warmup_steps, config.timed_steps = 1, 2
  config.cases = base.cases(boom=dict(model='exploding'), fine=dict(model='seed_mlp'))
  report = runner.run_suite(config, str(tmp_path))
  boom, fine = report['cases']
  assert boom['status'] == 'failed' and fine['status'] == 'ok'
  assert boom['error'] == 'MemoryError: RESOURCE_EXHAUSTED: pretend the device ran out of memory'
  assert boom['params']['total'] == 32 * 32 * 3 * 10 + 10  # measured before the failure
  assert boom['step_time_s']['median'] is None
  assert fine['step_time_s']['n'] == 2
  on_disk = json.loads((tmp_path / 'report.json').read_text())
  # Every case ran, one failed: the run failed (bench.main exits 1).
  assert on_disk['suite']['status'] == 'failed' and on_disk == report


def test_unwritable_workdir_is_a_user_error_and_writes_nothing(tmp_path):
  blocker = tmp_path / 'file'
  blocker.write_text('')
  with pytest.raises(UserError, match='cannot write to workdir .*Not a directory'):
    runner.run_suite(base.get_config(), str(blocker / 'sub'))
  assert os.listdir(tmp_path) == ['file']


@pytest.mark.fast
def test_every_config_in_configs_expands():
  """Each config file's cases are all valid here (init_from files, which only the
  seeds' users have, set aside), so a test that runs a few of them leaves none unchecked."""
  expected = {'cifar_ablation': 17, 'width_sweep': 9, 'scaling': 2 * 2 * 1, 'quickstart': 5,
              'gpu_resnet50': 6}
  for path in sorted(glob.glob(os.path.join(REPO, 'configs', '*.py'))):
    name = os.path.basename(path)[:-3]
    if name == '__init__':
      continue
    config = importlib.import_module(f'configs.{name}').get_config()
    config.init_from = ''
    for case in (config.cases or {}).values():
      if 'init_from' in case:
        case.init_from = ''
    cases = suite.expand(config).cases
    assert len(cases) == expected.get(name, len(cases)), name


def test_cars_resnet50_normalises_as_its_keras_weights_were_trained():
  """Keras's ResNet50 ImageNet weights saw caffe-style input (BGR, mean subtracted);
  torchvision's normalisation would give them inputs about 60x smaller."""
  config = importlib.import_module('configs.cars_resnet50').get_config()
  assert config.init_from.startswith('keras:')
  config.init_from = ''
  assert {case.normalization for _, case in suite.expand(config).cases} == {'caffe'}
