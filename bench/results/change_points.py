"""Where along a line of commits a case's figures moved: the statistics of change
points over the runs the history (bench/results/history.py, the store) holds.

Each series is one case in one config at one batch size on one machine
(`series`); its commits are read in the order of a line (`per_commit`). `changes`
gives every point between two commits a verdict: the series is cut where its
program or machine changed, its levels found by binary segmentation (`levels`,
ruptures), and each point judged by the runs on each side with the unpaired
Hodges-Lehmann interval (ab_stats.rank_sum_interval), as bench.ab judges; `trend`
is `history show`'s table and plot.
"""

import functools
import math

import numpy as np

from bench.core import machine as machine_lib
from bench.core.stats import median
from bench.results import ab_stats
from bench.results import history
from bench.results import history_schema

# What `changes` says of each point between two commits of a series.
VERDICTS = ('regression', 'faster', 'same', 'undecided')
# How many windows of commits on each side a level boundary is judged by, at most.
LEVEL_WINDOWS = 10


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
  by_commit = _by(ok, lambda r: r['commit_sha'])
  return [(c, by_commit[c]) for c in order_commits(ok, lineage)]


def series(rows):
  """{(case, config, batch size, machine key): its rows}: figures of two machines, or
  of one case name in two configs or at two batch sizes, are never one series."""
  return _by(rows, lambda r: (r['name'], r['config_name'], r['batch_size'], r['machine_key']))


def changes(conn, case=None, config=None, lineage=None, window=3, threshold=0.05,
            confidence=0.95):
  """Every point along the commits of every series (a case in a config at a batch
  size on a machine) judged, and where its deterministic figures changed.

  A series is cut where its program changed (a deterministic figure: a new program is
  a new series from there, never a timing verdict) or its machine did (its measured
  peaks moved beyond their noise); each piece is segmented by `levels` (binary
  segmentation of its per-commit medians, ruptures). A point is judged by the runs of
  up to `window` commits on each side (a level boundary: up to LEVEL_WINDOWS times
  as many, its levels' runs), never across another cut or level boundary:
  the Hodges-Lehmann ratio after/before with its exact Mann-Whitney interval
  (ab_stats.rank_sum_interval) against `threshold`, as bench.ab judges. A level
  boundary is a change ('regression', 'faster') when its interval, at `confidence`
  for a series' boundaries together (Bonferroni over them, a few, not over every
  point: the power does not fall with the history's length), lies beyond the
  threshold; any other point is 'same' when its interval at `confidence` lies
  within it. Every other point is 'undecided', and says why: too few runs, an
  interval that crosses the threshold, a machine or program that changed, a move
  that is no level boundary.

  Returns {'points': [{case, config, config_file, batch_size, machine, commit, previous,
  verdict, reason, ratio, low, high, before, after, unrun: commits of the line between
  previous and commit that no run recorded (None without a line)}] (every point,
  series by series),
  'timing': the points that are changes, 'undecided': the undecided points,
  'deterministic': [{case, machine, commit, previous, figure, before, after}],
  'counts': {verdict: points}, 'series': how many series have a commit on the line}.
  """
  points, exact, lines = [], [], 0
  position = {c: i for i, c in enumerate(lineage or ())}
  for (name, config_name, batch, machine), group in series(
      history.case_runs(conn, case=case, config=config)).items():
    commits = per_commit(group, lineage)
    lines += bool(commits)
    labels = {'case': name, 'config': config_name, 'batch_size': batch, 'machine': machine,
              'config_file': group[-1]['config_file']}
    moved = program_changes(commits)
    exact += [{**labels, **change} for change in moved]
    cuts = {}
    for c in moved:
      cuts[c['index']] = ', '.join(filter(None, (cuts.get(c['index']),
                                                 f'{c["figure"]} {c["before"]} -> {c["after"]}')))
    # A point between commits with unrecorded ones on the line between them is coarse:
    # its change happened at one of those (`unrun`; None without a line).
    points += [{**labels, **point, 'unrun': position[point['commit']]
                - position[point['previous']] - 1 if position else None}
               for point in judge_series(commits, cuts, window, threshold, confidence)]
  counts = {verdict: sum(p['verdict'] == verdict for p in points) for verdict in VERDICTS}
  return {'points': points, 'counts': counts, 'series': lines, 'deterministic': exact,
          'timing': [p for p in points if p['verdict'] in ('regression', 'faster')],
          'undecided': [p for p in points if p['verdict'] == 'undecided']}


def program_changes(commits):
  """[{index, commit, previous, figure, before, after}]: each deterministic figure that
  differs between the last runs of consecutive commits (None: not measured)."""
  out = []
  for k in range(1, len(commits)):
    last, now = commits[k - 1][1][-1], commits[k][1][-1]
    out += [{'index': k, 'commit': commits[k][0], 'previous': commits[k - 1][0],
             'figure': figure, 'before': last[figure], 'after': now[figure]}
            for figure in history_schema.DETERMINISTIC
            if last[figure] != now[figure] and None not in (last[figure], now[figure])]
  return out


def levels(values, threshold):
  """Indices where a new level starts in `values` (log medians, one per commit): ruptures'
  binary segmentation with the least-squares cost, stopped when a split gains less
  than the BIC-like penalty 2 sigma^2 ln(n). sigma is the values' noise, robustly from
  their successive differences (a step moves one of them), and at least a quarter of
  the threshold's log: a level that moved less than the threshold is no change worth a
  boundary, and a series of equal values has no noise to scale by."""
  n = len(values)
  if n < 2:
    return []
  differences = np.diff(values)
  sigma = 1.4826 * np.median(np.abs(differences - np.median(differences))) / math.sqrt(2)
  sigma = max(sigma, math.log1p(threshold) / 4)
  import ruptures  # pylint: disable=import-outside-toplevel  (with scipy.stats: 0.8 s)
  found = ruptures.Binseg(custom_cost=_squares(ruptures.base.BaseCost)(), min_size=1,
                          jump=1).fit(np.asarray(values, float)).predict(
                              pen=2 * sigma**2 * math.log(n))
  return found[:-1]  # ruptures ends the list with n


@functools.cache
def _squares(base):
  """ruptures' least-squares cost ('l2') of a segment from cumulative sums: O(1) a
  segment where ruptures' own takes a variance of its slice (binary segmentation asks
  for every split of every segment: 0.1 s for 1,000 commits with ruptures' own)."""
  class Squares(base):
    model = 'squares'
    min_size = 1

    def fit(self, signal):
      self.signal = signal  # ruptures reads its length
      self.sums = np.concatenate([[0.0], np.cumsum(signal)]).tolist()
      self.squares = np.concatenate([[0.0], np.cumsum(np.square(signal))]).tolist()
      return self

    def error(self, start, end):
      total = self.sums[end] - self.sums[start]
      return self.squares[end] - self.squares[start] - total * total / (end - start)

  return Squares


def judge_series(commits, program_cuts=None, window=3, threshold=0.05, confidence=0.95):
  """[point] of one series' commits ([(commit, [runs])]: case_runs rows, of which
  median_s and the machine's columns are read), `program_cuts` {index: what changed}
  where its program changed (`changes` says how each point is judged, and what a
  point holds)."""
  program_cuts = program_cuts or {}
  if len(commits) < 2:
    return []
  log_medians = [[math.log(r['median_s']) for r in runs_] for _, runs_ in commits]
  peaks = [_peaks(runs_) for _, runs_ in commits]
  machine_cuts = {k: why for k in range(1, len(commits)) for why in [machine_lib.judge(
      history.identity(commits[k - 1][1][-1]), history.identity(commits[k][1][0]),
      peaks[k - 1], peaks[k])] if why}
  cuts = sorted({0, len(commits), *program_cuts, *machine_cuts})
  boundaries = set()
  for start, end in zip(cuts, cuts[1:]):
    boundaries |= {start + k for k in levels([median(v) for v in log_medians[start:end]],
                                              threshold)}
  edges = sorted(set(cuts) | boundaries)
  per_boundary = 1 - (1 - confidence) / max(len(boundaries), 1)
  out = []
  for k in range(1, len(commits)):
    point = {'commit': commits[k][0], 'previous': commits[k - 1][0], 'ratio': None,
             'low': None, 'high': None}
    if k in program_cuts:
      out.append({**point, 'verdict': 'undecided', 'before': 0, 'after': 0, 'reason': (
          f'the program changed ({program_cuts[k]}): timed as a new series from here')})
      continue
    if k in machine_cuts:
      out.append({**point, 'verdict': 'undecided', 'before': 0, 'after': 0,
                  'reason': machine_cuts[k]})
      continue
    low_edge = max(e for e in edges if e < k)
    high_edge = min(e for e in edges if e > k)
    # A level boundary compares the levels on its sides, each constant by the
    # segmentation, so more of their runs than a point's window: the power to confirm a
    # step grows with the levels' length (up to LEVEL_WINDOWS windows).
    span = window * (LEVEL_WINDOWS if k in boundaries else 1)
    before = [v for values in log_medians[max(low_edge, k - span):k] for v in values]
    after = [v for values in log_medians[k:min(high_edge, k + span)] for v in values]
    point.update(before=len(before), after=len(after))
    # Both sides stopped short (a cut, a level boundary, an end): a wider window adds nothing.
    clipped = low_edge > k - span and high_edge < k + span
    out.append({**point, **_verdict(before, after, k in boundaries,
                                     per_boundary if k in boundaries else confidence,
                                     threshold, clipped)})
  return out


def _verdict(before, after, boundary, confidence, threshold, clipped):
  """{verdict, reason, ratio, low, high} of a point from the log medians on each side
  (`clipped`: both sides of its window stop short of --window)."""
  if min(len(before), len(after)) < 2:
    return {'verdict': 'undecided', 'reason': (
        f'too few runs ({len(before)} before, {len(after)} after; 2 needed on each side)')}
  estimate, low, high = ab_stats.rank_sum_interval(before, after, confidence)
  if not math.isfinite(low):
    return {'verdict': 'undecided', 'ratio': math.exp(estimate), 'reason': (
        f'{len(before)} runs before and {len(after)} after cannot bound the ratio at '
        f'{confidence:.2%} confidence: record more runs per commit'
        + ('' if clipped else ', or widen --window'))}
  figures = {'ratio': math.exp(estimate), 'low': math.exp(low), 'high': math.exp(high)}
  interval = f'[{figures["low"]:.3f}, {figures["high"]:.3f}]'
  decided = ab_stats.verdict(low, high, threshold)
  if decided is None:
    return {**figures, 'verdict': 'undecided', 'reason': (
        f'interval {interval} crosses the {threshold:.0%} threshold: record more runs, or '
        'bisect it (an interleaved A/B)')}
  if decided != 'same' and not boundary:
    return {**figures, 'verdict': 'undecided', 'reason': (
        f'moved {figures["ratio"]:.3f}x, interval {interval}, but no level starts here: a '
        'drift, or a change spread over commits; bisect it')}
  return {**figures, 'verdict': decided, 'reason': ''}


def _by(rows, key):
  out = {}
  for r in rows:
    out.setdefault(key(r), []).append(r)
  return out


def _peaks(rows):
  """{label: the median of the rows' peaks}, as machine.peak_moves reads them."""
  return {label: median(r[column] for r in rows) for label, column in (
      ('matmul peak', 'matmul_flops_per_s'), ('copy bandwidth', 'copy_bytes_per_s'))}


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
