"""Compares two benchmark reports: what changed from BASE to NEW, and does it matter.

Its command line is bench/compare.py (python -m bench.compare BASE.json NEW.json).

Cases are matched by name. Environment differences come first, because they explain
most of the rest. Deterministic figures (parameter counts, XLA cost analyses, the
compiled memory analysis) must be equal: any difference is a change, as is a case
whose status changed (an ok case that failed or diverged shows its error).

Timing compares the step time samples of each case timed in both: the ratio of
the medians new/base and a two-sided Mann-Whitney U test on the raw samples. A
case is a 'regression' when the ratio exceeds 1 + threshold and p < alpha,
'faster' when it is below 1 / (1 + threshold) and p < alpha, else 'noise'.

Two reports are two runs, possibly on two machines, or on one machine doing
other work the second time. Each run records its machine's identity and
measures the device's peaks after its last case (environment.peaks), so the
comparison knows when the machine changed (bench/core/machine.py decides, as it
does for the history): when an identity key differs (machine id, CPU, devices,
jax) or a peak moved beyond its run-to-run noise (machine.PEAK_NOISE), every
timing verdict is 'inconclusive: the machine changed: matmul float32 peak 0.43x'
instead of a regression; a report without a machine id (written before one was
recorded) is of an unknown machine, and its verdicts are inconclusive too. Rerun
both on one machine, or interleaved with bench.ab. The ratio normalised by the peak that
bounds the case (its roofline: FLOPs or bytes) is shown beside the raw one, for
reading: a peak is measured in seconds, after the cases, and moves by its own
noise, so verdicts stay on the raw ratio of an unchanged machine.
Consecutive step times are not independent (clocks, caches and the host drift
together), so p is a screen that flags what to rerun, not a proof. With fewer
than 5 samples in either report nothing can be significant at small alpha: such
a case is noise, marked "too few samples".

Cases profiled in both reports (config `profile`) also get "Where the time
went": each op category's time per profiled step in both, and the layers whose
time moved most. One profile a side: it says which layer to look at, and the
timing verdict, which has the samples, says whether the step got slower.

Exit status: 0 without changes, missing cases or regressions; 1 with any
(--timing=advisory still prints regressions, but only changes and missing cases
give 1: for noisy shared machines); new cases are listed and never fail;
2, with one line on stderr, for a bad flag or a report bench.results.schema.read rejects
(unreadable, not JSON, not a report, another schema version).
"""

import collections

import numpy as np

from bench.core import machine as machine_lib
from bench.results import analysis
from bench.results import formatting
from bench.results import schema as report_lib

MIN_SAMPLES = 5
_ENVIRONMENT_KEYS = ('python', 'backend', 'device_kind', 'device_count', 'process_count',
                     'machine_id', 'cpu_model', 'cpu_signature', 'cpu_count', 'memory_bytes',
                     'xla_flags')

Difference = collections.namedtuple('Difference', 'key base new')
Peak = collections.namedtuple('Peak', 'key base new ratio')
Change = collections.namedtuple('Change', 'case figure base new')
Timing = collections.namedtuple(
    'Timing', 'case base_median new_median ratio normalised bound p n_base n_new verdict note')
# A category's or a layer's time per profiled step (kind 'category' or 'layer').
ProfileChange = collections.namedtuple('ProfileChange', 'case kind name base new ratio')
# Layers listed per case in a profile comparison, the biggest moves first (every
# category is listed).
PROFILE_LAYERS = 8


def _environment(base, new):
  """Differences in _ENVIRONMENT_KEYS and in each package's version."""
  pairs = [(key, base.get(key), new.get(key)) for key in _ENVIRONMENT_KEYS]
  versions = base.get('versions') or {}, new.get('versions') or {}
  pairs[1:1] = [(f'versions.{name}', versions[0].get(name), versions[1].get(name))
                for name in dict.fromkeys([*versions[0], *versions[1]])]
  return [Difference(*pair) for pair in pairs if pair[1] != pair[2]]


def _peaks(base, new):
  """Each measured peak in both reports; null in a report whose run did not finish."""
  base, new = base or {}, new or {}
  matmul = base.get('matmul_flops_per_s') or {}, new.get('matmul_flops_per_s') or {}
  pairs = [(f'peaks.matmul_flops_per_s.{dtype}', matmul[0].get(dtype), matmul[1].get(dtype))
           for dtype in dict.fromkeys([*matmul[0], *matmul[1]])]
  pairs.append(('peaks.copy_bytes_per_s', base.get('copy_bytes_per_s'),
                new.get('copy_bytes_per_s')))
  return [Peak(key, a, b, b / a if a and b is not None else None) for key, a, b in pairs]


def _status(case):
  error = (case['error'] or '').splitlines()
  return case['status'] + (f': {error[0]}' if case['status'] != 'ok' and error else '')


def _changes(base, new):
  if base['status'] != new['status']:
    # A failed case's figures are null: its status is the one change worth listing.
    return [Change(base['name'], 'status', _status(base), _status(new))]
  return [Change(base['name'], f'{block}.{key}', base[block][key], new[block][key])
          for block, keys in report_lib.DETERMINISTIC.items() for key in keys
          if base[block][key] != new[block][key]]


def _normaliser(case, base_peaks, new_peaks):
  """(new/base ratio of the peak that bounds `case` on its roofline, 'compute' or
  'memory'), or (None, None) without peaks or costs."""
  row = {'flops': case['xla']['flops'], 'bytes': case['xla']['bytes_accessed'],
         'dtype': case['config'].get('dtype', 'float32')}
  _, bound = analysis.case_roofline(row, base_peaks or {})
  if bound is None or not new_peaks:
    return None, None
  if bound == 'compute':
    ratio = (new_peaks['matmul_flops_per_s'] or {}).get(row['dtype'])
    ratio = ratio and ratio / base_peaks['matmul_flops_per_s'][row['dtype']]
  else:
    ratio = new_peaks['copy_bytes_per_s'] / base_peaks['copy_bytes_per_s']
  return (ratio, bound) if ratio else (None, None)


def _timing(name, base, new, threshold, alpha, peaks=(None, None), machine=''):
  a, b = base['step_time_s']['samples'], new['step_time_s']['samples']
  if not a or not b:
    return None
  base_median, new_median = float(np.median(a)), float(np.median(b))
  ratio = new_median / base_median
  # A machine with peaks x times the base's does the same work in 1/x the time.
  scale, bound = _normaliser(base, *peaks)
  normalised = ratio * scale if scale else None
  figures = (name, base_median, new_median, ratio, normalised, bound)
  if min(len(a), len(b)) < MIN_SAMPLES:
    return Timing(*figures, None, len(a), len(b), 'noise', 'too few samples')
  from scipy import stats  # pylint: disable=import-outside-toplevel  (a second to import)
  p = float(stats.mannwhitneyu(a, b, alternative='two-sided').pvalue)
  if machine:
    return Timing(*figures, p, len(a), len(b), 'inconclusive', machine)
  verdict = 'noise'
  if p < alpha and ratio > 1 + threshold:
    verdict = 'regression'
  elif p < alpha and ratio < 1 / (1 + threshold):
    verdict = 'faster'
  return Timing(*figures, p, len(a), len(b), verdict, '')


def profile_times(case):
  """{(kind, name): seconds per step} of a profiled case's categories and layers; {}
  for a case that was not profiled."""
  p = case.get('profile')  # absent from a report of an older schema (bench.ab reads those)
  if not p or not p['steps']:
    return {}
  times = {('category', row['category']): row['time_s'] for row in p['categories']}
  times.update({('layer', row['layer']): row['time_s'] for row in p['layers']})
  return times


def profile_changes(name, base, new):
  """ProfileChanges of case `name` from its profile_times in BASE and NEW runs (one
  each for two reports, one per round for an A/B): the median over the runs of
  each category, then of the PROFILE_LAYERS layers that moved most. A category or
  layer absent from a run took no time there."""
  keys = dict.fromkeys(key for times in base + new for key in times)
  rows = []
  for kind, label in keys:
    b = float(np.median([times.get((kind, label), 0.0) for times in base]))
    n = float(np.median([times.get((kind, label), 0.0) for times in new]))
    rows.append(ProfileChange(name, kind, label, b, n, n / b if b else None))
  moved = sorted((r for r in rows if r.kind == 'layer'), key=lambda r: -abs(r.new - r.base))
  categories = sorted((r for r in rows if r.kind == 'category'), key=lambda r: -r.base)
  return categories + moved[:PROFILE_LAYERS]


def profile_table(changes):
  """(columns, rows) of ProfileChanges, for both formats."""
  return (('case', 'category or layer', 'base ms', 'new ms', 'new/base'), [
      [c.case, c.name if c.kind == 'category' else f'layer {c.name}',
       formatting.fmt(c.base, 1e3), formatting.fmt(c.new, 1e3), _ratio(c.ratio)]
      for c in changes])


def compare(base, new, threshold=0.1, alpha=0.01):
  """The comparison of two loaded reports, as a dict of plain values and namedtuples."""
  base_cases = {case['name']: case for case in base['cases']}
  new_cases = {case['name']: case for case in new['cases']}
  matched = [name for name in base_cases if name in new_cases]
  environment = _environment(base['environment'], new['environment'])
  peak_pair = base['environment']['peaks'], new['environment']['peaks']
  peaks = _peaks(*peak_pair)
  machine = machine_lib.change(base['environment'], new['environment'])
  timings = (_timing(n, base_cases[n], new_cases[n], threshold, alpha, peak_pair, machine)
             for n in matched)
  return {
      'threshold': threshold, 'alpha': alpha, 'compared': len(matched),
      'context': [(r['environment']['git_commit'], r['environment']['git_dirty'],
                   r['environment']['hostname']) for r in (base, new)],
      'environment': environment, 'peaks': peaks, 'machine': machine,
      'changes': [c for n in matched for c in _changes(base_cases[n], new_cases[n])],
      'timing': [t for t in timings if t],
      'profiles': [c for n in matched
                   if profile_times(base_cases[n]) and profile_times(new_cases[n])
                   for c in profile_changes(n, [profile_times(base_cases[n])],
                                            [profile_times(new_cases[n])])],
      'missing': [name for name in base_cases if name not in new_cases],
      'new': [name for name in new_cases if name not in base_cases],
  }


def exit_status(result, timing_gates=True):
  """1 for a deterministic change, a case missing from NEW (a run that lost a case, or
  was cut short), or a timing regression when timing gates; else 0."""
  regressed = any(t.verdict == 'regression' for t in result['timing'])
  return int(bool(result['changes'] or result['missing']) or (timing_gates and regressed))


# ------------------------------------------------------------------ rendering

def _value(value):
  return 'null' if value is None else str(value)


def _figure(value):
  return 'null' if value is None else f'{value:.3g}'


def _ratio(value):
  return 'n/a' if value is None else f'{value:.3f}'


def _plural(count, noun):
  return f'{count} {noun}{"" if count == 1 else "s"}'


def _summary(result):
  """(the headline counts, the rest): md sets the first in bold."""
  verdicts = collections.Counter(t.verdict for t in result['timing'])
  rest = [f'{result["compared"]} cases compared', f'{verdicts["noise"]} noise']
  rest += [f'{verdicts[v]} {v}' for v in ('faster', 'inconclusive') if verdicts[v]]
  rest += [f'{len(result[key])} {key}' for key in ('missing', 'new') if result[key]]
  return (f'{_plural(verdicts["regression"], "regression")}, '
          f'{_plural(len(result["changes"]), "deterministic change")}', ', ' + ', '.join(rest))


def _environment_blocks(result):
  context = '; '.join(
      f'{which}: commit {commit[:10] if commit else "no git"}{" (dirty)" if dirty else ""} on '
      f'{host}' for which, (commit, dirty, host) in zip(('base', 'new'), result['context']))
  differences = (('key', 'base', 'new'), [[d.key, _value(d.base), _value(d.new)]
                                          for d in result['environment']])
  peaks = (('peak', 'base', 'new', 'new/base'), [
      [p.key, _figure(p.base), _figure(p.new), _ratio(p.ratio)] for p in result['peaks']])
  machine = (f'{result["machine"][0].upper()}{result["machine"][1:]}. Timing verdicts are '
             'inconclusive.' if result['machine'] else
             f'The machine is the same within the peaks\' noise ({machine_lib.PEAK_NOISE:.0%}).')
  return [context, differences if result['environment'] else 'Differences: none.',
          'Measured peaks (each run\'s, after its last case):', peaks, machine]


def _timing_blocks(result):
  threshold, alpha = result['threshold'], result['alpha']
  note = (f'new/base: ratio of median step times; normalised: times the new/base ratio of '
          f'the peak that bounds the case on its roofline (for reading: verdicts use the raw '
          f'ratio); p: two-sided Mann-Whitney U test on the samples, a screen (consecutive '
          f'steps are not independent). Regression: new/base > {1 + threshold:.3f} and p < '
          f'{alpha:g}; faster: new/base < {1 / (1 + threshold):.3f} and p < {alpha:g}; '
          f'inconclusive: the machine changed; anything else is noise.')
  if not result['timing']:
    return [note, 'No case has step time samples in both reports.']
  return [note, (('case', 'base ms', 'new ms', 'new/base', 'normalised', 'p', 'n base/new',
                   'verdict'), [
      [t.case, formatting.fmt(t.base_median, 1e3), formatting.fmt(t.new_median, 1e3),
       _ratio(t.ratio), f'{_ratio(t.normalised)} ({t.bound})' if t.bound else 'n/a',
       'n/a' if t.p is None else f'{t.p:.2g}', f'{t.n_base}/{t.n_new}',
       f'{t.verdict} ({t.note})' if t.note else t.verdict] for t in result['timing']])]


def _sections(result):
  """[(title, blocks)], a block being a line or a table (columns, rows of str): what
  both formats lay out."""
  changes = (('case', 'figure', 'base', 'new'), [
      [c.case, c.figure, _value(c.base), _value(c.new)] for c in result['changes']])
  cases = [f'{label}: {", ".join(result[key]) or "none"}'
           for key, label in (('missing', 'Missing (only in BASE)'), ('new', 'New (only in NEW)'))]
  sections = [('Environment', _environment_blocks(result)),
              ('Deterministic changes', [changes if result['changes'] else 'None.']),
              ('Timing', _timing_blocks(result))]
  if result['profiles']:
    sections.append(('Where the time went', [
        'Cases profiled in both runs: time per profiled step of each op category (idle: '
        f'no op running), then the {PROFILE_LAYERS} layers that moved most. One profile per '
        'run: read it beside the timing verdict, which has the samples.',
        profile_table(result['profiles'])]))
  return sections + [('Missing/new cases', cases)]


def _markdown_table(columns, rows):
  # A '|' inside a cell would end it.
  return formatting.table(columns, [[cell.replace('|', '\\|') for cell in row] for row in rows])


def _aligned(columns, rows):
  cells = [list(columns)] + rows
  widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
  lines = ['  '.join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip()
           for row in cells]
  return lines[:1] + ['  '.join('-' * width for width in widths)] + lines[1:]


def render(result, fmt='md'):
  """The comparison as 'md' (a pull-request comment) or 'text' (aligned columns)."""
  bold, rest = _summary(result)
  lines, heading, table = {
      'md': (['## Benchmark comparison', '', f'**{bold}**{rest}'], '### {}'.format,
             _markdown_table),
      'text': ([f'Benchmark comparison: {bold}{rest}'], str.upper, _aligned)}[fmt]
  for title, blocks in _sections(result):
    lines += ['', heading(title)]
    for block in blocks:
      lines += [''] + ([block] if isinstance(block, str) else table(*block))
  return '\n'.join(lines) + '\n'
