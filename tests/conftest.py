"""Shared helpers: run the real CLI in a subprocess, build cases in-process."""

import os
import subprocess
import sys

from bench import report as report_lib
from bench import runner
from bench import suite
from configs import base

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_cli(*args, module='bench.main'):
  """Runs `python -m module args` from the repository root; returns the CompletedProcess."""
  return subprocess.run([sys.executable, '-m', module, *args], cwd=REPO, capture_output=True,
                        text=True, timeout=600, check=False)


def case_config(**fields):
  """A validated single case: configs/base.py with `fields` set."""
  config = base.get_config()
  config.update(fields)
  (_, case), = suite.expand(config).cases
  return case


def build_case(**fields):
  """(record, step, state, batches) of a single case built as the runner builds it."""
  record = report_lib.new_case('test', {})
  step, state, batches = runner.build(case_config(**fields), runner.data_mesh(), record)
  return record, step, state, batches
