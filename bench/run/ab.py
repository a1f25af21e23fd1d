"""Runs a timing A/B: each revision in a git worktree of its own, a fresh `python -m
bench.main` process per side and round, until the verdicts are reached.

The design (why rounds, pairs, looks and this interval) is in bench/ab.py, the
command line; the statistics in bench/results/ab_stats.py; the record and its
files in bench/results/ab_result.py.

Nothing outlives an A/B: a signal ends its running side and removes its worktrees
(bench.ab turns SIGTERM and SIGINT into interrupt.Interrupted); each side's
process dies with the A/B's, even by kill -9 (Linux: PR_SET_PDEATHSIG), so none
goes on competing with the next A/B's timing; and the worktrees a killed A/B left
(each locked with the reason `bench.ab pid N`, which git shows) are removed by the
next one once process N is gone.
"""

import contextlib
import ctypes
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time

from bench.core import fileio
from bench.core import interrupt
from bench.core.errors import UserError
from bench.results import ab_result
from bench.results import schema as report_lib
from bench.results.ab_stats import SIDES, looks, stop_reason
from bench.run.git import git, repository, resolve
import configs

# The compilation cache the sides share: a round after the first reads its programs
# back instead of compiling them (compilation is not what is timed), and both sides
# of an unchanged case run the same executable.
_CACHE_ENV = {'JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS': '0',
              'JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES': '0'}
# The lock reason of an A/B's worktrees: whose they are (`stale_worktrees`).
_LOCK = 'bench.ab pid '
# How long a side has to end on SIGTERM (its own watcher ends it within seconds,
# bench/core/interrupt.py) before it is killed.
_END_S = 15


def _check_config(repo, commit, rev, config):
  if git(repo, 'cat-file', '-e', f'{commit}:{config}').returncode:
    raise UserError(f'{config} does not exist at {rev} ({commit[:10]}); choose a config '
                    'both revisions have')


def add_worktree(repo, path, commit):
  """A detached checkout of `commit` at `path`. A worktree left there by an earlier
  run is replaced, unless it holds uncommitted changes (someone's work)."""
  if os.path.lexists(path):
    listed = git(repo, 'worktree', 'list', '--porcelain').stdout.splitlines()
    if f'worktree {os.path.realpath(path)}' not in listed:
      raise UserError(f'{path} exists and is not a worktree of {repo}; remove it or choose '
                      'another --workdir')
    if git(path, 'status', '--porcelain').stdout.strip():
      raise UserError(f'{path} is a worktree with uncommitted changes; commit or discard '
                      'them (or remove it), or choose another --workdir')
    remove_worktree(repo, path)
  git(repo, 'worktree', 'prune')
  result = git(repo, 'worktree', 'add', '--detach', '--lock', '--reason',
               f'{_LOCK}{os.getpid()}', path, commit)
  if result.returncode:
    raise RuntimeError(f'git worktree add {path} {commit} failed: {result.stderr.strip()}')


def stale_worktrees(repo):
  """The worktrees of `repo` an A/B locked (`bench.ab pid N`) whose process N is gone:
  what a killed A/B left."""
  stale, path = [], None
  for line in git(repo, 'worktree', 'list', '--porcelain').stdout.splitlines():
    if line.startswith('worktree '):
      path = line[len('worktree '):]
    elif line.startswith(f'locked {_LOCK}'):
      pid = line[len(f'locked {_LOCK}'):]
      if pid.isdigit() and not fileio.running(int(pid)):
        stale.append(path)
  return stale


def remove_worktree(repo, path):
  git(repo, 'worktree', 'remove', '--force', '--force', path)  # twice: it is locked
  shutil.rmtree(path, ignore_errors=True)
  with contextlib.suppress(OSError):  # worktrees/, once empty
    os.rmdir(os.path.dirname(path))


class SideFailed(Exception):
  """A side's benchmark process failed: `status` is its exit status, `log` its output's
  file (None once the A/B's workdir is removed: the message then says all)."""

  def __init__(self, message, status, log):
    super().__init__(message)
    self.status, self.log = status, log

  def __str__(self):
    return super().__str__() + (f' (its log: {self.log})' if self.log else '')


def _die_with_parent(parent):
  """In a side's process before it starts: killed when the A/B's process dies (Linux),
  however it dies."""
  with contextlib.suppress(OSError, AttributeError):  # elsewhere: the A/B's signals only
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
  if os.getppid() != parent:  # the A/B died before prctl took effect
    os.kill(os.getpid(), signal.SIGKILL)


def _wait(command, log, **kwargs):
  """Runs `command` to its end, its output into the file `log`; returns its exit status.
  Anything that stops the waiting (a signal's Interrupted) ends the process first."""
  parent = os.getpid()
  with subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                        preexec_fn=lambda: _die_with_parent(parent), **kwargs) as process:
    try:
      return process.wait()
    except BaseException:
      process.terminate()  # SIGTERM: it ends with its line in the log (bench.main)
      try:
        process.wait(_END_S)
      except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
      raise


def run_side(side, round_index, worktree, config, overrides, workdir):
  """Runs the config once in a fresh process of `worktree`'s code; returns (report,
  wall seconds). Its report is kept as D/runs/R-SIDE.json, its output as
  D/logs/R-SIDE.log; the rest of the run's workdir is deleted."""
  stem = f'{round_index:03d}-{side}'
  run_dir = os.path.join(workdir, 'runs', stem)
  log_path = os.path.join(workdir, 'logs', f'{stem}.log')
  # The A/B's result is recorded in the history (bench.ab), not each side's rounds.
  env = dict(os.environ, **_CACHE_ENV, FLAX_BENCH_HISTORY='off',
             JAX_COMPILATION_CACHE_DIR=os.path.join(workdir, 'compile_cache'),
             PYTHONPATH=os.pathsep.join(p for p in (worktree, os.environ.get('PYTHONPATH'))
                                        if p))
  command = [sys.executable, '-m', 'bench.main', f'--config={config}', f'--workdir={run_dir}',
             '--restart', *overrides]
  t0 = time.perf_counter()
  with open(log_path, 'w', encoding='utf-8') as log:
    status = _wait(command, log, cwd=worktree, env=env)
  seconds = time.perf_counter() - t0
  # Exit 1 with a report whose suite failed: a case failed, a result the A/B diffs.
  if status and not (status == 1 and _suite_status(run_dir) == 'failed'):
    with open(log_path, encoding='utf-8') as log:
      errors = [line.strip() for line in log if line.startswith('error: ')]
    reason = errors[-1][len('error: '):] if errors else f'exit status {status}'
    raise SideFailed(f'the {side} side failed in round {round_index}: {reason}', status,
                     log_path)
  kept = os.path.join(workdir, 'runs', f'{stem}.json')
  os.replace(os.path.join(run_dir, 'report.json'), kept)
  shutil.rmtree(run_dir)
  with open(kept, encoding='utf-8') as f:
    report = json.load(f)
  if report.get('schema_version') == report_lib.SCHEMA_VERSION:
    report_lib.validate(report)
  else:
    # Another revision's schema (a commit that changed the report): only what timing
    # reads is needed from it, and the deterministic diff is left out (result()).
    try:
      ab_result.medians(report)
      ab_result.matmul_peak(report)
    except (KeyError, TypeError, AttributeError):
      raise UserError(f'the {side} revision\'s report (schema '
                      f'{report.get("schema_version")}) has no cases[].step_time_s.median '
                      f'and environment.peaks that bench.ab can read: {kept}') from None
  return report, seconds


def _suite_status(run_dir):
  """The suite status of the report in `run_dir`, or None without a readable one."""
  try:
    with open(os.path.join(run_dir, 'report.json'), encoding='utf-8') as f:
      return json.load(f)['suite']['status']
  except (OSError, ValueError, KeyError, TypeError):
    return None


def run_round(ab, worktrees, workdir):
  """Runs the next round of `ab`, its sides in the round's order, and records it."""
  index, order = ab.next_round()
  ab.add_round({side: run_side(side, index, worktrees[side], ab.config, ab.overrides, workdir)
                for side in order})


def _prepare(args):
  """(repo, commits, the config's path in the repository), every problem a UserError,
  before anything is written."""
  repo = repository()
  if repo is None:
    raise UserError(f'{os.path.abspath(".")} is not in a git checkout: bench.ab compares '
                    'revisions, so run it inside a clone of the repository')
  for path in stale_worktrees(repo):  # a killed A/B's, wherever its workdir was
    print(f'note: removing the worktree {path} a killed bench.ab left', file=sys.stderr)
    remove_worktree(repo, path)
  commits = {side: resolve(repo, getattr(args, side), f'--{side}') for side in SIDES}
  config = os.path.relpath(os.path.abspath(args.config), repo)
  if config.startswith(os.pardir):
    raise UserError(f'--config={args.config} is outside the repository {repo}; give a '
                    'config of the repository, such as configs/quickstart.py')
  for side in SIDES:
    _check_config(repo, commits[side], getattr(args, side), config)
  if os.path.exists(args.workdir) and not os.path.isdir(args.workdir):
    raise UserError(f'--workdir={args.workdir} is a file; give a directory (created if '
                    'missing) for ab.json, ab.md, its runs and logs')
  return repo, commits, config


def check_config(args, overrides):
  """args.config resolved (a shipped config by name: --config=quickstart) and the
  overrides checked up front (a field, a value's type, one no case reads) on this
  checkout's copy of it, before any worktree or round: each side then runs its own
  revision's copy, and reports its own problems."""
  args.config = configs.resolve(args.config) or args.config
  if os.path.isfile(args.config):
    configs.load(args.config, overrides)


def settled(body, kept):
  """(body(), None), body running A/Bs under interrupt.raising(); or (None, the exit
  status) once a side failed (its line printed; a side's one-line user error raised
  as a UserError) or a signal ended it (the interrupted line, with `kept`: where what
  finished before it is)."""
  try:
    with interrupt.raising():
      return body(), None
  except SideFailed as e:
    if e.status == 2:
      raise UserError(str(e)) from None  # the side's own (a bad config field, missing data)
    print(f'error: {e}', file=sys.stderr)
    return None, 1
  except interrupt.Interrupted as e:  # its side ended and the worktrees removed
    print(f'interrupted: {e}; {kept}', file=sys.stderr)
    return None, 128 + e.signum


def run(args, overrides, out=sys.stdout):
  """The A/B, as main runs it; returns the result dict."""
  repo, commits, config = _prepare(args)
  if git(repo, 'status', '--porcelain', '--untracked-files=no').stdout.strip():
    print(f'note: the uncommitted changes in {repo} are in neither side (each side is a '
          'commit): commit them to time them', file=sys.stderr)
  workdir = os.path.abspath(args.workdir)
  created = not os.path.exists(workdir)
  for sub in ('runs', 'logs'):  # an earlier A/B's here would mix with this one's
    shutil.rmtree(os.path.join(workdir, sub), ignore_errors=True)
    try:
      os.makedirs(os.path.join(workdir, sub))
    except OSError as e:
      raise UserError(f'cannot create --workdir={args.workdir} ({e.strerror or e}); give a '
                      'directory you can create and write') from None
  fileio.sweep(workdir)  # ab.json's and ab.md's temporary files, if a killed A/B left them
  worktrees = {side: os.path.join(workdir, 'worktrees', side) for side in SIDES}
  seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**31)
  ab = ab_result.AB(args, commits, config, overrides, seed)
  added = []
  try:
    for side in SIDES:
      add_worktree(repo, worktrees[side], commits[side])
      added.append(worktrees[side])
    while True:
      try:
        run_round(ab, worktrees, workdir)
      except SideFailed as e:
        if e.status == 2 and not ab.rounds and created:
          shutil.rmtree(workdir, ignore_errors=True)  # a config problem: nothing left behind
          e.log = None  # its one line is the side's whole story
        raise
      n = len(ab.rounds)
      undecided = ([c['name'] for c in ab.cases(final=False) if c['verdict'] is None]
                   if n in looks(args) else None)
      print(f'round {n}: ' + ', '.join(f'{side} {ab.rounds[-1]["seconds"][side]:.1f} s'
                                       for side in ab.rounds[-1]['order'])
            + (f'; undecided: {", ".join(undecided)}' if undecided else ''),
            file=out, flush=True)
      ab.stopped = stop_reason(n, undecided, time.time() - ab.started, args)
      if ab.stopped:
        break
      ab_result.write(workdir, ab.result(final=False))
  finally:
    for path in added:
      remove_worktree(repo, path)
  result = ab.result(final=True)
  ab_result.write(workdir, result)
  return result
