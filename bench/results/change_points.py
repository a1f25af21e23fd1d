"""Where along a line of commits a case's figures moved: the statistics of change
points over the runs the history (bench/results/history.py, the store) holds.

Each series is one case in one config at one batch size on one machine
(`series`); its commits are read in the order of a line (`per_commit`). `changes`
compares the runs of the commits on each side of every point with the unpaired
Hodges-Lehmann interval (ab_stats.rank_sum_interval) and judges it as bench.ab
does; `trend` is `history show`'s table and plot.
"""

import math

import numpy as np

from bench.core import machine as machine_lib
from bench.core.stats import median
from bench.results import ab_stats
from bench.results import history
from bench.results import history_schema


def order_commits(rows, lineage=None):
  """The commits of `rows` in order: along `lineage` (commits, oldest first, from git)
  where given, dropping those off it; else by commit time, then first recording."""
  if lineage is not None:
    position = {c: i for i, c in enumerate(lineage)}
    return sorted({r['commit_sha'] for r in rows if r['commit_sha'] in position},
                  key=position.get)
  first = {}
  for r in rows:
    key = (r['commit_time'] if r['commit_time'] is not None else math.inf, r['recorded_at'])
    first[r['commit_sha']] = min(first.get(r['commit_sha'], key), key)
  return sorted(first, key=first.get)


def per_commit(rows, lineage=None):
  """[(commit, [rows of its ok runs])] along the commits (order_commits). A run with
  uncommitted changes is not its commit's: left out."""
  ok = [r for r in rows if r['status'] == 'ok' and r['median_s'] and r['commit_sha']
        and not r['dirty']]
  return [(c, [r for r in ok if r['commit_sha'] == c]) for c in order_commits(ok, lineage)]


def series(rows):
  """{(case, config, batch size, machine key): its rows}: figures of two machines, or
  of one case name in two configs or at two batch sizes, are never one series."""
  return _by(rows, lambda r: (r['name'], r['config_name'], r['batch_size'], r['machine_key']))


def changes(conn, case=None, config=None, lineage=None, window=3, threshold=0.05,
            confidence=0.95):
  """Where along the commits each case's median step time moved beyond its noise,
  per config, batch size and machine, and where its deterministic figures changed.

  At each point between two consecutive commits, the run medians of up to `window`
  commits before and after are compared: the Hodges-Lehmann ratio after/before and
  its exact Mann-Whitney interval (ab_stats.rank_sum_interval), at `confidence` for
  all points of a case together (Bonferroni), judged against `threshold` as bench.ab
  judges (ab_stats.verdict). Of consecutive points with the same verdict, the one
  with the largest ratio is the change: a step moves the points around it too.
  A point is undecided, and says why, when either side has fewer than 2 runs, too
  few to bound the ratio at that confidence, or the machine's measured peaks moved
  beyond their noise across it, or the machine is unknown (bench/core/machine.py).

  Returns {'timing': [{case, machine, commit, previous, ratio, low, high, verdict,
  before, after}], 'undecided': [{case, machine, commit, reason}], 'deterministic':
  [{case, machine, commit, previous, figure, before, after}]}.
  """
  timing, undecided, exact = [], [], []
  rows = history.case_runs(conn, case=case, config=config)
  for (name, _, _, machine), group in series(rows).items():
    commits = per_commit(group, lineage)
    points = len(commits) - 1
    if points < 1:
      continue
    per_point = 1 - (1 - confidence) / points
    found = []
    for k in range(1, len(commits)):
      commit, previous = commits[k][0], commits[k - 1][0]
      exact += [{'case': name, 'machine': machine, 'commit': commit, 'previous': previous,
                 'figure': figure, 'before': a, 'after': b}
                for figure in history_schema.DETERMINISTIC
                for a, b in [(commits[k - 1][1][-1][figure], commits[k][1][-1][figure])]
                if a != b and a is not None and b is not None]  # None: not measured
      before = [r for _, runs_ in commits[max(0, k - window):k] for r in runs_]
      after = [r for _, runs_ in commits[k:k + window] for r in runs_]
      why = _cannot_decide(before, after)
      if why:
        undecided.append({'case': name, 'machine': machine, 'commit': commit, 'reason': why})
        continue
      estimate, low, high = ab_stats.rank_sum_interval(
          np.log([r['median_s'] for r in before]), np.log([r['median_s'] for r in after]),
          per_point)
      if not math.isfinite(low):
        undecided.append({'case': name, 'machine': machine, 'commit': commit, 'reason': (
            f'{len(before)} runs before and {len(after)} after cannot bound the ratio at '
            f'{per_point:.2%} confidence: record more runs per commit, or widen --window')})
        continue
      verdict = ab_stats.verdict(low, high, threshold)
      if verdict in ('regression', 'faster'):
        found.append({'case': name, 'machine': machine, 'commit': commit, 'previous': previous,
                      'index': k, 'ratio': math.exp(estimate), 'low': math.exp(low),
                      'high': math.exp(high), 'verdict': verdict, 'before': len(before),
                      'after': len(after)})
    timing += _strongest(found)
  return {'timing': timing, 'undecided': undecided, 'deterministic': exact}


def _by(rows, key):
  out = {}
  for r in rows:
    out.setdefault(key(r), []).append(r)
  return out


def _peaks(rows):
  """{label: the median of the rows' peaks}, as machine.peak_moves reads them."""
  return {label: median(r[column] for r in rows) for label, column in (
      ('matmul peak', 'matmul_flops_per_s'), ('copy bandwidth', 'copy_bytes_per_s'))}


def _cannot_decide(before, after):
  """Why a point cannot be judged: too few runs, or not the same machine on both sides
  (bench/core/machine.py: a series is one machine's, so its peaks moved, or it is
  unknown); None when it can."""
  if min(len(before), len(after)) < 2:
    return f'too few runs ({len(before)} before, {len(after)} after; 2 needed on each side)'
  return machine_lib.judge(history.identity(before[-1]), history.identity(after[0]),
                           _peaks(before), _peaks(after)) or None


def _strongest(found):
  """Of each stretch of consecutive points with one verdict, the one moved most."""
  stretches = []
  for point in found:
    last = stretches[-1][-1] if stretches else None
    if last and last['verdict'] == point['verdict'] and last['index'] == point['index'] - 1:
      stretches[-1].append(point)
    else:
      stretches.append([point])
  strongest = [max(s, key=lambda p: abs(math.log(p['ratio']))) for s in stretches]
  return [{k: v for k, v in p.items() if k != 'index'} for p in strongest]


def trend(rows, lineage, verdicts):
  """A case's median step time per commit, per series, for `history show`: [{'row': a
  run of the series (its machine, config and batch), 'points': [{index, commit, when,
  median_s, low_s, high_s, runs, iqr_over_median, ab}]}]. One index per commit on
  the line, whichever machines ran it; `verdicts` are ab_verdicts. [] when no run is
  on the line."""
  position = {commit: i for i, (commit, _) in enumerate(per_commit(rows, lineage))}
  out = []
  for group in series(rows).values():
    points = []
    for commit, runs_ in per_commit(group, lineage):
      medians = sorted(r['median_s'] for r in runs_)
      points.append({'index': position[commit], 'commit': commit,
                     'when': runs_[0]['commit_time'] or runs_[0]['recorded_at'],
                     'median_s': median(medians), 'low_s': medians[0], 'high_s': medians[-1],
                     'runs': len(medians),
                     'iqr_over_median': median(r['iqr_over_median'] for r in runs_),
                     'ab': verdicts.get(commit, [])})
    if points:
      out.append({'row': group[0], 'points': points})
  return out
