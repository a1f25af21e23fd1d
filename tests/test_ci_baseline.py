"""The CI benchmark's wiring: the committed baseline, the config it came from, make."""

import json
import os
import subprocess

from bench.core import parallel
from bench.measure import environment
from bench.results import compare
from bench.results import schema as report_lib
from bench.run import runner
from bench.run import suite as suite_lib
from configs import ci_cpu
from tests.conftest import REPO

BASELINE = os.path.join(REPO, 'benchmarks', 'baseline-cpu.json')


def test_baseline_is_a_current_report_of_the_ci_config():
  # A schema or config change without `make baseline` fails here, not only in CI's last step.
  baseline = report_lib.read(BASELINE)
  cases = suite_lib.expand(ci_cpu.get_config()).cases
  assert [c['name'] for c in baseline['cases']] == [name for name, _ in cases]
  for (name, case), record in zip(cases, baseline['cases']):
    assert record['status'] == 'ok', name
    assert record['config'] == json.loads(json.dumps(case.to_dict())), name


def test_a_fresh_run_matches_the_baseline_in_every_deterministic_figure():
  baseline = report_lib.read(BASELINE)
  config = ci_cpu.get_config()
  config.select = 'seed_mlp'
  (name, case), = suite_lib.expand(config).cases
  record = runner.run_case(name, case, parallel.mesh(case.num_devices))
  new = report_lib.build('ci_cpu', None, environment.collect(), [record], [])
  old = {**baseline, 'cases': [c for c in baseline['cases'] if c['name'] == name]}
  result = compare.compare(old, new)
  assert compare.exit_status(result, timing_gates=False) == 0, compare.render(result, 'text')


def test_make_bench_ci_diffs_against_the_baseline_with_advisory_timing():
  commands = subprocess.run(['make', '-n', 'bench-ci'], cwd=REPO,
                            capture_output=True, text=True, check=True).stdout
  assert ('env -u XLA_FLAGS JAX_PLATFORMS=cpu .venv/bin/python -m bench.main '
          '--config=configs/ci_cpu.py --workdir=workdirs/ci-cpu --restart' in commands)
  assert ('-m bench.compare benchmarks/baseline-cpu.json workdirs/ci-cpu/report.json '
          '--timing=advisory --format=text' in commands)
  with open(os.path.join(REPO, '.ci', 'run'), encoding='utf-8') as f:
    steps = [line.strip() for line in f if line.startswith('make ')]
  assert steps == ['make test', 'make bench-ci', 'make ab-ci']


def test_make_ab_ci_gates_timing_of_head_against_its_parent():
  commands = subprocess.run(['make', '-n', 'ab-ci'], cwd=REPO,
                            capture_output=True, text=True, check=True).stdout
  assert "git rev-parse -q --verify 'HEAD^^{commit}'" in commands
  assert ("env -u XLA_FLAGS JAX_PLATFORMS=cpu .venv/bin/python -m bench.ab --base='HEAD^' "
          '--new=HEAD' in commands)
  # Deterministic figures are gated by bench-ci against the baseline, not here.
  assert '--workdir=workdirs/ab-ci --changes=advisory' in commands
