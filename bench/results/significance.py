"""The report's statistics that must hold at small n: Spearman's p-value, and when a
case's step times are too noisy to compare.

Spearman's p (rho = 0, two-sided) is a permutation test, valid at any n: the share
of the orderings of the times against the proxy whose |rho| is at least the one
observed. Exact over all n! orderings up to EXACT_MAX_CASES cases; beyond, from
PERMUTATIONS random orderings (a fixed seed: a report always gives the same p), so
no p below 1 / (PERMUTATIONS + 1), its resolution. None below MIN_P_CASES cases:
with 4, even a perfect ordering is 2 of 24 (p = 0.083), so no p could say anything.
(A t approximation, scipy's spearmanr p, gave p = 1.4e-24 for a perfect ordering of
5 cases, whose exact p is 2/120 = 0.017.)
"""

import functools
import itertools
import math

import numpy as np

from bench.results import formatting

MIN_P_CASES = 5
EXACT_MAX_CASES = 8  # 8! = 40,320 orderings
PERMUTATIONS = 20_000  # 25 ms a proxy at 60 cases; the report is rewritten after each case
_CHUNK = 10_000  # random orderings drawn, and applied, at once (memory: _CHUNK x n floats)
# Two orderings' rank sums compared with this relative slack, so that an ordering as
# extreme as the observed one counts despite rounding.
_TIE = 1e-9


def spearman(x, y):
  """(rho, two-sided p of rho = 0 by permutation) of `x` and `y`; rho None where either
  is constant, p None there and below MIN_P_CASES."""
  from scipy import stats  # pylint: disable=import-outside-toplevel  (a second to import)
  rx, ry = stats.rankdata(x), stats.rankdata(y)  # average ranks for ties
  rx, ry = rx - rx.mean(), ry - ry.mean()
  norm = math.sqrt(float(rx @ rx) * float(ry @ ry))
  if not norm:
    return None, None
  observed = float(rx @ ry)
  n = len(rx)
  if n < MIN_P_CASES:
    return observed / norm, None
  threshold = abs(observed) * (1 - _TIE)
  if n <= EXACT_MAX_CASES:
    orderings = ry[_every_ordering(n)]
    return observed / norm, float(np.mean(np.abs(orderings @ rx) >= threshold))
  extreme = sum(int(np.count_nonzero(np.abs(ry[chunk] @ rx) >= threshold))
                for chunk in _random_orderings(n))
  # The observed ordering counts as one of the orderings: a p never 0.
  return observed / norm, (extreme + 1) / (PERMUTATIONS + 1)


@functools.lru_cache(maxsize=None)  # n <= EXACT_MAX_CASES: four arrays, 320 kB at most
def _every_ordering(n):
  """The n! orderings of n positions, as rows of indices: built once per n (40,320 rows
  take 0.1 s to list), where a report asks for them for every proxy at every rewrite."""
  return np.array(list(itertools.permutations(range(n))), dtype=np.int8)


@functools.lru_cache(maxsize=4)  # a run's report has one n at a time (1.2 MB at 60 cases)
def _random_orderings(n):
  """PERMUTATIONS seeded random orderings of n positions (a fixed seed: a report always
  gives the same p), as chunks of rows of indices: drawn once per n, where drawing
  them took most of a call's time. A row shuffles as the same row of values
  would: numpy's permutation depends on the length alone."""
  rng, positions = np.random.default_rng(0), np.arange(n, dtype=np.min_scalar_type(n))
  return tuple(rng.permuted(np.tile(positions, (min(_CHUNK, PERMUTATIONS - start), 1)), axis=1)
               for start in range(0, PERMUTATIONS, _CHUNK))


P_NOTE = (f'p (rho = 0): two-sided permutation test, exact over every ordering of up to '
          f'{EXACT_MAX_CASES} cases, else from {PERMUTATIONS:,} random orderings (no p below '
          f'{1 / (PERMUTATIONS + 1):.0e}); none below {MIN_P_CASES} cases, where no ordering can '
          'reach p < 0.05.')


# ------------------------------------------------------------------------ noise

# The smallest difference between two medians a reader of a report compares at: 10%
# (bench.compare's default --threshold).
COMPARED = 0.10
# The standard error of a sample median is 1 / (2 f(m) sqrt(n)), f(m) the density at the
# median; for normal samples sqrt(pi / 2) sigma / sqrt(n), sigma = IQR / 1.349: so
# 0.929 IQR / sqrt(n).
_MEDIAN_SE_PER_IQR = math.sqrt(math.pi / 2) / (2 * 0.6744897501960817)
_Z95 = 1.959963984540054


def median_halfwidth(step_time):
  """The 95% half-width of a case's median step time, relative to it, from its IQR and
  sample count as if the samples were independent (they are not: load comes in bursts,
  so the truth is wider); None without samples."""
  if not (step_time.get('median') and step_time.get('n')) or step_time.get(
      'iqr_over_median') is None:
    return None
  return _Z95 * _MEDIAN_SE_PER_IQR * step_time['iqr_over_median'] / math.sqrt(step_time['n'])


def noisy(step_time):
  """Whether two medians this noisy cannot tell a COMPARED difference apart: when the 95%
  half-width of their ratio, sqrt(2) x each one's, exceeds it. At 50 samples that is an
  IQR/median above 0.27 (a quiet 2-core CPU gives 0.05 to 0.2 on steps of a millisecond
  and more; a loaded one gave 0.96 and 1.85, and medians of 1167 ms and 581 ms for one
  case)."""
  halfwidth = median_halfwidth(step_time)
  return halfwidth is not None and math.sqrt(2) * halfwidth > COMPARED


def noise_line(name, step_time):
  """One line for the terminal when `name`'s step times are noisy (see noisy), else None."""
  if not noisy(step_time):
    return None
  return (f'{name}: noisy samples (IQR/median {formatting.fmt(step_time["iqr_over_median"])} '
          f'over {step_time["n"]} steps): its median is known to about '
          f'+-{median_halfwidth(step_time):.0%} (95%), the ratio of two such medians to '
          f'+-{math.sqrt(2) * median_halfwidth(step_time):.0%}: too loose to read a '
          f'{COMPARED:.0%} difference; rerun on a quieter machine or with more '
          '--config.timed_steps')


def noise_note(cases):
  """report.md's lines under a table of `cases`: the noisy ones, or none."""
  lines = [f'{c["name"]} (IQR/median {formatting.fmt(c["step_time_s"]["iqr_over_median"])}, '
           f'+-{median_halfwidth(c["step_time_s"]):.0%})'
           for c in cases if noisy(c['step_time_s'])]
  if not lines:
    return []
  return ['', '**Noisy**: ' + ', '.join(lines) + ': each median is known to about that much '
          'either way (95%, from its IQR and step count as if the steps were independent; '
          'bursts of load make it worse), the ratio of two such medians to 1.4 times that: '
          f'too loose to read a {COMPARED:.0%} difference. Rerun on a quieter machine or with '
          'more --config.timed_steps.']


# ------------------------------------------------------------------------ accuracy

def accuracy_interval(accuracy, n):
  """(low, high): the 95% Wilson score interval of an accuracy over `n` examples (an
  exact metric of this split, uncertain as an estimate of the model's accuracy on
  data like it); None without both."""
  if accuracy is None or not n:
    return None
  z2 = _Z95 * _Z95
  centre = (accuracy + z2 / (2 * n)) / (1 + z2 / n)
  half = _Z95 * math.sqrt(accuracy * (1 - accuracy) / n + z2 / (4 * n * n)) / (1 + z2 / n)
  return centre - half, centre + half
