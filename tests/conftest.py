"""Shared helpers: run the real CLI in a subprocess or in this process, build cases.

No test may reach the network: tests/offline/sitecustomize.py makes every
non-local connection raise, in this process (imported below) and in every
subprocess (PYTHONPATH).

The test session shares one persistent JAX compilation cache (under
.pytest_cache/), in this process and in every subprocess (the environment
below is set before jax is imported): the same small programs are compiled by
many tests and CLI runs, and a program compiled once is read back after that.
Thresholds at zero, so that small programs are cached too. Nothing is recorded
in the user's results history (bench/run/history.py).
"""

import contextlib
import importlib
import io
import itertools
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
os.environ.update(
    JAX_COMPILATION_CACHE_DIR=os.path.join(REPO, '.pytest_cache', 'jax_compilation_cache'),
    JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS='0',
    JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES='0',
    # Runs record into no user's history; the tests of the history name their own file.
    FLAX_BENCH_HISTORY='off',
    # Nor predict from any user's kernel database; the tests of predictions name their own.
    FLAX_BENCH_KERNELS='off')

# pylint: disable=wrong-import-position  (after the cache settings above)
from bench.core import parallel
from bench.results import case_record
from bench.run import runner
from bench.run import suite
from bench.workload import build
from configs import base
from input_pipeline import shapes

from tests.offline import sitecustomize  # noqa: F401  (guards this process's sockets)

_OFFLINE = os.path.join(REPO, 'tests', 'offline')


@pytest.fixture(scope='session')
def data_dir(tmp_path_factory):
  """A data_dir holding the generated shapes dataset (360 images, 6 classes), made once
  for the session: the tests read it and write their runs elsewhere."""
  root = str(tmp_path_factory.mktemp('data'))
  shapes.ensure(root)
  return root


def run_cli(*args, module='bench.main', env=None, cwd=REPO):
  """Runs `python -m module args` from `cwd` (the repository root), offline; returns the
  CompletedProcess. `env` adds to or overrides the environment."""
  env = {**os.environ, **(env or {})}
  env['PYTHONPATH'] = os.pathsep.join(p for p in (_OFFLINE, env.get('PYTHONPATH')) if p)
  return subprocess.run([sys.executable, '-m', module, *args], cwd=cwd, capture_output=True,
                        text=True, timeout=600, check=False, env=env)


def call_cli(*args, module='bench.main'):
  """Runs the CLI `python -m module args` in this process, with what it writes to
  stdout and stderr captured and its exit status caught; returns a CompletedProcess.

  For the tests of what a command does with its arguments and config, where a
  subprocess would only add seconds of imports; one real subprocess per CLI is
  tested besides. Every CLI is a `main(argv)` without global state, whose return
  value is the exit status, as `sys.exit(main())` makes it.
  """
  stdout, stderr = io.StringIO(), io.StringIO()
  try:
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
      code = importlib.import_module(module).main(list(args)) or 0
  except SystemExit as e:
    code = e.code if isinstance(e.code, int) else 0 if e.code is None else 1
  return subprocess.CompletedProcess([module, *args], code, stdout.getvalue(),
                                     stderr.getvalue())


def case_config(**fields):
  """A validated single case: configs/base.py with `fields` set."""
  config = base.get_config()
  config.update(fields)
  (_, case), = suite.expand(config).cases
  return case


def build_case(**fields):
  """(record, step, state, batches) of a single case built as the runner builds it;
  `batches` is a list of the case's first num_batches batches."""
  case, mesh = case_config(**fields), parallel.mesh()
  step, state, batches, _, built = build.build(case, mesh, runner.open_input('test', case, mesh))
  record = case_record.assemble('test', {}, mesh.size, build.per_device_batch(case, mesh),
                                built=built)
  return record, step, state, list(itertools.islice(batches, case.num_batches))
