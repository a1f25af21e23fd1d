"""The real command line: the quickstart end to end, and every user error."""

import csv
import importlib.metadata
import importlib.util
import json
import logging as std_logging
import os
import re
import signal
import subprocess
import sys

import pytest

from bench.core import logs
from bench.results import kernel_store
from bench.results import schema as report_lib
from bench.run import predict as predict_lib
import configs
from tests.conftest import REPO, call_cli, run_cli

QUICK = ('--config=configs/quickstart.py', '--config.warmup_steps=1', '--config.timed_steps=3')
BASE = '--config=configs/base.py'


@pytest.mark.fast
def test_quickstart_end_to_end(tmp_path):
  workdir = tmp_path / 'wd'
  result = run_cli(*QUICK, f'--workdir={workdir}', f'--config.data_dir={tmp_path / "data"}')
  assert result.returncode == 0, result.stderr
  report = report_lib.load(str(workdir / 'report.json'))
  assert report['suite'] == {'name': 'quickstart', 'config_file': 'configs/quickstart.py',
                             'status': 'complete', 'notes': ''}
  cases = {case['name']: case for case in report['cases']}
  assert list(cases) == ['mlp_b32', 'cnn_b32', 'mlp_b256', 'cnn_b256', 'cnn_shapes_b32']
  for case in cases.values():
    assert case['status'] == 'ok', case['error']
    assert case['step_time_s']['n'] == 3 and len(case['step_time_s']['samples']) == 3
    assert case['timing']['warmup_steps'] == 1
    assert case['throughput']['examples_per_s'] == pytest.approx(
        case['config']['batch_size'] / case['step_time_s']['median'])
    assert case['compile_s'] > 0 and case['xla']['flops'] > 0
    assert case['memory']['device_peak_bytes'] is None  # CPU keeps no device statistics
    # ... but its steps' resident peak is measured: at least the step's parameters
    # and Adam's moments, no more than the whole process holds.
    assert (12 * case['params']['total'] <= case['memory']['host_step_peak_bytes']
            <= case['memory']['host_peak_rss_bytes'])
  assert cases['mlp_b256']['params']['total'] == 445_450
  assert cases['cnn_b256']['params']['total'] == 227_146
  # From the generated images: 6 classes, exact evaluation over the held-out fifth.
  shapes = cases['cnn_shapes_b32']
  assert shapes['params']['total'] == 227_146 - 4 * 257 and shapes['config']['num_classes'] == 6
  assert shapes['dataset']['train_examples'] == 288 and shapes['eval']['num_examples'] == 72
  assert 0 <= shapes['data_wait_s']['share'] <= 1
  assert all(cases[name]['data_wait_s']['share'] < 0.5 for name in ('mlp_b32', 'cnn_b256'))
  # The CNN has fewer parameters but more FLOPs per example.
  assert cases['cnn_b32']['xla']['flops_per_example'] > cases['mlp_b32']['xla']['flops_per_example']
  env = report['environment']
  assert env['backend'] == 'cpu' and env['versions']['jax'] and env['device_count'] >= 1
  assert sorted(env['peaks']['matmul_flops_per_s']) == ['float32']
  assert env['peaks']['matmul_flops_per_s']['float32'] > 0 < env['peaks']['copy_bytes_per_s']
  md = (workdir / 'report.md').read_text()
  assert md.index('## Parameters vs FLOPs vs time') > md.index('| cnn_b256 | ok |')
  assert '| cnn_b256 / mlp_b256 | 0.510x |' in md
  assert '\n- **cnn_b256** has 0.510x the parameters' in md
  # Five timed cases: the analysis section comes last, with its plots.
  assert md.index('## Does parameter count predict step time?') > md.index('- **cnn_b256**')
  assert '| parameters | 5 |' in md
  assert (workdir / 'proxies.png').stat().st_size > 0 < (workdir / 'roofline.png').stat().st_size
  rows = list(csv.DictReader((workdir / 'report.csv').open()))
  assert [row['name'] for row in rows] == list(cases)
  # Quiet: the suite's own lines, no library's start-up chatter (jax probing for a TPU).
  lines = result.stderr.splitlines()
  assert all(re.match(r'\d\d:\d\d:\d\d ', line) for line in lines), result.stderr
  assert lines[0].endswith('[1/5] mlp_b32: seed_mlp train_step on synthetic, batch 32 over 1 '
                           'devices (jit), float32')
  assert not any('tpu' in line or 'oneDNN' in line for line in lines), result.stderr


@pytest.mark.parametrize('args, message', [
    (('--workdir={wd}',), 'missing --config; pass --config=configs/quickstart.py'),
    (('--config=configs/nope.py', '--workdir={wd}'),
     "config file 'configs/nope.py' does not exist here"),
    ((QUICK[0],), 'missing --workdir'),
    ((*QUICK, '--workdir={wd}', '--config.cases.cnn_b32.model=resnet9'),
     "case 'cnn_b32': config field 'model' = 'resnet9' must be one of (.*, )?mobilenet_v2, .*, seed_cnn"),
    ((BASE, '--workdir={wd}', '--config.model=resnet50', '--config.model_kwargs={{"head": "dense:x"}}'),
     "case 'default': model_kwargs of 'resnet50': head item 'dense:x' is not dropout:RATE"),
    ((BASE, '--workdir={wd}', '--config.model=xception', '--config.model_kwargs={{"include_top": False}}'),
     "case 'default': include_top=False makes 'xception' return features, not logits, so "
     "benchmark 'train_step' has no loss"),
    ((BASE, '--workdir={wd}', '--config.model=resnet18', '--config.model_kwargs={{"variant": "v2"}}'),
     "model_kwargs of 'resnet18': variant 'v2' must be one of keras, v1_5"),
    ((*QUICK, '--workdir={wd}', '--config.model_kwargs.variant=v1_5'),
     "--config.model_kwargs.variant=v1_5: model_kwargs has no key 'variant' to override; give "
     "all of them at once"),
    ((*QUICK, '--workdir={wd}', '--config.init_from=keras:/no/such.h5'),
     "init_from 'keras:/no/such.h5': /no/such.h5 does not exist; Keras "
     "keeps the .h5 files keras.applications downloads in ~/.keras/models/: give yours with "
     "--config.init_from=keras:PATH"),
    ((*QUICK, '--workdir={wd}', '--config.init_from=/no/such.h5'),
     "init_from '/no/such.h5' must be keras:/path/weights.h5 or orbax:/path/checkpoint_dir"),
    ((*QUICK, '--workdir={wd}', '--config.batch_sise=8'),
     "unknown config field 'batch_sise' in --config.batch_sise=8; did you mean 'batch_size'?"),
    ((*QUICK, '--workdir={wd}', '--config.cases.mlp_b32.batch_size=0'),
     "case 'mlp_b32': config field 'batch_size' = 0 must be an integer >= 1"),
    ((*QUICK, '--workdir={wd}', '--config.timed_steps=0'),
     "config field 'timed_steps' = 0 must be an integer >= 1"),
    ((*QUICK, '--workdir={wd}', '--config.warmup_steps=-1'),
     "config field 'warmup_steps' = -1 must be an integer >= 1"),
    ((*QUICK, '--workdir={blocked}/wd'), r"cannot write to workdir '.*/file/wd' \(Not a directory\)"),
])
@pytest.mark.fast
def test_user_errors_exit_2_with_one_line_and_write_nothing(tmp_path, args, message):
  (tmp_path / 'file').write_text('')
  workdir = tmp_path / 'wd'
  args = [a.format(wd=workdir, blocked=tmp_path / 'file') for a in args]
  result = call_cli(*args)
  assert result.returncode == 2, result.stderr
  errors = [line for line in result.stderr.splitlines() if line.startswith('error: ')]
  assert len(errors) == 1, result.stderr
  assert re.search(message, errors[0]), errors[0]
  assert 'Traceback' not in result.stderr
  assert sorted(os.listdir(tmp_path)) == ['file']


# Imported only by the code paths that use them (seconds each on a small CPU).
_HEAVY = ('tensorflow', 'tensorflow_datasets', 'clu', 'matplotlib', 'orbax', 'scipy', 'keras')


def _modules_after(code):
  """The top-level packages of _HEAVY and jax that a fresh Python process has
  imported after running `code`, a SystemExit included."""
  script = (f'import sys\ntry:\n  exec({code!r})\nexcept SystemExit:\n  pass\n'
            f'print(sorted({{m.split(".")[0] for m in sys.modules}} & {set(_HEAVY + ("jax",))}))')
  result = subprocess.run([sys.executable, '-c', script], cwd=REPO, capture_output=True,
                          text=True, timeout=600, check=True)
  return result.stdout.strip().splitlines()[-1]


def test_a_config_mistake_and_help_import_neither_jax_nor_the_heavy_libraries():
  for argv in (['bench.main', '--config=configs/quickstart.py', '--workdir=/nonexistent/x',
                '--config.no_such_field=1'], ['bench.main', '--help'],
               ['bench.predict', '--help'], ['bench.overhead', '--help'],
               ['bench.overhead', '--config=quickstart', '--config.model=x'],
               ['bench.visualize', '--help'], ['bench.convert_keras', '--help']):
    code = (f'import runpy, sys\nsys.argv = {argv!r}\n'
            f'runpy.run_module({argv[0]!r}, run_name="__main__")')
    assert _modules_after(code) == '[]', argv


def test_a_synthetic_timing_case_never_imports_tensorflow(tmp_path):
  code = ('from bench.run import runner\nfrom configs import base\n'
          'config = base.get_config()\nconfig.warmup_steps, config.timed_steps = 1, 2\n'
          f'runner.run_suite(config, {str(tmp_path / "wd")!r})')
  assert _modules_after(code) == "['jax']"
  assert report_lib.load(str(tmp_path / 'wd' / 'report.json'))['cases'][0]['status'] == 'ok'


def test_default_logging_keeps_the_suites_lines_and_every_warning():
  def record(name, level, path, message):
    return std_logging.LogRecord(name, level, path, 1, message, None, None)
  own = record('absl', std_logging.INFO, os.path.join(REPO, 'bench', 'run', 'runner.py'), '[1/5] x')
  chatter = record('jax._src.xla_bridge', std_logging.INFO, '/venv/jax/_src/xla_bridge.py',
                   "Unable to initialize backend 'tpu'")
  fallback = record('jax._src.xla_bridge', std_logging.WARNING, '/venv/jax/_src/xla_bridge.py',
                    'falling back to cpu')
  ours = record('absl', std_logging.WARNING, os.path.join(REPO, 'bench', 'run', 'suite.py'),
                'case x: strong scaling skips 3 devices')
  assert [logs._quiet(r) for r in (own, chatter, fallback, ours)] == [True, False, True, True]
  plain = logs._Plain()
  assert re.fullmatch(r'\d\d:\d\d:\d\d \[1/5\] x', plain.format(own))
  assert re.fullmatch(r'\d\d:\d\d:\d\d warning \(jax._src.xla_bridge\): falling back to cpu',
                      plain.format(fallback))
  assert re.fullmatch(r'\d\d:\d\d:\d\d warning: case x: strong scaling skips 3 devices',
                      plain.format(ours))


def test_native_start_up_info_lines_are_dropped_and_the_rest_kept(tmp_path, monkeypatch, capfd):
  """TensorFlow's C++ start-up notices reach file descriptor 2 before any log level can
  be set: the first import of such a package drops absl's INFO lines, keeps the rest."""
  (tmp_path / 'noisy_native.py').write_text(
      'import os\n'
      "os.write(2, b'WARNING: All log messages before absl::InitializeLog() is called are "
      "written to STDERR\\n')\n"
      "os.write(2, b'I0000 00:00:1796476487.337581   10713 port.cc:153] oneDNN custom "
      "operations are on.\\n')\n"
      "os.write(2, b'W1205 13:14:05.123456   10713 cpu.cc:9] a real warning\\n')\n"
      "os.write(2, b'not a log line\\n')\n"
      'VALUE = 7\n')
  monkeypatch.syspath_prepend(str(tmp_path))
  monkeypatch.setattr(sys, 'meta_path', [logs.QuietNativeImport(('noisy_native',)),
                                         *sys.meta_path])
  try:
    # Asked whether it is there first (as etils asks of tensorflow): the import is still caught.
    assert importlib.util.find_spec('noisy_native') is not None
    import noisy_native  # pylint: disable=import-outside-toplevel,import-error
    assert noisy_native.VALUE == 7
  finally:
    sys.modules.pop('noisy_native', None)
  assert capfd.readouterr().err == ('W1205 13:14:05.123456   10713 cpu.cc:9] a real warning\n'
                                    'not a log line\n')


def test_configs_resolve_to_the_shipped_ones_unless_a_local_file_exists(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  shipped = os.path.join(configs.DIRECTORY, 'quickstart.py')
  for name in ('quickstart', 'quickstart.py', 'configs/quickstart.py'):
    assert configs.resolve(name) == shipped
  assert configs.resolve('./configs/quickstart.py') == shipped
  assert configs.resolve('other/quickstart.py') is None and configs.resolve('nope') is None
  # The last --config counts, in either form.
  assert configs.load('quickstart')[0] == shipped
  from bench import main  # pylint: disable=import-outside-toplevel
  args = main.parse(main.parser('m', ''), ['--config=nope', '--config', 'quickstart'])
  assert args.config_file == shipped and args.config.name == 'quickstart'
  (tmp_path / 'configs').mkdir()
  (tmp_path / 'configs' / 'quickstart.py').write_text('')
  assert configs.resolve('configs/quickstart.py') == 'configs/quickstart.py'  # local wins
  assert configs.resolve('quickstart') == shipped
  assert {'base', 'quickstart', 'gpu_resnet50'} <= set(configs.shipped())
  assert '__init__' not in configs.shipped()


def test_a_shipped_config_by_name_from_another_directory(tmp_path):
  result = run_cli('--config=quickstart', '--workdir=w', '--config.select=mlp_b32',
                   '--config.timed_steps=2', '--config.warmup_steps=1', cwd=tmp_path)
  assert result.returncode == 0, result.stderr
  report = json.loads((tmp_path / 'w' / 'report.json').read_text())
  assert report['suite']['config_file'] == os.path.join(configs.DIRECTORY, 'quickstart.py')
  assert report['environment']['versions']['flax_bench'] == importlib.metadata.version(
      'flax-bench')
  missing = call_cli('--config=configs/nope.py', f'--workdir={tmp_path / "x"}')
  assert missing.returncode == 2 and missing.stderr.startswith(
      "error: config file 'configs/nope.py' does not exist here and is not a shipped config; "
      'pass a path or one of: base, cars_feature_extract,')


@pytest.mark.fast
def test_flax_bench_entry_point():
  command = os.path.join(os.path.dirname(sys.executable), 'flax-bench')
  run = lambda *args: subprocess.run([command, *args], capture_output=True, text=True,
                                     timeout=120, check=False)
  help_ = run('--help')
  assert help_.returncode == 0
  for text in ('  run            run a config', '  compare  ', '  gpu-check  ', 'quickstart',
               'seed_cnn', 'resnet50', 'docs/configuration.md'):
    assert text in help_.stdout, text
  unknown = run('nope')
  assert unknown.returncode == 2 and unknown.stderr.startswith("error: unknown subcommand 'nope'")
  # A subcommand is its module: the same flags, errors and exit statuses.
  bad = run('run', '--config=nope', '--workdir=x')
  assert bad.returncode == 2 and "config file 'nope' does not exist here" in bad.stderr
  assert run('compare').returncode == 2


_QUICK_CASES = 'mlp_b32, cnn_b32, mlp_b256, cnn_b256, cnn_shapes_b32'


@pytest.mark.parametrize('module, args, line', [
    ('bench.overhead', ('--config=quickstart', '--repeats=0'),
     "argument --repeats: '0' is not an integer >= 1; see python -m bench.overhead --help"),
    ('bench.overhead', ('--config=quickstart', '--steps=0'),
     "argument --steps: '0' is not an integer >= 1; see python -m bench.overhead --help"),
    ('bench.overhead', ('--config=quickstart', '--config.model=x'),
     '--config.model=x reaches no case: every case sets model itself '
     f"({_QUICK_CASES}), and a case's own field takes precedence over the base; override one "
     'case with --config.cases.mlp_b32.model=x'),
    ('bench.visualize', ('--workdir=w', '--images=a.png', '--out=o'),
     'missing --case; usage: python -m bench.visualize --workdir=DIR --case=NAME '
     '--images=a.jpg,b.png --out=OUTDIR'),
    ('bench.visualize', ('--workdir=w', '--case=c', '--images=a.png', '--out=o'),
     'w/report.json does not exist: --workdir must be the workdir of a training run'),
    ('bench.convert_keras', ('--model=resnet50', '--weights=.', '--out=o'),
     '--weights . is a directory, not a file; give the path of a Keras .h5 file'),
    ('bench.predict', ('--config=quickstart', '--config.batch_size=0'),
     '--config.batch_size=0 reaches no case: every case sets batch_size itself '
     f"({_QUICK_CASES}), and a case's own field takes precedence over the base; override one "
     'case with --config.cases.mlp_b32.batch_size=0'),
])
def test_command_lines_print_only_their_error_line(tmp_path, module, args, line):
  """In a fresh process: no TensorFlow, jax or absl start-up line before the error."""
  result = run_cli(*args, module=module, cwd=tmp_path)
  assert (result.returncode, result.stderr, result.stdout) == (2, f'error: {line}\n', '')
  assert not os.listdir(tmp_path)


def test_an_unknown_overhead_case_after_the_imports_is_still_one_line(tmp_path):
  result = run_cli('--config=quickstart', '--case=nope', module='bench.overhead', cwd=tmp_path)
  assert (result.returncode, result.stderr) == (
      2, f'error: --case=nope is not a case of the config; cases: {_QUICK_CASES}\n')


def test_ctrl_c_in_predict_is_one_line_and_exit_130(monkeypatch, tmp_path):
  def interrupted(*args):
    del args
    os.kill(os.getpid(), signal.SIGINT)  # as Ctrl-C: the handlers predict set turn it over
    raise AssertionError('SIGINT was not delivered')
  monkeypatch.setattr(predict_lib, 'predict', interrupted)
  kernel_store.connect(str(tmp_path / 'k.db')).close()
  result = call_cli('--config=quickstart', f'--db={tmp_path / "k.db"}', module='bench.predict')
  assert (result.returncode, result.stderr, result.stdout) == (
      130, 'interrupted: by SIGINT; nothing was written\n', '')


def test_verbosity_brings_every_librarys_lines_in_absls_format(capsys):
  try:
    logs.configure(0)
    std_logging.getLogger('jax._src.xla_bridge').info('probing')
    assert re.fullmatch(r'I\d{4} [\d:.]+ +\d+ \S+:\d+\] probing\n', capsys.readouterr().err)
    logs.configure(-1)
    std_logging.getLogger('jax._src.xla_bridge').info('probing')
    assert capsys.readouterr().err == ''
  finally:
    logs.configure()
  std_logging.getLogger('jax._src.xla_bridge').info('probing')
  std_logging.getLogger('jax._src.xla_bridge').warning('falling back')
  assert re.fullmatch(r'\d\d:\d\d:\d\d warning \(jax._src.xla_bridge\): falling back\n',
                      capsys.readouterr().err)
