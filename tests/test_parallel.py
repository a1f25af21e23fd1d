"""Data parallelism on 8 fake CPU devices, scaling studies, and two processes.

Each multi-device test runs the program in a subprocess with
XLA_FLAGS=--xla_force_host_platform_device_count=8 (this process has one device).
"""

import json
import os
import socket
import subprocess
import sys

import jax
import pytest

from bench.core import distributed
from bench.core.errors import UserError
from bench.results import schema as report_lib
from bench.run import suite
from configs import base
from tests.conftest import REPO, run_cli

EIGHT = {'XLA_FLAGS': '--xla_force_host_platform_device_count=8'}
SEED_MLP_PARAMS = 445_450


def test_jit_and_pmap_on_8_devices_match_one_device():
  cases = [
      {'model': 'seed_cnn', 'batch_size': 16, 'num_batches': 2, 'optimizer': 'sgd',
       'learning_rate': 0.1},
      # BatchNorm in every unit: statistics must be the global batch's on both.
      {'model': 'width_resnet', 'model_kwargs': {'nf': 4}, 'image_shape': [8, 8, 3],
       'batch_size': 16, 'num_batches': 2, 'optimizer': 'sgd', 'learning_rate': 0.1}]
  result = subprocess.run([sys.executable, '-m', 'tests.data_parallel_check', json.dumps(cases)],
                          cwd=REPO, capture_output=True, text=True, timeout=600, check=False,
                          env={**os.environ, **EIGHT})
  assert result.returncode == 0, result.stderr
  seed_cnn, width_resnet = [json.loads(line) for line in result.stdout.splitlines()]
  for found in (seed_cnn, width_resnet):
    assert found['devices'] == 8
    assert found['losses'][-1] < found['losses'][0] - 0.01  # it trained
    for strategy in ('jit', 'pmap'):
      assert found[strategy]['params'] < 1e-6, (strategy, found)
      assert found[strategy]['losses'] < 1e-6, (strategy, found)
  assert seed_cnn['batch_stats'] is False and width_resnet['batch_stats'] is True
  for strategy in ('jit', 'pmap'):
    assert width_resnet[strategy]['batch_stats'] < 1e-6, (strategy, width_resnet)
    # One all-reduce of the whole gradient (227,146 float32) and of loss and accuracy.
    assert seed_cnn[strategy]['collective_bytes'] == 227_146 * 4 + 8


def test_scaling_study_on_8_devices_end_to_end(tmp_path):
  workdir = tmp_path / 'wd'
  # The jit case only: pmap's steps are checked above and across processes below.
  result = run_cli('--config=configs/scaling.py', f'--workdir={workdir}',
                   '--config.model=seed_mlp', '--config.batch_size=8', '--config.warmup_steps=1',
                   '--config.timed_steps=3', '--config.select=' + ','.join(
                       f'jit.{mode}{n}' for mode in ('weak', 'strong') for n in (1, 2, 4, 8)),
                   env=EIGHT)
  assert result.returncode == 0, result.stderr
  report = report_lib.load(str(workdir / 'report.json'))
  rows = report['scaling']
  assert [(r['of'], r['mode'], r['devices']) for r in rows] == [
      ('jit', mode, n) for mode in ('weak', 'strong') for n in (1, 2, 4, 8)]
  for row in rows:
    case = next(c for c in report['cases'] if c['name'] == row['case'])
    assert case['status'] == 'ok' and case['num_devices'] == row['devices']
    assert row['case'] == f'{row["of"]}.{row["mode"]}{row["devices"]}'
    assert row['parallel'] == row['of']
    assert row['batch_size'] == (8 * row['devices'] if row['mode'] == 'weak' else 8)
    assert row['per_device_batch'] == row['batch_size'] // row['devices']
    assert row['examples_per_s'] == pytest.approx(row['batch_size'] / row['step_time_s'])
    assert row['efficiency'] == pytest.approx(row['speedup'] / row['devices'])
    # The gradient (and loss, accuracy) all-reduced; one device has no collective.
    expected = 0 if row['devices'] == 1 else SEED_MLP_PARAMS * 4 + 8
    assert row['collective_bytes'] == expected, row
  assert all(r['speedup'] == 1 for r in rows if r['devices'] == 1)
  assert report['environment']['devices_per_process'] == [8]
  md = (workdir / 'report.md').read_text()
  assert '## Scaling' in md and '| jit.strong8 | strong | jit | 8 | 8 | 1 |' in md
  assert (workdir / 'scaling.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'


def test_batch_not_divisible_by_8_devices_is_one_clear_error(tmp_path):
  result = run_cli('--config=configs/base.py', '--config.batch_size=12',
                   f'--workdir={tmp_path}/wd', env=EIGHT)
  assert result.returncode == 2
  assert result.stderr.strip().splitlines()[-1] == (
      "error: case 'default': batch_size 12 is not divisible by the 8 devices it is split over; "
      'use a multiple of 8, e.g. 8')
  assert not (tmp_path / 'wd').exists()


@pytest.mark.parametrize('fields, message', [
    ({'num_devices': 16}, "case 'default': num_devices 16 is more than the 8 devices there are; "
                          'use 0 (all) or at most 8'),
    ({'num_devices': 4, 'batch_size': 6},
     "case 'default': batch_size 6 is not divisible by the 4 devices it is split over; use a "
     'multiple of 4, e.g. 4'),
    ({'scaling': {'modes': ('strong',), 'device_counts': (1, 2, 4, 8)}, 'batch_size': 12},
     "case 'default.strong8': batch_size 12 is not divisible by the 8 devices"),
    ({'scaling': {'modes': ('wide',), 'device_counts': ()}},
     "scaling.modes entry 'wide' must be one of weak, strong"),
    ({'parallel': 'pjit'}, "config field 'parallel' = 'pjit' must be one of jit, pmap"),
    ({'scaling': {'modes': ('weak',), 'device_counts': (2, 2)}},
     r'scaling.device_counts (2, 2) repeats a count'),
])
def test_device_and_scaling_fields_are_checked(monkeypatch, fields, message):
  monkeypatch.setattr(jax, 'device_count', lambda: 8)
  config = base.get_config()
  config.update(fields)
  with pytest.raises(UserError, match=message.replace('(', r'\(').replace(')', r'\)')):
    suite.expand(config)


def test_scaling_expands_weak_and_strong_over_default_device_counts(monkeypatch):
  monkeypatch.setattr(jax, 'device_count', lambda: 6)
  monkeypatch.setattr(jax, 'local_device_count', lambda: 6)
  config = base.get_config()
  config.batch_size = 24
  config.scaling.modes = ('weak', 'strong')
  expanded = suite.expand(config)
  assert [(name, case.num_devices, case.batch_size) for name, case in expanded.cases] == [
      ('default.weak1', 1, 24), ('default.weak2', 2, 48), ('default.weak4', 4, 96),
      ('default.weak6', 6, 144), ('default.strong1', 1, 24), ('default.strong2', 2, 24),
      ('default.strong4', 4, 24), ('default.strong6', 6, 24)]
  assert expanded.scaling[3] == ('default.weak6', 'default', 'weak', 6)
  # A global batch of 32 does not split over the default count of 6: that run is left out.
  config.batch_size, config.scaling.modes = 32, ('strong',)
  assert [name for name, _ in suite.expand(config).cases] == [
      'default.strong1', 'default.strong2', 'default.strong4']


@pytest.mark.parametrize('kwargs, message', [
    ({'coordinator_address': 'localhost:1234'}, 'needs the number of processes'),
    ({'coordinator_address': 'h:1', 'num_processes': 'two', 'process_id': 0},
     'must be integers'),
    ({'mode': 'maybe'}, "--distributed='maybe' must be one of auto, on, off"),
])
def test_distributed_settings_are_checked(kwargs, message):
  with pytest.raises(UserError, match=message):
    distributed.initialize(**kwargs)


def test_single_process_does_not_start_distributed(monkeypatch):
  for variable in (*distributed.ENV.values(), 'SLURM_NTASKS', 'OMPI_COMM_WORLD_SIZE'):
    monkeypatch.delenv(variable, raising=False)
  monkeypatch.setenv('SLURM_NTASKS', '1')  # a one-task Slurm job is one process
  assert distributed.initialize('auto') is False


def _free_port():
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def _two_processes(args, workdir, fault=''):
  """Runs `bench.main args` as two processes over loopback (one CPU device each),
  process 1 with BENCH_FAULT=`fault`; returns [(return code, stderr)]."""
  port = _free_port()
  env = {**os.environ, 'PYTHONPATH': f'{REPO}/tests/offline', 'XLA_FLAGS': ''}
  processes = [subprocess.Popen(
      [sys.executable, '-m', 'bench.main', *args, f'--workdir={workdir}',
       f'--coordinator_address=127.0.0.1:{port}', '--num_processes=2', f'--process_id={i}'],
      cwd=REPO, env={**env, 'BENCH_FAULT': fault if i == 1 else ''}, stdout=subprocess.DEVNULL,
      stderr=subprocess.PIPE, text=True) for i in range(2)]
  errors = [p.communicate(timeout=600)[1] for p in processes]
  return [(p.returncode, err) for p, err in zip(processes, errors)]


def test_two_processes_on_localhost_train_as_one_process_with_two_devices(tmp_path):
  """Two bench.main processes (jax.distributed over loopback) train one global
  batch; the same command in one process on two devices must give the same
  result: bitwise under jit, within float tolerance under pmap. A SIGTERM to one
  of them stops both at the same step, and a rerun of both resumes."""
  args = ['--config=configs/base.py', '--config.model=seed_cnn', '--config.benchmark=train',
          '--config.steps_per_epoch=3', '--config.epochs=2', '--config.batch_size=8',
          '--config.checkpoint_every_steps=2',
          "--config.cases={'jit': {}, 'pmap': {'parallel': 'pmap'}}"]
  # Process 1 gets SIGTERM after step 3: both save at the end of that chunk and exit.
  stopped = _two_processes(args, tmp_path / 'two', fault='term@3')
  for code, err in stopped:
    assert code == 143, err
    assert 'interrupted: case jit interrupted at step 3' in err, err
  resumed = _two_processes(args, tmp_path / 'two')
  for code, err in resumed:
    assert code == 0, err
  single = run_cli(*args, f'--workdir={tmp_path / "one"}',
                   env={'XLA_FLAGS': '--xla_force_host_platform_device_count=2'})
  assert single.returncode == 0, single.stderr
  two = report_lib.load(str(tmp_path / 'two' / 'report.json'))
  one = report_lib.load(str(tmp_path / 'one' / 'report.json'))
  assert two['environment']['process_count'] == 2
  assert two['environment']['devices_per_process'] == [1, 1]
  assert one['environment']['process_count'] == 1
  assert two['cases'][0]['checkpoint']['resumed_from_step'] == 3
  for a, b in zip(two['cases'], one['cases']):
    assert a['status'] == b['status'] == 'ok' and a['num_devices'] == b['num_devices'] == 2
    losses = [[row['train_loss'] for row in r['training']['history']] for r in (a, b)]
    assert losses[0] == pytest.approx(losses[1], abs=1e-6)
  assert two['cases'][0]['fingerprint'] == one['cases'][0]['fingerprint']
  # The weights were exported once, by orbax's multi-process save.
  assert (tmp_path / 'two' / 'weights' / 'jit').is_dir()
  assert not (tmp_path / 'two' / 'weights' / 'jit.new').exists()
