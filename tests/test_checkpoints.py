"""Checkpoints and fault tolerance: exact resume after SIGKILL and SIGTERM, fallback
from a damaged checkpoint, restore across device counts, refusing another config."""

import json
import os
import signal
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

from bench.core import interrupt
from bench.core.errors import UserError
from bench.results import schema as report_lib
from bench.run import runner
from bench.train import checkpoints
from configs import base
from tests.conftest import REPO, build_case, call_cli, run_cli


def _host(tree):
  """Host copies of every leaf (PRNG keys as their key data)."""
  return jax.tree.map(lambda x: np.array(jax.random.key_data(x) if jax.dtypes.issubdtype(
      x.dtype, jax.dtypes.prng_key) else x), tree)


def _leaves_equal(a, b):
  return all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(_host(a)),
                                                  jax.tree.leaves(_host(b))))


def _progress(step):
  return lambda saves: {'step': step, 'saves': saves}


def _trained(model='seed_mlp'):
  """(step, state after one training step, batches) of a small train_step case."""
  _, step, state, batches = build_case(model=model, benchmark='train_step', num_batches=2)
  state, _ = step(state, batches[0])
  return step, state, batches


# ------------------------------------------------------------- in-process units

@pytest.mark.fast
def test_async_save_survives_donation_and_damaged_latest_falls_back(tmp_path, caplog):
  step, state, batches = _trained()
  directory = str(tmp_path / 'ck')
  saved = _host(state)
  ckpt = checkpoints.Checkpoints(directory, keep=3, asynchronous=True)
  ckpt.save(1, 0, 'steps', state, _progress(1))
  # The next step donates `state`'s buffers while orbax may still be writing them.
  state, _ = step(state, batches[1])
  ckpt.save(2, 0, 'steps', state, _progress(2))
  ckpt.close()
  assert [save['step'] for save in ckpt.saves] == [1, 2]
  assert all(save['total_s'] >= save['blocking_s'] > 0 for save in ckpt.saves)

  target = checkpoints.abstract(state)
  ckpt = checkpoints.Checkpoints(directory, keep=3, asynchronous=True)
  restored, progress = ckpt.restore_latest(target)
  # A checkpoint lists the saves up to itself; its own times were not known yet.
  assert progress['step'] == 2 and [save['step'] for save in progress['saves']] == [1, 2]
  assert progress['saves'][1]['total_s'] is None
  assert _leaves_equal(restored, state)
  assert _leaves_equal(ckpt.restore(1, target), saved)

  # Truncate the largest array file of step 2, as a kill during a copy would.
  files = [os.path.join(d, f) for d, _, fs in os.walk(f'{directory}/2') for f in fs]
  biggest = max(files, key=os.path.getsize)
  with open(biggest, 'r+b') as f:
    f.truncate(os.path.getsize(biggest) // 2)
  restored, progress = ckpt.restore_latest(target)
  ckpt.close()
  assert progress['step'] == 1 and _leaves_equal(restored, saved)
  assert sorted(os.listdir(directory)) == ['1']
  assert os.listdir(f'{directory}.unreadable') == ['2']
  assert f'checkpoint {directory}/2 cannot be read' in caplog.text


def test_checkpoint_of_another_model_is_one_clear_error(tmp_path):
  _, state, _ = _trained()
  ckpt = checkpoints.Checkpoints(str(tmp_path / 'ck'), keep=1, asynchronous=False)
  ckpt.save(1, 0, 'steps', state, _progress(1))
  ckpt.close()
  _, other, _ = _trained('seed_cnn')
  ckpt = checkpoints.Checkpoints(str(tmp_path / 'ck'), keep=1, asynchronous=False)
  with pytest.raises(UserError, match=r'checkpoint .*/ck/1 holds a different model: params/\S+ '
                     r'is only in the (case|checkpoint); pass --restart to start this workdir '
                     'over, or use another --workdir'):
    ckpt.restore_latest(checkpoints.abstract(other))
  ckpt.close()
  assert os.listdir(tmp_path / 'ck') == ['1']  # refused, not discarded


_OTHER_DEVICES = textwrap.dedent('''
    import sys
    import jax, numpy as np
    from bench.train import checkpoints
    from tests.conftest import build_case
    directory = sys.argv[1]
    _, _, state, _ = build_case(model='seed_mlp', benchmark='train_step', num_batches=2)
    assert jax.device_count() == 4
    ckpt = checkpoints.Checkpoints(directory, keep=5, asynchronous=True)
    restored, progress = ckpt.restore_latest(checkpoints.abstract(state))
    kernel = restored.params['Dense_0']['kernel']
    print(progress['step'], len(kernel.sharding.device_set), checkpoints.fingerprint(
        {'params': restored.params, 'batch_stats': restored.batch_stats}))
    ckpt.save(2, 0, 'steps', restored, lambda saves: {'step': 2, 'saves': saves})
    ckpt.close()
''')


def test_restore_from_one_device_onto_four_and_back(tmp_path):
  _, state, _ = _trained()
  directory = str(tmp_path / 'ck')
  ckpt = checkpoints.Checkpoints(directory, keep=5, asynchronous=True)
  ckpt.save(1, 0, 'steps', state, _progress(1))
  ckpt.close()
  expected = checkpoints.fingerprint({'params': state.params, 'batch_stats': state.batch_stats})
  env = {**os.environ, 'XLA_FLAGS': '--xla_force_host_platform_device_count=4',
         'PYTHONPATH': REPO}
  result = subprocess.run([sys.executable, '-c', _OTHER_DEVICES, directory], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300, check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  assert result.stdout.split() == ['1', '4', expected]
  ckpt = checkpoints.Checkpoints(directory, keep=5, asynchronous=True)
  restored, progress = ckpt.restore_latest(checkpoints.abstract(state))
  ckpt.close()
  assert progress['step'] == 2 and _leaves_equal(restored, state)
  assert len(restored.params['Dense_0']['kernel'].sharding.device_set) == 1


def test_a_first_signal_is_deferred_in_training_and_a_second_raises():
  with interrupt.handlers():
    with pytest.raises(interrupt.Interrupted) as outside:
      os.kill(os.getpid(), signal.SIGINT)
    assert outside.value.signum == signal.SIGINT
    with interrupt.deferred():
      os.kill(os.getpid(), signal.SIGTERM)
      assert interrupt.requested() == signal.SIGTERM
      with pytest.raises(interrupt.Interrupted):
        os.kill(os.getpid(), signal.SIGTERM)
    with pytest.raises(interrupt.Interrupted, match='interrupted by SIGTERM'):
      interrupt.check()
  assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def _suite(**fields):
  config = base.get_config()
  config.update(benchmark='compile', **fields)
  return config


@pytest.mark.fast
def test_changed_config_is_refused_unless_restarted(tmp_path):
  workdir = str(tmp_path / 'wd')
  first = runner.run_suite(_suite(), workdir)
  before = (tmp_path / 'wd' / 'report.json').read_bytes()
  with pytest.raises(UserError, match=(
      f"workdir {workdir} holds a run of another config \\(case 'default': batch_size was 32, "
      'now 16\\); rerun with the same config to continue it, pass --restart to delete its '
      'outputs and start over, or use another --workdir')):
    runner.run_suite(_suite(batch_size=16), workdir)
  assert (tmp_path / 'wd' / 'report.json').read_bytes() == before
  # The same config: the finished case is kept as it was, not run again.
  again = runner.run_suite(_suite(), workdir)
  assert again['cases'] == first['cases'] and again['suite']['status'] == 'complete'
  restarted = runner.run_suite(_suite(batch_size=16), workdir, restart=True)
  assert restarted['cases'][0]['config']['batch_size'] == 16
  # Outputs of a run without run.json (an older version's) are not continued either.
  os.unlink(tmp_path / 'wd' / 'run.json')
  with pytest.raises(UserError, match='holds outputs of a run without run.json '
                     r'\(report.json, report.md, report.csv\)'):
    runner.run_suite(_suite(batch_size=16), workdir)


# ----------------------------------------------------------- killed CLI runs

_CONFIG = '''
from configs import base

def get_config():
  config = base.get_config()
  config.benchmark = 'train'
  config.cases = base.cases(
      first=dict(model='seed_mlp', epochs=1, steps_per_epoch=2),
      # BatchNorm statistics, dropout keys, Adam moments, augmented images in a
      # shuffled order, early stopping and evaluation: all must resume exactly.
      bn=dict(model='seed_cifar', model_kwargs={{'batchnorm_first': True}}, dataset='shapes',
              data_dir={data_dir!r}, num_classes=0, image_shape=(24, 24, 3),
              augment='crop_flip', train_split='train[:64]', eval_split='train[300:]',
              shuffle_buffer=32, batch_size=8, epochs=3, checkpoint_every_steps=5,
              early_stop_metric='eval_loss', early_stop_patience=5))
  return config
'''


def _run(config, workdir, fault=None):
  """A run killed or interrupted at `fault` in a process of its own; otherwise here."""
  if fault:
    return run_cli(f'--config={config}', f'--workdir={workdir}', env={interrupt.FAULT_ENV: fault})
  return call_cli(f'--config={config}', f'--workdir={workdir}')


def test_killed_and_preempted_runs_resume_to_the_same_bits(tmp_path):
  config = tmp_path / 'config.py'
  config.write_text(_CONFIG.format(data_dir=str(tmp_path / 'data')))
  result = _run(config, tmp_path / 'straight')
  assert result.returncode == 0, result.stderr[-3000:]
  straight = report_lib.load(tmp_path / 'straight' / 'report.json')['cases'][1]

  workdir = tmp_path / 'resumed'
  # Steps 1-8 are epoch 1; saves at 5, 8 (epoch end), 10, 15, 16, 20, 24.
  for fault, code in (('kill@7', -signal.SIGKILL), ('kill_in_save@10', -signal.SIGKILL),
                      ('term@13', 128 + signal.SIGTERM)):
    result = _run(config, workdir, fault)
    assert result.returncode == code, (fault, result.stderr[-3000:])
    report = report_lib.load(workdir / 'report.json')  # valid whatever the kill point
    assert report['suite']['status'] == 'incomplete'
    assert report['environment']['peaks'] is None  # measured after the last case
    assert [case['name'] for case in report['cases']] == ['first']
    if fault == 'kill@7':
      first = report['cases'][0]
  assert 'interrupted: case bn interrupted at step 13: checkpoint in ' in result.stderr
  # The last two, and epoch 1's (the best so far: the first epoch always improves).
  assert sorted(os.listdir(workdir / 'checkpoints' / 'bn'), key=int) == ['8', '10', '13']
  result = _run(config, workdir)
  assert result.returncode == 0, result.stderr[-3000:]
  report = report_lib.load(workdir / 'report.json')
  kept, resumed = report['cases']
  assert kept == first  # the finished case was not run again
  assert resumed['fingerprint'] == straight['fingerprint']
  assert resumed['training']['steps_run'] == 24 and resumed['step_time_s']['n'] == 24
  for key in ('train_loss', 'train_accuracy', 'eval_loss', 'eval_accuracy', 'learning_rate'):
    assert ([row[key] for row in resumed['training']['history']]
            == [row[key] for row in straight['training']['history']]), key
  checkpoint = resumed['checkpoint']
  # The kill at step 7 may come before the async save of step 5 is complete: then
  # the second run starts afresh, and only the third and fourth resume.
  assert checkpoint['resumed_from_step'] == 13 and checkpoint['resumes'] in (2, 3)
  saves = {save['step']: save['reason'] for save in checkpoint['saves']}
  assert list(saves) == [5, 8, 10, 13, 15, 16, 20, 24]
  assert [saves[k] for k in (5, 8, 10, 13, 24)] == ['steps', 'best', 'steps', 'preemption', 'end']
  assert os.path.isdir(checkpoint['export'])
  lines = [json.loads(line) for line in (workdir / 'metrics' / 'bn.jsonl').read_text().splitlines()]
  assert [line.get('eval_loss') for line in lines] == [
      None] + [row['eval_loss'] for row in straight['training']['history']]
