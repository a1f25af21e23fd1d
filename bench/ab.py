"""Timing A/B of two revisions on one machine: is NEW slower than BASE?

  python -m bench.ab --base=REV [--new=REV] --config=configs/X.py --workdir=D \\
      [--rounds=8] [--look_every=4] [--max_rounds=20] [--max_minutes=30] \\
      [--threshold=10%] [--confidence=0.95] [--seed=N] [--changes=gate|advisory] [--config.FIELD=V ...]

Two reports from two runs of a shared machine differ by whatever else the
machine was doing (bench.compare calls that out when it can). This tool takes
the machine out of the comparison instead:

  * Each revision is checked out into a git worktree of its own under
    D/worktrees/ (the user's tree is not touched; removed at the end), and runs
    with this Python and its installed packages: only the repository's code
    differs between the sides.
  * A round runs the config once per side, each in a fresh `python -m
    bench.main` process. Rounds come in pairs, ABBA or BAAB, drawn per pair
    (the seed is recorded): each side runs first as often as second, and a
    neighbour's job that starts mid-round favours neither side on average.
  * A case's value in one process is its median step time. Steps within a
    process are not independent samples (they share the process's memory
    layout, clocks and neighbours), so the unit of evidence is the round: one
    log ratio log(new / base) per case and round, with both processes of the
    round seeing much the same machine.
  * The ratio is the Hodges-Lehmann estimate over rounds (the median of the
    pairwise means of the log ratios), and its interval the exact Wilcoxon
    signed-rank confidence interval: distribution-free, and one round spoiled
    by a burst of load moves neither much.
  * Verdict, against --threshold t: `regression` when the whole interval is
    above 1 + t, `faster` when it is all below 1 / (1 + t), `same` when it lies
    within both. An interval across either bound is undecided: more rounds run,
    up to --max_rounds or --max_minutes, and a case still undecided then is
    `inconclusive`, never a guess.
  * The verdicts are looked at after --rounds rounds, then every --look_every
    rounds up to --max_rounds (8, 12, 16, 20). Looking again and again until an
    interval clears a bound would find one by chance (at 95% per look, an A/A
    with noisy processes was called a regression or faster in 0.5-2% of
    simulated runs), so each look's interval is at confidence 1 - (1 -
    --confidence) / looks: the chance that any look misses the true ratio is at
    most 1 - --confidence (Bonferroni, whatever the looks' correlation).
  * Deterministic figures (parameter counts, XLA FLOPs and bytes, compiled
    memory) and case statuses are diffed exactly as bench.compare does.
  * Cases profiled on both sides (`--config.profile=True`): the median over the
    rounds of each op category's and layer's time per profiled step, which says
    where a regression sits.

Writes D/ab.json (after every round; `status` is `complete` at the end, schema in
WORKSPACE.md), D/ab.md (a pull-request comment) and D/ab.png (every round's ratio
per case). Each side's report of round R is kept as D/runs/R-SIDE.json, its log
as D/logs/R-SIDE.log.

Exit status: 0 when every case is same, faster or inconclusive; 1 for any
regression, a deterministic change or a missing case (`--changes=advisory`:
only a regression), or a side whose run failed; 2, with one line on stderr, for
a user error (unknown revision, a config missing at a revision, a worktree in
the way, a config problem either side reports).
"""

import contextlib
import json
import math
import os
import random
import shutil
import subprocess
import sys
import time

import numpy as np

from bench import compare
from bench import report as report_lib
from bench.errors import ArgumentParser, UserError, fail
from bench.fileio import atomic_write_text

SIDES = ('base', 'new')
SCHEMA_VERSION = 2
AB_JSON, AB_MD = 'ab.json', 'ab.md'
# The compilation cache the sides share: a round after the first reads its programs
# back instead of compiling them (compilation is not what is timed), and both sides
# of an unchanged case run the same executable.
_CACHE_ENV = {'JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS': '0',
              'JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES': '0'}


# ----------------------------------------------------------------------- statistics

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
    return float(np.median(walsh)), -math.inf, math.inf
  return float(np.median(walsh)), float(walsh[k - 1]), float(walsh[len(walsh) - k])


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


# ------------------------------------------------------------------------- git

def _git(repo, *args):
  return subprocess.run(['git', '-C', repo, *args], capture_output=True, text=True,
                        check=False)


def repository(path='.'):
  """The top of the git checkout holding `path`."""
  result = _git(path, 'rev-parse', '--show-toplevel')
  if result.returncode:
    raise UserError(f'{os.path.abspath(path)} is not in a git checkout: bench.ab compares '
                    'revisions, so run it inside a clone of the repository')
  return result.stdout.strip()


def resolve(repo, rev):
  """The full commit hash `rev` names in `repo`."""
  result = _git(repo, 'rev-parse', '--verify', '--quiet', f'{rev}^{{commit}}')
  if result.returncode or not rev:
    raise UserError(f'unknown revision {rev!r}: give a commit, branch or tag of {repo} '
                    '(git log --oneline lists them)')
  return result.stdout.strip()


def _check_config(repo, commit, rev, config):
  if _git(repo, 'cat-file', '-e', f'{commit}:{config}').returncode:
    raise UserError(f'{config} does not exist at {rev} ({commit[:10]}); choose a config '
                    'both revisions have')


def add_worktree(repo, path, commit):
  """A detached checkout of `commit` at `path`. A worktree left there by an earlier
  run is replaced, unless it holds uncommitted changes (someone's work)."""
  if os.path.lexists(path):
    listed = _git(repo, 'worktree', 'list', '--porcelain').stdout.splitlines()
    if f'worktree {os.path.realpath(path)}' not in listed:
      raise UserError(f'{path} exists and is not a worktree of {repo}; remove it or choose '
                      'another --workdir')
    if _git(path, 'status', '--porcelain').stdout.strip():
      raise UserError(f'{path} is a worktree with uncommitted changes; commit or discard '
                      'them (or remove it), or choose another --workdir')
    remove_worktree(repo, path)
  _git(repo, 'worktree', 'prune')
  result = _git(repo, 'worktree', 'add', '--detach', path, commit)
  if result.returncode:
    raise RuntimeError(f'git worktree add {path} {commit} failed: {result.stderr.strip()}')


def remove_worktree(repo, path):
  _git(repo, 'worktree', 'remove', '--force', path)
  shutil.rmtree(path, ignore_errors=True)
  with contextlib.suppress(OSError):  # worktrees/, once empty
    os.rmdir(os.path.dirname(path))


# ------------------------------------------------------------------------- rounds

class SideFailed(Exception):
  """A side's benchmark process failed: `status` is its exit status."""

  def __init__(self, message, status):
    super().__init__(message)
    self.status = status


def run_side(side, round_index, worktree, config, overrides, workdir):
  """Runs the config once in a fresh process of `worktree`'s code; returns (report,
  wall seconds). Its report is kept as D/runs/R-SIDE.json, its output as
  D/logs/R-SIDE.log; the rest of the run's workdir is deleted."""
  stem = f'{round_index:03d}-{side}'
  run_dir = os.path.join(workdir, 'runs', stem)
  log_path = os.path.join(workdir, 'logs', f'{stem}.log')
  env = dict(os.environ, **_CACHE_ENV,
             JAX_COMPILATION_CACHE_DIR=os.path.join(workdir, 'compile_cache'),
             PYTHONPATH=os.pathsep.join(p for p in (worktree, os.environ.get('PYTHONPATH'))
                                        if p))
  command = [sys.executable, '-m', 'bench.main', f'--config={config}', f'--workdir={run_dir}',
             '--restart', *overrides]
  t0 = time.perf_counter()
  with open(log_path, 'w', encoding='utf-8') as log:
    status = subprocess.run(command, cwd=worktree, env=env, stdout=log,
                            stderr=subprocess.STDOUT, check=False).returncode
  seconds = time.perf_counter() - t0
  if status:
    with open(log_path, encoding='utf-8') as log:
      errors = [line.strip() for line in log if line.startswith('error: ')]
    reason = errors[-1][len('error: '):] if errors else f'exit status {status}'
    raise SideFailed(f'the {side} side failed in round {round_index}: {reason} '
                     f'(its log: {log_path})', status)
  kept = os.path.join(workdir, 'runs', f'{stem}.json')
  os.replace(os.path.join(run_dir, 'report.json'), kept)
  shutil.rmtree(run_dir)
  with open(kept, encoding='utf-8') as f:
    report = json.load(f)
  if report.get('schema_version') == report_lib.SCHEMA_VERSION:
    report_lib.validate(report)
  else:
    # Another revision's schema (a commit that changed the report): only what timing
    # reads is needed from it, and the deterministic diff is left out (result()).
    try:
      _medians(report)
      _matmul_peak(report)
    except (KeyError, TypeError, AttributeError):
      raise UserError(f'the {side} revision\'s report (schema '
                      f'{report.get("schema_version")}) has no cases[].step_time_s.median '
                      f'and environment.peaks that bench.ab can read: {kept}') from None
  return report, seconds


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


def _medians(report):
  """{case: median step time} of the cases that have one."""
  return {c['name']: c['step_time_s']['median'] for c in report['cases']
          if c['status'] == 'ok' and c['step_time_s']['median']}


def _matmul_peak(report):
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

  def run_round(self, worktrees, workdir):
    index = len(self.rounds) + 1
    order = self.orders[index - 1]
    record = {'round': index, 'order': order, 'seconds': {}, 'matmul_peak': {}}
    for side in order:
      report, record['seconds'][side] = run_side(side, index, worktrees[side], self.config,
                                                 self.overrides, workdir)
      self.first.setdefault(side, report)
      record['matmul_peak'][side] = _matmul_peak(report)
      for name, median in _medians(report).items():
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
      if schemas == [report_lib.SCHEMA_VERSION] * 2:
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


# ------------------------------------------------------------------------ rendering

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
  lines += report_lib.table(
      ('case', 'base ms', 'new ms', 'new/base', 'interval', 'rounds: min-max', 'verdict'),
      [[c['name'], report_lib.fmt(c['base_median_s'], 1e3),
        report_lib.fmt(c['new_median_s'], 1e3), f'{c["ratio"]:.3f}', _interval(c),
        f'{min(c["round_ratios"]):.3f}-{max(c["round_ratios"]):.3f}', f'**{c["verdict"]}**'
        if c['verdict'] == 'regression' else c['verdict']] for c in result['cases']])
  lines += ['', '### Deterministic changes', '']
  lines += report_lib.table(('case', 'figure', 'base', 'new'), [
      [c['case'], c['figure'], str(c['base']), str(c['new'])] for c in result['changes']]
  ) if result['changes'] else [f'{result["deterministic_note"] or "None"}.']
  if result['profiles']:
    lines += ['', '### Where the time went', '',
              'Profiled cases: median over the rounds of the time per profiled step of each '
              f'op category (idle: no op running), then the {compare.PROFILE_LAYERS} layers '
              'that moved most.', '']
    lines += report_lib.table(*compare.profile_table(
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
    from bench import plots  # pylint: disable=import-outside-toplevel  (matplotlib)
    plots.ab_rounds(workdir, result)


# ---------------------------------------------------------------------- command line

def _arguments(argv):
  parser = ArgumentParser(prog='bench.ab', description=__doc__.split('\n')[0])
  parser.add_argument('--base', required=True, help='the revision to compare against')
  parser.add_argument('--new', default='HEAD', help='the revision under test (default HEAD)')
  parser.add_argument('--config', required=True, help='config file, relative to the '
                      'repository (each side runs its own revision of it)')
  parser.add_argument('--workdir', required=True, help='where ab.json, ab.md, ab.png, the '
                      'worktrees, runs and logs go')
  positive = compare.number(lambda v: v >= 1 and v == int(v), 'a whole number >= 1')
  parser.add_argument('--rounds', default=8, type=positive,
                      help='rounds before the first look at the verdicts (default 8)')
  parser.add_argument('--look_every', default=4, type=positive,
                      help='rounds between looks while a case is undecided (default 4)')
  parser.add_argument('--max_rounds', default=20, type=positive,
                      help='rounds at most while a case is undecided (default 20)')
  parser.add_argument('--max_minutes', default=30.0,
                      type=compare.number(lambda v: 0 < v < math.inf, 'minutes > 0'),
                      help='no round starts once this is spent (default 30)')
  parser.add_argument('--threshold', default=0.1, type=compare.THRESHOLD,
                      help='ratio change that counts: "10%%" or "0.1" (default 10%%)')
  parser.add_argument('--confidence', default=0.95,
                      type=compare.number(lambda v: 0.5 <= v < 1, 'a probability in [0.5, 1)'),
                      help='confidence of all looks\' intervals together (default 0.95)')
  parser.add_argument('--seed', type=int, help='seed of the round order (default: drawn)')
  parser.add_argument('--changes', choices=('gate', 'advisory'), default='gate',
                      help='gate: a deterministic change or missing case gives exit 1; '
                      'advisory: only printed (CI diffs those against a stored baseline)')
  args, rest = parser.parse_known_args(argv)
  unknown = [a for a in rest if not a.startswith('--config.')]
  if unknown:
    parser.error(f'unrecognized arguments: {" ".join(unknown)}')
  if args.max_rounds < args.rounds:
    parser.error(f'--max_rounds={args.max_rounds:g} is below --rounds={args.rounds:g}')
  args.rounds, args.max_rounds, args.look_every = map(
      int, (args.rounds, args.max_rounds, args.look_every))
  return args, rest


def _prepare(args):
  """(repo, commits, the config's path in the repository), every problem a UserError,
  before anything is written."""
  repo = repository()
  commits = {side: resolve(repo, getattr(args, side)) for side in SIDES}
  config = os.path.relpath(os.path.abspath(args.config), repo)
  if config.startswith(os.pardir):
    raise UserError(f'--config={args.config} is outside the repository {repo}; give a '
                    'config of the repository, such as configs/quickstart.py')
  for side in SIDES:
    _check_config(repo, commits[side], getattr(args, side), config)
  return repo, commits, config


def run(args, overrides, out=sys.stdout):
  """The A/B, as main runs it; returns the result dict."""
  repo, commits, config = _prepare(args)
  if _git(repo, 'status', '--porcelain', '--untracked-files=no').stdout.strip():
    print(f'note: the uncommitted changes in {repo} are in neither side (each side is a '
          'commit): commit them to time them', file=sys.stderr)
  workdir = os.path.abspath(args.workdir)
  created = not os.path.exists(workdir)
  for sub in ('runs', 'logs'):  # an earlier A/B's here would mix with this one's
    shutil.rmtree(os.path.join(workdir, sub), ignore_errors=True)
    os.makedirs(os.path.join(workdir, sub))
  worktrees = {side: os.path.join(workdir, 'worktrees', side) for side in SIDES}
  seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**31)
  ab = AB(args, commits, config, overrides, seed)
  added = []
  try:
    for side in SIDES:
      add_worktree(repo, worktrees[side], commits[side])
      added.append(worktrees[side])
    while True:
      try:
        ab.run_round(worktrees, workdir)
      except SideFailed as e:
        if e.status == 2 and not ab.rounds and created:
          shutil.rmtree(workdir, ignore_errors=True)  # a config problem: nothing left behind
        raise
      n = len(ab.rounds)
      undecided = ([c['name'] for c in ab.cases(final=False) if c['verdict'] is None]
                   if n in looks(args) else None)
      print(f'round {n}: ' + ', '.join(f'{side} {ab.rounds[-1]["seconds"][side]:.1f} s'
                                       for side in ab.rounds[-1]['order'])
            + (f'; undecided: {", ".join(undecided)}' if undecided else ''),
            file=out, flush=True)
      ab.stopped = stop_reason(n, undecided, time.time() - ab.started, args)
      if ab.stopped:
        break
      write(workdir, ab.result(final=False))
  finally:
    for path in added:
      remove_worktree(repo, path)
  result = ab.result(final=True)
  write(workdir, result)
  return result


def main(argv=None):
  args, overrides = _arguments(sys.argv[1:] if argv is None else argv)
  try:
    result = run(args, overrides)
  except UserError as e:
    fail(e)
  except SideFailed as e:
    if e.status == 2:
      fail(e)  # the side's own one-line user error (a bad config field, missing data)
    print(f'error: {e}', file=sys.stderr)
    return 1
  except KeyboardInterrupt:
    print(f'interrupted: {os.path.join(args.workdir, AB_JSON)} has the rounds finished so far',
          file=sys.stderr)
    return 130
  sys.stdout.write(markdown(result))
  return exit_status(result, changes_gate=args.changes == 'gate')


if __name__ == '__main__':
  sys.exit(main())
