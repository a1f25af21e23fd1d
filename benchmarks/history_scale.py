"""How fast `flax-bench history` answers at size: a synthetic history of RUNS runs over
COMMITS commits on 2 machines (4 cases a run), built once at PATH, then each command
timed in a fresh process, as a user runs it.

  python benchmarks/history_scale.py PATH [--runs=10000] [--commits=1000] [--rounds=5]

Prints the seconds recording took per run, then one row per command: its wall time
over ROUNDS calls, interleaved (median, min, max), and the 1-minute load average
after each round.
"""

import argparse
import hashlib
import os
import statistics
import subprocess
import sys
import time

import numpy as np

from bench.results import history
from bench.results import schema as report_lib

CASES = {'seed_mlp': (0.0011, 400_000), 'seed_cnn': (0.040, 1_200_000),
         'resnet18': (0.34, 11_000_000), 'cifar_base': (0.0126, 600_000)}
_ENVIRONMENT = {
    'python': '3.11', 'versions': {'flax_bench': '0.1.0', 'jax': '0.10.2', 'jaxlib': '0.10.2'},
    'backend': 'cpu', 'device_kind': 'cpu', 'device_count': 1, 'local_device_count': 1,
    'process_count': 1, 'devices_per_process': [1], 'cpu_count': 2, 'xla_flags': None,
    'compile_cache': None, 'git_dirty': False, 'command': 'synthetic', 'cpu_signature': 'x',
    'memory_bytes': 24 << 30, 'timestamp_utc': '2026-01-01T00:00:00+00:00'}


def _report(commit, machine, rng, slow):
  cases = []
  for name, (median, params) in CASES.items():
    level = median * (1.3 if machine else 1.0) * (1.15 if slow and name == 'seed_cnn' else 1)
    samples = sorted(level * float(np.exp(rng.normal(0, 0.03))) for _ in range(5))
    case = report_lib.new_case(name, {'model': name, 'batch_size': 32, 'dtype': 'float32',
                                      'benchmark': 'train_step'})
    case.update(status='ok', params={'total': params, 'trainable': params, 'non_trainable': 0})
    case['xla'].update(flops=params * 64.0, bytes_accessed=params * 128.0)
    case['step_time_s'].update(median=samples[2], mean=statistics.fmean(samples),
                               min=samples[0], max=samples[-1], p10=samples[0],
                               p90=samples[-1], iqr=samples[3] - samples[1],
                               iqr_over_median=(samples[3] - samples[1]) / samples[2], n=5,
                               samples=samples)
    cases.append(case)
  env = {**_ENVIRONMENT, 'git_commit': commit, 'machine_id': f'host{machine}',
         'cpu_model': f'synthetic cpu {machine}', 'hostname': f'host{machine}',
         'peaks': {'device': 'cpu:0 cpu', 'matmul_flops_per_s': {'float32': 1e11},
                   'matmul_size': {'float32': 1024}, 'copy_bytes_per_s': 1e10,
                   'copy_bytes': 1 << 26, 'repeats': 5, 'seconds': 0.5}}
  return report_lib.build('synthetic', 'configs/synthetic.py', env, cases, [])


def build(path, runs, commits, seed=0):
  """The history at `path`: `runs` runs, spread evenly over `commits` commits and 2
  machines; seed_cnn 15% slower from the middle commit on. Returns seconds per run."""
  rng = np.random.default_rng(seed)
  conn = history.connect(path)
  t0 = time.perf_counter()
  for i in range(runs):
    commit = i * commits // runs
    history.record_report(conn, _report(hashlib.sha1(str(commit).encode()).hexdigest(), i % 2,
                                        rng, commit >= commits // 2),
                          commit_time=1_700_000_000 + 600 * commit)
  conn.close()
  return (time.perf_counter() - t0) / runs


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('path')
  parser.add_argument('--runs', type=int, default=10_000)
  parser.add_argument('--commits', type=int, default=1_000)
  parser.add_argument('--rounds', type=int, default=5)
  args = parser.parse_args()
  if not os.path.exists(args.path):
    print(f'recording: {build(args.path, args.runs, args.commits) * 1e3:.1f} ms a run')
  commands = (('list',), ('show', 'seed_cnn', '--by_time'), ('changes', '--by_time'),
              ('changes', '--by_time', '--case=seed_cnn'), ('export', '--format=csv'))
  # Interleaved: each round calls every command once, so a slow spell of this shared
  # machine falls on all of them, not on one.
  seconds = {command: [] for command in commands}
  loads = []
  for _ in range(args.rounds):
    for command in commands:
      t0 = time.perf_counter()
      subprocess.run([sys.executable, '-m', 'bench.history', f'--history={args.path}',
                      *command], check=True, stdout=subprocess.DEVNULL)
      seconds[command].append(time.perf_counter() - t0)
    loads.append(os.getloadavg()[0])
  print(f'| command | seconds: median [min, max] of {args.rounds} |')
  print('|---|---|')
  for command, taken in seconds.items():
    print(f'| history {" ".join(command)} | {statistics.median(taken):.2f} '
          f'[{min(taken):.2f}, {max(taken):.2f}] |')
  print(f'1-minute load average after each round: {", ".join(f"{v:.2f}" for v in loads)}')


if __name__ == '__main__':
  main()
