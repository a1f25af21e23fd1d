"""The config loader (configs.load): --config.FIELD=VALUE overrides typed as their
field, every mistake one exact line and exit 2 with nothing written, an override
that no case reads refused."""

import os

import pytest

from bench.run import suite
import configs
from tests.conftest import call_cli, run_cli

_QUICK_CASES = 'mlp_b32, cnn_b32, mlp_b256, cnn_b256, cnn_shapes_b32'


@pytest.mark.parametrize('args, line', [
    *[((f'--config.{field}={value}',),
       f'--config.{field}={value} reaches no case: every case sets {field} itself '
       f"({_QUICK_CASES}), and a case's own field takes precedence over the base; override one "
       f'case with --config.cases.mlp_b32.{field}={value}')
      for field, value in (('model', 'resnet18'), ('model', 'resnet5'), ('model', 'resnet9000'),
                           ('batch_size', '-4'), ('batch_size', '0'))],
    (('--config.select=mlp_b32', '--config.model=resnet5'),
     "--config.model=resnet5 reaches no selected case: every selected case sets model itself "
     "(mlp_b32), and a case's own field takes precedence over the base; override one case with "
     '--config.cases.mlp_b32.model=resnet5'),
    (('--config.select=cnn_b32', '--config.cases.mlp_b32.batch_size=8'),
     '--config.cases.mlp_b32.batch_size=8 reaches no case: --config.select=cnn_b32 does not run '
     'mlp_b32'),
    (('--config.cases.mlp_b33.dataset=shapes',),
     f"--config.cases.mlp_b33.dataset=shapes: the config has no case 'mlp_b33'; its cases: "
     f'{_QUICK_CASES}'),
    (('--config.cases.mlp_b32.datset=shapes',),
     "unknown config field 'datset' in --config.cases.mlp_b32.datset=shapes; did you mean "
     "'dataset'?"),
    (('--config.cases.mlp_b32.batch_size=8', '--config.cases={}'),
     '--config.cases={} replaces all of cases, and with it --config.cases.mlp_b32.batch_size=8 '
     'given before; put the whole value first, then the override of a part'),
    (('--config.timed_steps=1.5',), "--config.timed_steps=1.5: timed_steps takes an integer, not "
     "'1.5'"),
    (('--config.learning_rate=fast',), "--config.learning_rate=fast: learning_rate takes a "
     "number, not 'fast'"),
    (('--config.profile=maybe',), "--config.profile=maybe: profile is True or False, not "
     "'maybe'"),
    (('--config.warmup_steps',), '--config.warmup_steps needs a value: '
     '--config.warmup_steps=VALUE'),
    (('--config.image_shape=(32, 32',), '--config.image_shape=(32, 32: image_shape takes a Python '
     'tuple literal, e.g. --config.image_shape="(32, 32, 3)"'),
    (('--config.model_kwargs=3',), '--config.model_kwargs=3: model_kwargs takes a Python dict '
     'literal, e.g. --config.model_kwargs="{\'key\': 1}"'),
    (('--config.=3',), '--config.=3: name a field, as in --config.batch_size=64 or '
     '--config.cases.CASE.batch_size=64'),
    (('--config.xyzzy=1',), "unknown config field 'xyzzy' in --config.xyzzy=1; every field, "
     f'with its default, is in {os.path.join(configs.DIRECTORY, "base.py")}'),
    (('--config.scaling.mode=weak',), "--config.scaling.mode=weak: scaling has no key 'mode' to "
     'override (it has device_counts, modes); give all of them at once: '
     '--config.scaling="{\'mode\': ...}"'),
    (('--config.ratios=3',), 'config.ratios entry 3 must be a pair of case names from: '
     f'{_QUICK_CASES}'),
    (('--frobnicate',), 'unrecognized arguments: --frobnicate; see python -m bench.main --help'),
])
def test_override_mistakes_are_one_exact_line(tmp_path, args, line):
  result = call_cli('--config=quickstart', f'--workdir={tmp_path / "wd"}', *args)
  assert (result.returncode, result.stderr) == (2, f'error: {line}\n')
  assert not os.listdir(tmp_path)


def test_an_override_reaches_the_cases_that_do_not_set_the_field(tmp_path):
  # num_classes: only cnn_shapes_b32 sets it; resize too, so a bad one is an error
  # in the first case it reaches.
  _, config = configs.load('quickstart', ['--config.num_classes=7'])
  cases = dict(suite.expand(config).cases)
  assert [cases[name].num_classes for name in ('mlp_b32', 'cnn_shapes_b32')] == [7, 0]
  result = call_cli('--config=quickstart', f'--workdir={tmp_path / "wd"}',
                    '--config.resize=squash')
  assert result.returncode == 2 and result.stderr == (
      "error: case 'mlp_b32': config field 'resize' = 'squash' must be one of resize, "
      'letterbox, center_crop\n')
  # A case's field it does not set itself is set for that case alone, typed as the base's.
  _, config = configs.load('quickstart', ['--config.cases.mlp_b32.dataset=shapes',
                                          '--config.cases.mlp_b32.num_classes=0',
                                          '--config.cases.cnn_b32.image_shape=[64, 64, 3]'])
  cases = dict(suite.expand(config).cases)
  assert (cases['mlp_b32'].dataset, cases['mlp_b32'].num_classes) == ('shapes', 0)
  assert cases['cnn_b32'].image_shape == (64, 64, 3)
  assert cases['mlp_b256'].dataset == 'synthetic' and cases['mlp_b256'].image_shape == (32, 32, 3)


def test_overrides_are_typed_as_the_field_they_replace(tmp_path):
  (tmp_path / 'none.py').write_text(
      'from configs import base\n\ndef get_config():\n  config = base.get_config()\n'
      '  with config.unlocked():\n    config.notes = None\n  return config\n')
  def values(*args):
    rest, overrides = configs.split(args)
    assert not rest
    return configs.load(str(tmp_path / 'none.py'), overrides)[1]
  config = values('--config.name=1', '--config.learning_rate=1', '--config.image_shape',
                  '(8, 8, 1)', '--config.profile', '--config.restore_best=true',
                  '--config.download=0', '--config.scaling.modes=weak',
                  '--config.model_kwargs={"head": "dropout:0.5"}', '--config.notes=[1, 2]')
  assert (config.name, config.learning_rate, config.image_shape) == ('1', 1.0, (8, 8, 1))
  assert (config.profile, config.restore_best, config.download) == (True, True, False)
  assert config.scaling.modes == ('weak',) and config.notes == [1, 2]
  assert config.model_kwargs.to_dict() == {'head': 'dropout:0.5'}
  assert values('--config.notes=plain text').notes == 'plain text'  # None: a literal or text
  assert values('--config.profile=F', '--config.profile=T').profile is True  # the last counts
  with pytest.raises(AttributeError):
    values().new_field = 1  # locked, as config_flags left it


@pytest.mark.parametrize('text, line', [
    ('x = 1\n', 'config file {path} has no get_config(); a config file defines get_config() '
     'returning an ml_collections.ConfigDict (see {quickstart})'),
    ('def get_config():\n  return 42\n', 'config file {path}: get_config() returned int 42, not '
     'an ml_collections.ConfigDict; return the config, e.g. base.get_config() with your fields '
     'set'),
])
def test_a_config_file_that_gives_no_config_is_one_line(tmp_path, text, line):
  (tmp_path / 'my.py').write_text(text)
  result = call_cli(f'--config={tmp_path / "my.py"}', f'--workdir={tmp_path / "wd"}')
  assert (result.returncode, result.stderr) == (2, 'error: ' + line.format(
      path=tmp_path / 'my.py', quickstart=os.path.join(configs.DIRECTORY, 'quickstart.py')) + '\n')
  assert sorted(os.listdir(tmp_path)) == ['my.py']
  directory = call_cli(f'--config={tmp_path}', f'--workdir={tmp_path / "wd"}')
  assert directory.returncode == 2 and directory.stderr.startswith(
      f'error: --config={tmp_path} is a directory, not a config file; pass a file or one of: ')


def test_a_config_file_that_raises_keeps_its_traceback(tmp_path):
  (tmp_path / 'bad.py').write_text('def get_config():\n  return 1 / 0\n')
  result = run_cli(f'--config={tmp_path / "bad.py"}', f'--workdir={tmp_path / "wd"}')
  assert result.returncode == 1
  assert 'Traceback' in result.stderr and 'bad.py", line 2, in get_config' in result.stderr
  assert result.stderr.splitlines()[-1] == 'ZeroDivisionError: division by zero'
