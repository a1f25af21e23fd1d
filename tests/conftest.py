"""Shared helpers: run the real CLI in a subprocess, build cases in-process.

No test may reach the network: tests/offline/sitecustomize.py makes every
non-local connection raise, in this process (imported below) and in every
subprocess (PYTHONPATH).
"""

import itertools
import os
import subprocess
import sys

from bench import build
from bench import report as report_lib
from bench import parallel
from bench import runner
from bench import suite
from configs import base

from tests.offline import sitecustomize  # noqa: F401  (guards this process's sockets)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_OFFLINE = os.path.join(REPO, 'tests', 'offline')


def run_cli(*args, module='bench.main', env=None):
  """Runs `python -m module args` from the repository root, offline; returns the
  CompletedProcess. `env` adds to or overrides the environment."""
  env = {**os.environ, **(env or {})}
  env['PYTHONPATH'] = os.pathsep.join(p for p in (_OFFLINE, env.get('PYTHONPATH')) if p)
  return subprocess.run([sys.executable, '-m', module, *args], cwd=REPO, capture_output=True,
                        text=True, timeout=600, check=False, env=env)


def case_config(**fields):
  """A validated single case: configs/base.py with `fields` set."""
  config = base.get_config()
  config.update(fields)
  (_, case), = suite.expand(config).cases
  return case


def build_case(**fields):
  """(record, step, state, batches) of a single case built as the runner builds it;
  `batches` is a list of the case's first num_batches batches."""
  record = report_lib.new_case('test', {})
  case, mesh = case_config(**fields), parallel.mesh()
  step, state, batches = build.build(case, mesh, record, runner.open_input('test', case, mesh))
  return record, step, state, list(itertools.islice(batches, case.num_batches))
