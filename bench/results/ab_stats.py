"""The A/B's statistics: a case's ratio new/base over paired rounds, its interval, its
verdict against a threshold, the order of the sides in each round, and when to look.

Why the round is the unit, why Hodges-Lehmann with an exact signed-rank interval,
why ABBA/BAAB pairs and Bonferroni over the looks: the docstring of bench/ab.py,
the command line. bench/run/ab.py runs the rounds.
"""

import functools
import math
import random
import statistics

import numpy as np

SIDES = ('base', 'new')


def signed_rank_interval(values, confidence):
  """(Hodges-Lehmann estimate, low, high) of the centre of `values`: the median of
  their Walsh averages (the means of every pair, each value with itself included),
  and the exact Wilcoxon signed-rank interval at `confidence` (at least; the
  distribution is discrete). Too few values for any bound give (estimate, -inf, inf).
  """
  values = np.asarray(values, dtype=float)
  n = len(values)
  pairs = np.triu_indices(n)
  walsh = np.sort((values[pairs[0]] + values[pairs[1]]) / 2)
  # counts[s]: subsets of the ranks 1..n summing to s, the null distribution of the
  # signed-rank statistic (each rank's sign a fair coin) times 2^n.
  counts = np.zeros(len(walsh) + 1)
  counts[0] = 1
  for rank in range(1, n + 1):
    counts[rank:] = counts[rank:] + counts[:-rank]
  cdf = np.cumsum(counts) / 2.0**n
  # k: how many statistic values lie in the lower tail of mass <= alpha/2; the
  # interval leaves k Walsh averages out on each side.
  k = int(np.searchsorted(cdf, (1 - confidence) / 2, side='right'))
  if k == 0:
    return _middle(walsh), -math.inf, math.inf
  return _middle(walsh), float(walsh[k - 1]), float(walsh[len(walsh) - k])


def _middle(ordered):
  """The median of sorted values (np.median sorts them again: a third of `history
  changes`' judging at 10,000 runs)."""
  n = len(ordered)
  return float((ordered[(n - 1) // 2] + ordered[n // 2]) / 2)


# Beyond this many pairs (m * n) the exact distribution costs seconds and then overflows
# (300 runs a side: 1.8 s): its normal approximation serves.
_EXACT_PAIRS = 2500


def _rank_sum_counts(m, n):
  """counts[u]: the orderings of m values against n, all equally likely under the null,
  in which u of the m * n pairs (x, y) have x > y: the Mann-Whitney U distribution
  times C(m + n, m)."""
  # table[j][u]: i x's against j y's. The largest of the i + j values is an x (above
  # all j y's: U grows by j, the rest is i - 1 x's against j y's) or a y (the rest is
  # i x's against j - 1 y's).
  table = [np.array([1.0]) for _ in range(n + 1)]
  for i in range(1, m + 1):
    row = [np.array([1.0])]
    for j in range(1, n + 1):
      size = i * j + 1
      counts = np.zeros(size)
      counts[j:j + len(table[j])] += table[j]
      counts[:len(row[j - 1])] += row[j - 1]
      row.append(counts)
    table = row
  return table[n]


@functools.lru_cache(maxsize=None)
def _rank_sum_cdf(m, n):
  """The cumulative Mann-Whitney U distribution of m values against n: computed once
  per (m, n), which a history asks for at every point (7.1 of 8.9 s of `changes` at
  9,600 runs before it was kept)."""
  cdf = np.cumsum(_rank_sum_counts(m, n))
  return cdf / cdf[-1]


def rank_sum_interval(before, after, confidence):
  """(Hodges-Lehmann estimate, low, high) of the shift from `before` to `after`, two
  unpaired samples: the median of every difference after - before, and the exact
  Mann-Whitney interval at `confidence` (at least). The unpaired companion of
  signed_rank_interval, for runs that were not interleaved in rounds (a history).
  Too few values for any bound give (estimate, -inf, inf)."""
  before, after = np.asarray(before, float), np.asarray(after, float)
  differences = np.sort((after[None, :] - before[:, None]).ravel())
  estimate = _middle(differences)
  m, n = len(before), len(after)
  if m * n <= _EXACT_PAIRS:
    k = int(np.searchsorted(_rank_sum_cdf(m, n), (1 - confidence) / 2, side='right'))
  else:  # U's normal approximation, with its continuity correction
    spread = math.sqrt(m * n * (m + n + 1) / 12)
    z = statistics.NormalDist().inv_cdf(1 - (1 - confidence) / 2)
    k = max(int(math.floor(m * n / 2 - z * spread + 0.5)), 0)
  if k == 0:
    return estimate, -math.inf, math.inf
  return estimate, float(differences[k - 1]), float(differences[len(differences) - k])


def verdict(low, high, threshold):
  """'regression', 'faster' or 'same' for a log-ratio interval [low, high] against a
  relative `threshold`; None while it crosses a bound (undecided)."""
  bound = math.log1p(threshold)
  if low > bound:
    return 'regression'
  if high < -bound:
    return 'faster'
  if -bound <= low and high <= bound:
    return 'same'
  return None


def judge(base_times, new_times, threshold, confidence, final):
  """The A/B of one case: base_times and new_times are its median step time per
  round (paired by round). Returns a dict of ratio, ci_low, ci_high and verdict
  (None while undecided and not `final`; 'inconclusive' when `final`)."""
  log_ratios = np.log(np.asarray(new_times, float) / np.asarray(base_times, float))
  estimate, low, high = signed_rank_interval(log_ratios, confidence)
  decided = verdict(low, high, threshold)
  return {'ratio': math.exp(estimate),
          'ci_low': math.exp(low) if math.isfinite(low) else None,
          'ci_high': math.exp(high) if math.isfinite(high) else None,
          'verdict': decided or ('inconclusive' if final else None)}


def orders(seed, rounds):
  """The order of the sides in each of `rounds` rounds drawn with `seed`: rounds come
  in pairs, the second the first reversed (ABBA or BAAB, drawn per pair), so each
  side runs first equally often and an effect of running second (a warmer or
  colder machine) cancels within a pair instead of tilting a run that drew one
  order more often."""
  rng = random.Random(seed)
  out = []
  for index in range(rounds):
    if index % 2:
      out.append(out[-1][::-1])
    else:
      out.append(list(SIDES))
      rng.shuffle(out[-1])
  return out


def looks(args):
  """The round counts after which the verdicts are looked at: args.rounds, then
  every args.look_every rounds, and args.max_rounds."""
  return sorted({*range(args.rounds, args.max_rounds + 1, args.look_every), args.max_rounds})


def look_confidence(args):
  """Each look's confidence: args.confidence for all of them together (Bonferroni)."""
  return 1 - (1 - args.confidence) / len(looks(args))


def stop_reason(rounds, undecided, elapsed_s, args):
  """Why the A/B stops after `rounds` rounds that took `elapsed_s`, with the cases
  `undecided` (None when `rounds` is not a look); None to go on."""
  if rounds in looks(args) and not undecided:
    return 'every case decided'
  if rounds >= args.max_rounds:
    return f'--max_rounds={args.max_rounds}'
  if elapsed_s * (rounds + 1) / rounds > args.max_minutes * 60:
    return f'--max_minutes={args.max_minutes:g} (another round would pass it)'
  return None
