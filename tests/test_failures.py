"""Failures and interruptions of a run: user errors found up front, failed cases, sizes
that cannot fit, signals in native code, a damaged workdir."""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from bench.core import fileio
from bench.core import interrupt
from bench.core import parallel
from bench.core.errors import UserError
from bench.results import history as history_lib
from bench.run import ab as ab_lib
from bench.run import runner
from bench.workload import build
from bench.workload import footprint
from configs import base
from tests.conftest import REPO, call_cli, case_config, run_cli

BASE = '--config=configs/base.py'
MLP = ('--config=configs/quickstart.py', '--config.select=mlp_b32', '--config.warmup_steps=1',
       '--config.timed_steps=2')


def _history_runs(path):
  if not os.path.exists(path):
    return []
  conn = history_lib.connect(str(path))
  try:
    return history_lib.runs(conn)
  finally:
    conn.close()


@pytest.mark.parametrize('args, message', [
    (('--config.transfer=feature_extract',),
     "error: case 'default': transfer 'feature_extract' needs a model with a classifier top to "
     "train on a frozen backbone; 'seed_mlp' has none (use transfer=scratch)"),
    (('--config.model=seed_cnn', '--config.transfer=finetune', '--config.finetune_from=nolayer'),
     "error: case 'default': finetune_from='nolayer' is not a layer of 'seed_cnn'; its layers, "
     'in order: conv1, conv2, conv3'),
    (('--config.model=seed_cnn', '--config.transfer=finetune', '--config.finetune_blocks=99'),
     "error: case 'default': finetune_blocks=99 must be between 1 and the 3 blocks of "
     "'seed_cnn' (conv1 ... conv3); or name the first layer to train with finetune_from"),
    (('--config.image_shape=(100000,100000,3)',), re.compile(
        "error: case 'default': needs at least 61.4 TB of memory but .* is free \\(.*\\): train "
        'state 46.1 TB, batches 15.4 TB, largest layer output 32.8 kB; choose a smaller '
        '--config.model \\(or a smaller --config.image_shape, where a Dense layer reads the '
        'whole image\\)')),
])
def test_user_errors_found_up_front_write_and_record_nothing(tmp_path, args, message):
  history = tmp_path / 'history.db'
  result = call_cli(BASE, f'--workdir={tmp_path / "wd"}', f'--history={history}', *args)
  assert result.returncode == 2, result.stderr
  (error,) = result.stderr.splitlines()  # no warning before it
  assert (message.fullmatch(error) if isinstance(message, re.Pattern) else error == message), error
  assert not (tmp_path / 'wd').exists() and _history_runs(history) == []


def test_missing_data_and_missing_weights_are_reported_together(tmp_path):
  result = call_cli(BASE, f'--workdir={tmp_path / "wd"}', '--config.dataset=cifar10',
                    f'--config.data_dir={tmp_path / "data"}', '--config.num_classes=10',
                    '--config.init_from=keras:/no/such.h5')
  assert result.returncode == 2
  errors = [line for line in result.stderr.splitlines() if line.startswith('error: ')]
  assert errors == [
      f"error: case 'default': dataset cifar10 is not prepared in {tmp_path / 'data'}/cifar10/"
      f'{errors[0].split("/cifar10/")[1].split(";")[0]}; pass --config.download=True to download '
      'and prepare it (needs internet), or --config.data_dir=DIR where it is prepared',
      "error: case 'default': init_from 'keras:/no/such.h5': /no/such.h5 does not exist; Keras "
      'keeps the .h5 files keras.applications downloads in ~/.keras/models/: give yours with '
      "--config.init_from=keras:PATH (one case's: --config.cases.NAME.init_from), or orbax:DIR "
      "converted by python -m bench.convert_keras, or --config.init_from='' to start from "
      'random weights'], result.stderr
  assert not (tmp_path / 'wd').exists()


_EXPLODING = '''
from configs import base
import tests.exploding  # registers the model 'exploding'


def get_config():
  config = base.get_config()
  config.warmup_steps, config.timed_steps = 1, 2
  config.cases = base.cases(boom=dict(model='exploding'), fine=dict(model='seed_mlp'))
  return config
'''


def test_a_failed_case_exits_1_and_is_recorded_as_failed(tmp_path):
  config = tmp_path / 'exploding.py'
  config.write_text(_EXPLODING)
  history = tmp_path / 'history.db'
  result = run_cli(f'--config={config}', f'--workdir={tmp_path / "wd"}', f'--history={history}')
  assert result.returncode == 1, result.stderr[-3000:]
  assert result.stderr.splitlines()[-1] == (
      f'failed: 1 of 2 cases (boom); their errors are in {tmp_path / "wd" / "report.md"}')
  (run,) = _history_runs(history)
  assert run['status'] == 'failed' and sorted(run['cases']) == ['boom', 'fine']


def _limited(gigabytes, command):
  """`command` under `ulimit -v` (a shell's: a preexec_fn would fork this multithreaded
  process, which JAX warns against)."""
  return ['bash', '-c', f'ulimit -v {gigabytes << 20} && exec "$@"', 'bash', *command]


def test_under_ulimit_v_a_size_that_cannot_fit_is_refused_and_one_that_fits_runs(tmp_path):
  env = {**os.environ, 'PYTHONPATH': os.path.join(REPO, 'tests', 'offline')}
  command = [sys.executable, '-m', 'bench.main', *MLP, f'--workdir={tmp_path / "wd"}']
  refused = subprocess.run(_limited(12, [*command, '--config.image_shape=(4096,4096,3)']),
                           cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
                           check=False)
  assert refused.returncode == 2, refused.stderr[-3000:]
  assert re.fullmatch(
      "error: case 'mlp_b32': needs at least 103 GB of memory but .* is free \\(ulimit -v\\): "
      'train state 77.3 GB, batches 25.8 GB, largest layer output 32.8 kB; choose a smaller '
      '--config.model \\(or a smaller --config.image_shape, where a Dense layer reads the whole '
      'image\\)', refused.stderr.splitlines()[-1]), refused.stderr[-2000:]
  assert not (tmp_path / 'wd').exists()
  fits = subprocess.run(_limited(12, [*command, '--config.image_shape=(64,64,3)']), cwd=REPO,
                        env=env, capture_output=True, text=True, timeout=600, check=False)
  assert fits.returncode == 0, fits.stderr[-3000:]


def test_under_ulimit_v_a_step_whose_temporaries_cannot_fit_fails_its_case(tmp_path):
  # Its state, batches and largest layer output fit (the estimate passes); the
  # activations its backward pass keeps do not: XLA's memory analysis says so.
  env = {**os.environ, 'PYTHONPATH': os.path.join(REPO, 'tests', 'offline')}
  result = subprocess.run(_limited(12, [
      sys.executable, '-m', 'bench.main', '--config=configs/quickstart.py',
      '--config.select=cnn_b32', '--config.warmup_steps=1', '--config.timed_steps=2',
      '--config.image_shape=(768,768,3)', f'--workdir={tmp_path / "wd"}']), cwd=REPO, env=env,
      capture_output=True, text=True, timeout=600, check=False)
  assert result.returncode == 1, result.stderr[-3000:]
  (case,) = json.loads((tmp_path / 'wd' / 'report.json').read_text())['cases']
  assert re.fullmatch(
      r'MemoryError: a step needs 12.3 GB beside its arguments \(XLA memory analysis: '
      r'temporaries 12.3 GB, outputs \d+ bytes\) but .* is free \(ulimit -v\); lower '
      r'--config.batch_size or --config.image_shape', case['error']), case['error']


def test_the_estimate_is_below_what_xla_allocates():
  case = case_config(model='seed_cnn', batch_size=32, num_batches=1)
  mesh = parallel.mesh()
  need = footprint.estimate(case, mesh)
  compiled = build.build(case, mesh, runner.open_input('t', case, mesh))[3]
  stats = compiled.memory_analysis()
  # The state and one batch are the step's arguments; the largest layer output one of its temps.
  assert need['state'] + need['batch'] <= stats.argument_size_in_bytes
  assert 0 < need['activation'] <= stats.temp_size_in_bytes
  assert need['batch'] == 32 * (32 * 32 * 3 * 4 + 4)


def _cpu_ticks(pid):
  """The CPU time process `pid`'s main thread has used, in clock ticks (utime + stime)."""
  with open(f'/proc/{pid}/task/{pid}/stat', encoding='ascii') as f:
    fields = f.read().rsplit(')', 1)[1].split()
  return int(fields[11]) + int(fields[12])


@pytest.mark.parametrize('signum', [signal.SIGTERM, signal.SIGINT])
def test_a_signal_ends_a_run_stuck_in_native_code(tmp_path, signum):
  env = {**os.environ, interrupt.FAULT_ENV: 'hang@1',
         'PYTHONPATH': os.path.join(REPO, 'tests', 'offline')}
  with subprocess.Popen([sys.executable, '-m', 'bench.main', *MLP,
                         f'--workdir={tmp_path / "wd"}'], cwd=REPO, env=env,
                        stderr=subprocess.PIPE, text=True) as process:
    for line in process.stderr:
      if line.startswith('BENCH_FAULT: hanging in native code'):
        break
    # The main thread then runs the XLA loop itself: once it has spent a third of a
    # second of CPU since (a Python call takes microseconds), it is in native code.
    start = _cpu_ticks(process.pid)
    while _cpu_ticks(process.pid) < start + os.sysconf('SC_CLK_TCK') // 3:
      time.sleep(0.01)
    process.send_signal(signum)
    rest = process.stderr.read()
    assert process.wait(timeout=120) == 128 + signum
  assert rest.splitlines()[-1] == (
      f'interrupted: {signal.Signals(signum).name}, and the run did not stop within 5 s (busy '
      'in native code, where Python cannot act on a signal): ended at once')
  # What was written before the case started is there: a valid, incomplete report.
  assert '"status": "incomplete"' in (tmp_path / 'wd' / 'report.json').read_text()


@pytest.mark.parametrize('signum', [signal.SIGINT, signal.SIGTERM])
def test_a_signal_during_the_start_up_imports_is_one_line(tmp_path, signum):
  """SIGINT (Ctrl-C) or SIGTERM while bench.main imports jax and the rest, before the
  run's handlers are set: the interrupted line and 128 + N, no traceback, nothing
  written (bench.main records the signal: a library that swallows the
  KeyboardInterrupt while it imports cannot make the run go on)."""
  env = {**os.environ, 'PYTHONPATH': os.path.join(REPO, 'tests', 'offline'),
         'PYTHONVERBOSE': '1'}  # each import is a line: the test waits for jax's
  with subprocess.Popen([sys.executable, '-m', 'bench.main', *MLP,
                         f'--workdir={tmp_path / "wd"}'], cwd=REPO, env=env,
                        stderr=subprocess.PIPE, text=True) as process:
    for line in process.stderr:
      if line.startswith('import ') and "'jax'" in line:
        break
    process.send_signal(signum)
    rest = process.stderr.read()
    assert process.wait(timeout=120) == 128 + signum
  # The rest is PYTHONVERBOSE's import and clean-up lines.
  said = [l for l in rest.splitlines() if l.startswith(('interrupted', 'Traceback', 'error'))]
  assert said == [f'interrupted: by {signal.Signals(signum).name} before the run started; '
                  'nothing was written']
  assert not (tmp_path / 'wd').exists()


def test_a_damaged_run_json_is_one_line_naming_the_file_and_the_fix(tmp_path):
  workdir = tmp_path / 'wd'
  workdir.mkdir()
  (workdir / 'run.json').write_text('{"suite": "quick')
  result = call_cli(*MLP, f'--workdir={workdir}')
  assert result.returncode == 2
  assert result.stderr.splitlines()[-1] == (
      f'error: {workdir / "run.json"} is damaged (Unterminated string starting at: line 1 '
      'column 11 (char 10)), so whether its run had this config is unknown; pass --restart to '
      "delete that run's outputs and start over, or use another --workdir")
  assert (workdir / 'run.json').read_text() == '{"suite": "quick'
  assert call_cli(*MLP, f'--workdir={workdir}', '--restart').returncode == 0


def test_stale_temporary_files_of_atomic_writes_are_swept(tmp_path):
  workdir = tmp_path / 'wd'
  config = base.get_config()
  config.benchmark = 'compile'
  runner.run_suite(config, str(workdir))
  (workdir / 'metrics').mkdir()
  dead = 2**22 + 1  # above Linux's largest pid: no process has it
  stale = [workdir / f'.report.json.{dead}.abcd1234.tmp',
           workdir / 'metrics' / f'.default.jsonl.{dead}.k_9x0zzz.tmp']
  kept = [workdir / f'.report.md.{os.getpid()}.abcd1234.tmp',  # a running process's
          workdir / '.notes.tmp', workdir / f'.mine.{dead}.tmp']  # not an atomic write's
  for path in stale + kept:
    path.write_text('partial')
  runner.run_suite(config, str(workdir))  # continues the run: its case is kept
  assert not any(p.exists() for p in stale) and all(p.exists() for p in kept)


# ------------------------------------------------------------------- bench.ab

_AB = ('--base=HEAD', '--new=HEAD', '--rounds=2', '--max_rounds=2', *MLP)


def _worktrees():
  return subprocess.run(['git', '-C', REPO, 'worktree', 'list'], capture_output=True,
                        text=True, check=True).stdout


def _gone(pid):
  """Whether process `pid` has ended (a zombie no one reaped has)."""
  return not fileio.running(pid)


def _side_of(workdir):
  """The pid of the bench.main process an A/B in `workdir` runs, once it runs."""
  while True:
    for pid in filter(str.isdigit, os.listdir('/proc')):
      try:
        with open(f'/proc/{pid}/cmdline', 'rb') as f:
          command = f.read()
      except OSError:
        continue
      if b'bench.main' in command and f'--workdir={workdir}/runs/'.encode() in command:
        return int(pid)
    time.sleep(0.1)


def _start_ab(workdir):
  env = {**os.environ, 'PYTHONPATH': os.path.join(REPO, 'tests', 'offline')}
  return subprocess.Popen([sys.executable, '-m', 'bench.ab', *_AB, f'--workdir={workdir}'],
                          cwd=REPO, env=env, stderr=subprocess.PIPE, text=True)


def test_ab_on_sigterm_ends_its_side_and_removes_its_worktrees(tmp_path):
  workdir = tmp_path / 'ab'
  with _start_ab(workdir) as process:
    side = _side_of(workdir)
    assert str(workdir) in _worktrees()
    process.send_signal(signal.SIGTERM)
    stderr = process.stderr.read()
    assert process.wait(timeout=120) == 128 + signal.SIGTERM
  assert stderr.splitlines()[-1] == (
      f'interrupted: interrupted by SIGTERM; {workdir}/ab.json has the rounds finished so far')
  assert _gone(side) and str(workdir) not in _worktrees()
  assert not (workdir / 'worktrees').exists()


def test_ab_killed_takes_its_side_along_and_the_next_removes_its_worktrees(tmp_path):
  workdir = tmp_path / 'ab'
  with _start_ab(workdir) as process:
    side = _side_of(workdir)
    process.kill()
    process.wait()
  while not _gone(side):  # PR_SET_PDEATHSIG: killed with its A/B
    time.sleep(0.1)
  left = [str(workdir / 'worktrees' / name) for name in ('base', 'new')]
  assert all(path in _worktrees() for path in left)
  result = call_cli('--base=no-such-rev', '--config=configs/quickstart.py',
                    f'--workdir={tmp_path / "next"}', module='bench.ab')
  assert result.returncode == 2
  assert [line for line in result.stderr.splitlines() if line.startswith('note: removing')] == [
      f'note: removing the worktree {path} a killed bench.ab left' for path in left]
  assert not any(path in _worktrees() for path in left)


def test_a_worktree_is_stale_only_when_its_ab_process_is_gone(tmp_path):
  """Whatever its command line (python -m bench.ab, flax-bench ab, a wrapper script): a
  live locker keeps its worktrees, so two A/Bs in one repository never delete each
  other's checkouts."""
  live = subprocess.Popen(['sleep', '60'])  # no 'bench.ab' in its command line
  dead = subprocess.Popen(['true'])
  dead.wait()
  paths = {pid: str(tmp_path / f'w{pid}') for pid in (live.pid, dead.pid)}
  try:
    for pid, path in paths.items():
      ab_lib.add_worktree(REPO, path, 'HEAD')  # locked by this process: relocked below
      subprocess.run(['git', '-C', REPO, 'worktree', 'unlock', path], check=True)
      subprocess.run(['git', '-C', REPO, 'worktree', 'lock', '--reason',
                      f'{ab_lib._LOCK}{pid}', path], check=True)  # as if that A/B had added it
    assert [p for p in ab_lib.stale_worktrees(REPO) if p.startswith(str(tmp_path))] == [
        os.path.realpath(paths[dead.pid])]
  finally:
    live.kill()
    live.wait()
    for path in paths.values():
      ab_lib.remove_worktree(REPO, path)


def test_ab_workdir_that_is_a_file_is_one_line(tmp_path):
  blocker = tmp_path / 'file'
  blocker.write_text('')
  result = call_cli('--base=HEAD', '--config=configs/quickstart.py', f'--workdir={blocker}',
                    module='bench.ab')
  assert result.returncode == 2
  assert result.stderr.splitlines() == [
      f'error: --workdir={blocker} is a file; give a directory (created if missing) for '
      'ab.json, ab.md, its runs and logs']


def test_a_user_error_inside_a_case_ends_the_run_as_one():
  # check_cases finds this one up front; run_case alone must not record it as a failed case.
  case = case_config(model='seed_mlp', transfer='feature_extract')
  with pytest.raises(UserError, match="'seed_mlp' has none \\(use transfer=scratch\\)"):
    runner.run_case('t', case, parallel.mesh())


def test_a_signal_whose_interrupted_is_caught_still_ends_the_run(monkeypatch):
  """The watcher, driven alone: the main thread raised Interrupted within the grace
  (its handler ran), but something caught it and the process stayed in the handlers'
  block: UNWIND_S later it is ended as a stuck one is. One that leaves in time is not."""
  ended = []
  monkeypatch.setattr(interrupt, '_end_now', lambda *args: ended.append(args))
  monkeypatch.setattr(interrupt, 'REACT_S', 0.2)
  monkeypatch.setattr(interrupt, 'UNWIND_S', 0.3)
  for leaves in (False, True):
    reader, writer = socket.socketpair()
    watcher = threading.Thread(target=interrupt._watch, args=(reader,))
    watcher.start()
    writer.send(bytes([signal.SIGTERM]))
    time.sleep(0.05)
    interrupt._state['raised_at'] = time.monotonic()  # the handler raised
    time.sleep(0.05 if leaves else 0.9)  # past REACT_S + UNWIND_S when it does not leave
    writer.send(b'\0')  # the block is left
    watcher.join()
    reader.close()
    writer.close()
    assert ended[:1] == ([] if leaves else [(signal.SIGTERM, 0.3, True)])
    ended.clear()
