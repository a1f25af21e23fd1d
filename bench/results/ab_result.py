"""An A/B's record: its rounds, each case's verdict, ab.json, ab.md and ab.png.

`AB` gathers the reports of the rounds bench/run/ab.py runs (one per side and
round) and makes the result: each case's figures and verdict (bench/results/
ab_stats.py), the deterministic diff of the first reports of the two sides and
the profiled cases' per-category and per-layer changes (bench/results/compare.py).
`SCHEMA_VERSION` is ab.json's; docs/measurement.md (Timing A/B) documents its keys.
"""

import json
import os
import time

import numpy as np

from bench.core.fileio import atomic_write_text
from bench.results import compare
from bench.results import formatting
from bench.results import schema as report_lib
from bench.results.ab_stats import SIDES, judge, look_confidence, looks, orders

SCHEMA_VERSION = 3
AB_JSON, AB_MD = 'ab.json', 'ab.md'


def medians(report):
  """{case: median step time} of the cases that have one."""
  return {c['name']: c['step_time_s']['median'] for c in report['cases']
          if c['status'] == 'ok' and c['step_time_s']['median']}


def matmul_peak(report):
  peaks = report['environment']['peaks'] or {}
  return (peaks.get('matmul_flops_per_s') or {}).get('float32')


class AB:
  """The state of an A/B: the rounds run so far and what they show."""

  def __init__(self, args, commits, config, overrides, seed):
    self.args, self.commits, self.config, self.overrides = args, commits, config, overrides
    self.seed, self.orders = seed, orders(seed, args.max_rounds)
    self.rounds, self.times = [], {side: {} for side in SIDES}
    self.first = {}  # side -> its first report, for the deterministic diff
    # side -> case -> [compare.profile_times of each round] of the profiled cases
    self.profiles = {side: {} for side in SIDES}
    self.started = time.time()
    self.stopped = None

  def next_round(self):
    """(the next round's number, the order its sides run in)."""
    return len(self.rounds) + 1, self.orders[len(self.rounds)]

  def add_round(self, outcomes):
    """Records the next round from `outcomes`: {side: (its report, wall seconds)} in
    the order they ran."""
    index, order = self.next_round()
    record = {'round': index, 'order': order, 'seconds': {}, 'matmul_peak': {}}
    for side in order:
      report, record['seconds'][side] = outcomes[side]
      self.first.setdefault(side, report)
      record['matmul_peak'][side] = matmul_peak(report)
      for name, median in medians(report).items():
        self.times[side].setdefault(name, {})[index] = median
      for case in report['cases']:
        if times := compare.profile_times(case):
          self.profiles[side].setdefault(case['name'], []).append(times)
    self.rounds.append(record)

  def cases(self, final):
    """Per case timed in both sides in every round so far: its verdict and figures."""
    rounds = [r['round'] for r in self.rounds]
    out = []
    for name, base in self.times['base'].items():
      new = self.times['new'].get(name, {})
      if any(r not in base or r not in new for r in rounds):
        continue
      a, b = [base[r] for r in rounds], [new[r] for r in rounds]
      out.append({'name': name, **judge(a, b, self.args.threshold,
                                        look_confidence(self.args), final),
                  'base_median_s': float(np.median(a)), 'new_median_s': float(np.median(b)),
                  'round_ratios': [y / x for x, y in zip(a, b)],
                  'base_s': a, 'new_s': b})
    return out

  def result(self, final):
    diff, note = None, None
    if len(self.first) == 2:
      schemas = [self.first[side]['schema_version'] for side in SIDES]
      if all(schema in report_lib.READS for schema in schemas):
        diff = compare.compare(self.first['base'], self.first['new'])
      else:
        note = (f'not compared: the base revision writes report schema {schemas[0]}, the '
                f'new one schema {schemas[1]}')
    names = {side: [c['name'] for c in self.first.get(side, {}).get('cases', ())]
             for side in SIDES}
    return {
        'schema_version': SCHEMA_VERSION,
        'status': 'complete' if final else 'incomplete',
        'base': {'rev': self.args.base, 'commit': self.commits['base']},
        'new': {'rev': self.args.new, 'commit': self.commits['new']},
        'config': self.config, 'overrides': self.overrides,
        # The machine, as the new side's first report saw it (its hardware keys and peaks).
        'machine': self.first['new']['environment'] if 'new' in self.first else None,
        'threshold': self.args.threshold, 'confidence': self.args.confidence,
        'looks': looks(self.args), 'look_confidence': look_confidence(self.args),
        'seed': self.seed, 'stopped': self.stopped,
        'minutes': (time.time() - self.started) / 60,
        'rounds': self.rounds,
        'cases': self.cases(final) if len(self.rounds) else [],
        'changes': [c._asdict() for c in diff['changes']] if diff else [],
        'deterministic_note': note,
        'missing': [n for n in names['base'] if n not in names['new']],
        'new_cases': [n for n in names['new'] if n not in names['base']],
        'environment': [d._asdict() for d in diff['environment']] if diff else [],
        'profiles': [c._asdict() for name, base in self.profiles['base'].items()
                     if name in self.profiles['new']
                     for c in compare.profile_changes(name, base, self.profiles['new'][name])],
    }


def exit_status(result, changes_gate=True):
  regressed = any(c['verdict'] == 'regression' for c in result['cases'])
  changed = bool(result['changes'] or result['missing'])
  return int(regressed or (changes_gate and changed))


def _interval(case):
  low, high = case['ci_low'], case['ci_high']
  return 'unbounded' if low is None else f'{low:.3f}-{high:.3f}'


def _machine_line(rounds):
  """' The machine: ...' from each process's float32 matmul peak, so a reader sees
  how much the machine itself moved during the run ('' without peaks)."""
  peaks = [p for r in rounds for p in r['matmul_peak'].values() if p]
  if not peaks:
    return ''
  return (f' The machine: float32 matmul peak per process {min(peaks) * 1e-9:.3g}-'
          f'{max(peaks) * 1e-9:.3g} GFLOP/s (median {np.median(peaks) * 1e-9:.3g}).')


def markdown(result):
  """ab.md: the verdicts, how they were reached, and the deterministic diff."""
  counts = {v: sum(c['verdict'] == v for c in result['cases'])
            for v in ('regression', 'faster', 'same', 'inconclusive')}
  headline = ', '.join(f'{n} {v}' for v, n in counts.items() if n or v == 'regression')
  base, new = result['base'], result['new']
  lines = [f'## Timing A/B: {headline}; {len(result["changes"])} deterministic changes', '',
           f'base `{base["rev"]}` ({base["commit"][:10]}) vs new `{new["rev"]}` '
           f'({new["commit"][:10]}), `{result["config"]}`'
           + (f' {" ".join(result["overrides"])}' if result['overrides'] else '') + '.',
           f'{len(result["rounds"])} rounds in {result["minutes"]:.1f} min (stopped: '
           f'{result["stopped"]}), each side in a fresh process per round, order drawn with '
           f'seed {result["seed"]}.{_machine_line(result["rounds"])}', '',
           f'new/base: Hodges-Lehmann estimate of the ratio of median step times over '
           f'rounds; interval: exact Wilcoxon signed-rank at {result["look_confidence"]:.2%} '
           f'per look (looks after {", ".join(map(str, result["looks"]))} rounds: '
           f'{result["confidence"]:.0%} for all together). '
           f'Regression: the whole interval above {1 + result["threshold"]:.3f}; faster: all '
           f'below {1 / (1 + result["threshold"]):.3f}; same: all within; otherwise '
           f'inconclusive.', '']
  lines += formatting.table(
      ('case', 'base ms', 'new ms', 'new/base', 'interval', 'rounds: min-max', 'verdict'),
      [[c['name'], formatting.fmt(c['base_median_s'], 1e3),
        formatting.fmt(c['new_median_s'], 1e3), f'{c["ratio"]:.3f}', _interval(c),
        f'{min(c["round_ratios"]):.3f}-{max(c["round_ratios"]):.3f}', f'**{c["verdict"]}**'
        if c['verdict'] == 'regression' else c['verdict']] for c in result['cases']])
  lines += ['', '### Deterministic changes', '']
  lines += formatting.table(('case', 'figure', 'base', 'new'), [
      [c['case'], c['figure'], str(c['base']), str(c['new'])] for c in result['changes']]
  ) if result['changes'] else [f'{result["deterministic_note"] or "None"}.']
  if result['profiles']:
    lines += ['', '### Where the time went', '',
              'Profiled cases: median over the rounds of the time per profiled step of each '
              f'op category (idle: no op running), then the {compare.PROFILE_LAYERS} layers '
              'that moved most.', '']
    lines += formatting.table(*compare.profile_table(
        [compare.ProfileChange(**c) for c in result['profiles']]))
  for key, label in (('missing', 'Missing in new'), ('new_cases', 'New cases')):
    if result[key]:
      lines += ['', f'{label}: {", ".join(result[key])}']
  if result['environment']:
    lines += ['', 'Environment differences: ' + '; '.join(
        f'{d["key"]} {d["base"]} -> {d["new"]}' for d in result['environment'])]
  return '\n'.join(lines) + '\n'


def write(workdir, result):
  """ab.md, then ab.json last (each atomic); ab.png when complete."""
  atomic_write_text(os.path.join(workdir, AB_MD), markdown(result))
  atomic_write_text(os.path.join(workdir, AB_JSON),
                    json.dumps(result, indent=1, allow_nan=False) + '\n')
  if result['status'] == 'complete' and result['cases']:
    from bench.results import plots  # pylint: disable=import-outside-toplevel  (matplotlib)
    plots.ab_rounds(workdir, result)
