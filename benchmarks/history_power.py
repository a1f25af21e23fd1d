"""The power of `flax-bench history changes` on synthetic series: how often a planted
step is found at its exact commit, and how many points where nothing was planted are
called a change, at the lengths and noises a history reaches.

Each series is `runs` runs per commit of one case on one machine, each run's median
step time the level times exp(N(0, noise)); a step of `step` is planted at a random
commit between a tenth and nine tenths of the line. Judged as `changes` judges a
series (change_points.judge_series), with its defaults: window 3, threshold 5%,
confidence 95%.

  python benchmarks/history_power.py [--trials=40] [--seed=0]

Prints one row per scenario: found at the exact commit, found elsewhere or not at
all, and the false calls (regression or faster at a point other than the planted
one) among the points judged; then the seconds a series took to judge.
"""

import argparse
import time

import numpy as np

from bench.results import change_points
from bench.results.history_schema import MACHINE_COLUMNS

# One machine, its peaks steady: nothing but the planted step moves.
_ROW = {**{column: f'synthetic {key}' for key, column in MACHINE_COLUMNS.items()},
        'matmul_flops_per_s': 4e11, 'copy_bytes_per_s': 5e10}
# (label, commits, runs per commit, run noise, planted step or None).
SCENARIOS = (
    ('20% step, 4% noise, 200 commits', 200, 3, 0.04, 1.20),
    ('10% step, 4% noise, 200 commits', 200, 3, 0.04, 1.10),
    ('10% step, 4% noise, 1,200 commits', 1200, 3, 0.04, 1.10),
    ('8% step, 2% noise, 200 commits', 200, 3, 0.02, 1.08),
    ('8% step, 2% noise, 1,200 commits', 1200, 3, 0.02, 1.08),
    ('nothing planted, 4% noise, 200 commits', 200, 3, 0.04, None),
    ('nothing planted, 4% noise, 1,200 commits', 1200, 3, 0.04, None),
)


def synthetic(rng, commits, runs, noise, step):
  """([(commit, [rows])], the index of the first slow commit or None)."""
  at = int(rng.integers(commits // 10, commits * 9 // 10)) if step else None
  line = []
  for i in range(commits):
    level = 0.010 * (step if at is not None and i >= at else 1.0)
    line.append((f'{i:040d}', [{**_ROW, 'median_s': level * float(np.exp(rng.normal(0, noise)))}
                               for _ in range(runs)]))
  return line, at


def scenario(rng, trials, commits, runs, noise, step):
  exact = false_calls = judged = 0
  seconds = []
  for _ in range(trials):
    line, at = synthetic(rng, commits, runs, noise, step)
    t0 = time.perf_counter()
    points = change_points.judge_series(line)
    seconds.append(time.perf_counter() - t0)
    changed = [k for k, p in enumerate(points, start=1)
               if p['verdict'] in ('regression', 'faster')]
    exact += at in changed
    false_calls += sum(k != at for k in changed)
    judged += len(points) - (at is not None)
  return exact, false_calls, judged, float(np.median(seconds))


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--trials', type=int, default=40)
  parser.add_argument('--seed', type=int, default=0)
  args = parser.parse_args()
  rng = np.random.default_rng(args.seed)
  print('| scenario | found at the exact commit | false calls / points judged | '
        's per series |')
  print('|---|---|---|---|')
  for label, commits, runs, noise, step in SCENARIOS:
    exact, false_calls, judged, seconds = scenario(rng, args.trials, commits, runs, noise, step)
    found = f'{exact}/{args.trials}' if step else 'n/a'
    print(f'| {label} | {found} | {false_calls}/{judged} | {seconds:.2f} |', flush=True)


if __name__ == '__main__':
  main()
