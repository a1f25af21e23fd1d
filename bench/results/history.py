"""The results history: every finished run and A/B in one SQLite file, keyed by
commit, machine, config and case, and the places along a line of commits where a
case's figures moved.

One file, the standard library's sqlite3: no server, copyable, readable by any
SQLite tool. WAL journal, and each run recorded in one IMMEDIATE transaction, so
two runs finishing at once both land (the second waits up to BUSY_TIMEOUT_S), and
readers never block writers. The schema is versioned (PRAGMA user_version) and
migrated in place by MIGRATIONS; the file is marked as ours (PRAGMA
application_id), so another program's database, a newer version's, or a
damaged file is a UserError and never written to.

WORKSPACE.md documents the tables. Reads reports as plain data (no jax).
"""

import hashlib
import json
import math
import os
import sqlite3
import time

import numpy as np

from bench.core.errors import UserError
from bench.results import ab_stats
from bench.results import compare

APPLICATION_ID = 0x46424831  # 'FBH1'
SCHEMA_VERSION = 1
BUSY_TIMEOUT_S = 60

# MIGRATIONS[v] takes a file of version v to v + 1.
MIGRATIONS = ("""
CREATE TABLE machines (
  id INTEGER PRIMARY KEY,
  key TEXT UNIQUE NOT NULL,          -- sha256 of the hardware keys below
  backend TEXT, device_kind TEXT, device_count INTEGER, process_count INTEGER,
  cpu_model TEXT, cpu_count INTEGER, xla_flags TEXT, hostname TEXT
);
CREATE TABLE runs (
  id INTEGER PRIMARY KEY,
  kind TEXT NOT NULL CHECK (kind IN ('run', 'ab')),
  digest TEXT UNIQUE NOT NULL,       -- sha256 of the file recorded: recording twice is a no-op
  recorded_at REAL NOT NULL,         -- unix time
  commit_sha TEXT,                   -- the run's commit; an A/B's new side
  base_commit TEXT,                  -- an A/B's base side; null for a run
  commit_time INTEGER,               -- committer time of commit_sha, when git knew it
  dirty INTEGER,                     -- uncommitted changes were in the run
  harness_version TEXT,
  config_name TEXT, config_file TEXT,
  machine_id INTEGER REFERENCES machines (id),
  matmul_flops_per_s REAL,           -- the run's measured peaks (float32 matmul, copy)
  copy_bytes_per_s REAL,
  status TEXT,                       -- the report's suite status; an A/B's: complete
  source TEXT                        -- the file it was read from
);
CREATE TABLE cases (
  id INTEGER PRIMARY KEY,
  run_id INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
  name TEXT NOT NULL, model TEXT, benchmark TEXT, batch_size INTEGER, status TEXT,
  median_s REAL, iqr_over_median REAL,
  samples TEXT,                      -- JSON list of the timed step times, seconds
  examples_per_s REAL,
  params INTEGER, flops REAL, bytes_accessed REAL,
  argument_bytes INTEGER, output_bytes INTEGER, alias_bytes INTEGER, temp_bytes INTEGER,
  host_step_peak_bytes INTEGER, device_peak_bytes INTEGER,
  UNIQUE (run_id, name)
);
CREATE TABLE profile_categories (
  case_id INTEGER NOT NULL REFERENCES cases (id) ON DELETE CASCADE,
  category TEXT NOT NULL, time_s REAL, flops REAL, bytes REAL,
  PRIMARY KEY (case_id, category)
);
CREATE TABLE ab_cases (
  run_id INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
  name TEXT NOT NULL, ratio REAL, ci_low REAL, ci_high REAL, verdict TEXT,
  base_median_s REAL, new_median_s REAL, rounds INTEGER,
  PRIMARY KEY (run_id, name)
);
CREATE INDEX cases_by_name ON cases (name);
CREATE INDEX runs_by_commit ON runs (commit_sha);
""",)
assert len(MIGRATIONS) == SCHEMA_VERSION

MACHINE_KEYS = ('backend', 'device_kind', 'device_count', 'process_count', 'cpu_model',
                'cpu_count', 'xla_flags')
# Figures of a case that only change with the code (or XLA): listed exactly by `changes`.
DETERMINISTIC = ('params', 'flops', 'bytes_accessed', 'argument_bytes', 'output_bytes',
                 'alias_bytes', 'temp_bytes')


def _refuse(path, why):
  raise UserError(f'{path}: {why}; name another file with --history=PATH (this one is left '
                  'as it is)')


def connect(path):
  """The history at `path`, created (with its folder) when missing, migrated to
  SCHEMA_VERSION; a UserError for a file that is not one of ours, a newer one, or
  damaged."""
  path = os.path.expanduser(path)
  if os.path.isdir(path):
    _refuse(path, 'is a directory, not a history file')
  # Not opened here to read its header: closing any descriptor of the file drops the
  # POSIX locks SQLite holds on it for this process's other connections (measured: two
  # writers then failed with 'disk I/O error'). SQLite says when it is not a database.
  if not os.path.exists(path):
    try:
      os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    except OSError as e:
      _refuse(path, f'cannot create its folder ({e.strerror})')
  try:
    conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
    conn.execute('PRAGMA foreign_keys = ON')
    application, version = (conn.execute(f'PRAGMA {p}').fetchone()[0]
                            for p in ('application_id', 'user_version'))
    tables = conn.execute("SELECT count(*) FROM sqlite_master WHERE type = 'table'").fetchone()[0]
    if application != APPLICATION_ID and (application or version or tables):
      conn.close()
      _refuse(path, 'is an SQLite database of another program, not a flax-bench history')
    if version > SCHEMA_VERSION:
      conn.close()
      _refuse(path, f'is a history of schema {version}, written by a newer flax-bench (this '
              f'one reads schema {SCHEMA_VERSION})')
    if version < SCHEMA_VERSION:
      _migrate(conn)
      # WAL stays set in the file, for every later connection. Switching takes a lock
      # that SQLite does not wait for (a second process creating the file at once got
      # 'database is locked' at once, 1 time in 10): retried here.
      _retrying(lambda: conn.execute('PRAGMA journal_mode = WAL'))
  except sqlite3.DatabaseError as e:
    if 'file is not a database' in str(e):
      _refuse(path, 'is not an SQLite database, or is a damaged one: not a flax-bench history')
    _refuse(path, f'cannot be read as a history ({e})')
  return conn


def _retrying(operation):
  deadline = time.monotonic() + BUSY_TIMEOUT_S
  while True:
    try:
      return operation()
    except sqlite3.OperationalError as e:
      if 'locked' not in str(e) or time.monotonic() > deadline:
        raise
      time.sleep(0.05)


def _statements(script):
  """The SQL statements of `script`, one by one (executescript would commit the
  migration's transaction before it starts)."""
  statement = ''
  for line in script.splitlines(keepends=True):
    statement += line
    if sqlite3.complete_statement(statement):
      yield statement
      statement = ''


def _migrate(conn):
  conn.execute('BEGIN IMMEDIATE')  # a second process migrating at once waits, then sees it done
  try:
    version = conn.execute('PRAGMA user_version').fetchone()[0]
    for step in MIGRATIONS[version:]:
      for statement in _statements(step):
        conn.execute(statement)
    conn.execute(f'PRAGMA application_id = {APPLICATION_ID}')
    conn.execute(f'PRAGMA user_version = {SCHEMA_VERSION}')
    conn.execute('COMMIT')
  except BaseException:
    _rollback(conn)
    raise


# ------------------------------------------------------------------------- Recording

def _machine_id(conn, environment):
  values = [environment.get(k) for k in MACHINE_KEYS]
  key = hashlib.sha256(json.dumps(values).encode()).hexdigest()
  conn.execute(f'INSERT OR IGNORE INTO machines (key, {", ".join(MACHINE_KEYS)}, hostname) '
               f'VALUES (?, {", ".join("?" * len(MACHINE_KEYS))}, ?)',
               [key, *values, environment.get('hostname')])
  return conn.execute('SELECT id FROM machines WHERE key = ?', (key,)).fetchone()[0]


def _peaks(environment):
  peaks = environment.get('peaks') or {}
  matmul = peaks.get('matmul_flops_per_s') or {}
  return matmul.get('float32') or (max(matmul.values()) if matmul else None), \
      peaks.get('copy_bytes_per_s')


def _get(block, key):
  return (block or {}).get(key)


def _case_row(case):
  timing = case.get('step_time_s') or {}
  memory, xla = case.get('memory') or {}, case.get('xla') or {}
  config = case.get('config') or {}
  return {'name': case['name'], 'model': config.get('model'),
          'benchmark': config.get('benchmark'), 'batch_size': config.get('batch_size'),
          'status': case.get('status'), 'median_s': timing.get('median'),
          'iqr_over_median': timing.get('iqr_over_median'),
          'samples': json.dumps(timing.get('samples') or []),
          'examples_per_s': _get(case.get('throughput'), 'examples_per_s'),
          'params': _get(case.get('params'), 'total'), 'flops': xla.get('flops'),
          'bytes_accessed': xla.get('bytes_accessed'),
          **{k: memory.get(k) for k in ('argument_bytes', 'output_bytes', 'alias_bytes',
                                         'temp_bytes', 'host_step_peak_bytes',
                                         'device_peak_bytes')}}


def _insert(conn, table, row):
  conn.execute(f'INSERT INTO {table} ({", ".join(row)}) VALUES ({", ".join("?" * len(row))})',
               list(row.values()))
  return conn.execute('SELECT last_insert_rowid()').fetchone()[0]


def digest(data):
  return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def _insert_run(conn, data, environment, **fields):
  """The runs row of `data` (a report or an A/B result) on the machine `environment`
  describes; None when the same file was recorded before. Inside a transaction."""
  key = digest(data)
  if conn.execute('SELECT 1 FROM runs WHERE digest = ?', (key,)).fetchone():
    return None
  matmul, copy = _peaks(environment)
  return _insert(conn, 'runs', {
      'digest': key, 'recorded_at': time.time(), 'machine_id': _machine_id(conn, environment),
      'matmul_flops_per_s': matmul, 'copy_bytes_per_s': copy,
      'harness_version': _get(environment.get('versions'), 'flax-bench'), **fields})


def _unreadable(source, what):
  return UserError(f'{source or "the file"}: not {what} this version can read; pass a '
                   'report.json or an ab.json')


def record_report(conn, report, source=None, commit_time=None):
  """Records a report (any schema with cases[].step_time_s and environment): one
  transaction. Returns the run's id, or None when this report was recorded before."""
  if not isinstance(report, dict) or not isinstance(report.get('cases'), list) \
      or not isinstance(report.get('environment'), dict) \
      or not all(isinstance(c, dict) and isinstance(c.get('name'), str)
                 for c in report['cases']):
    raise _unreadable(source, 'a benchmark report')
  env, suite = report['environment'], report.get('suite') or {}
  with _transaction(conn):
    run_id = _insert_run(conn, report, env, kind='run', commit_sha=env.get('git_commit'),
                         commit_time=commit_time, dirty=env.get('git_dirty'),
                         config_name=suite.get('name'), config_file=suite.get('config_file'),
                         status=suite.get('status'), source=source)
    for case in report['cases'] if run_id else ():
      case_id = _insert(conn, 'cases', {'run_id': run_id, **_case_row(case)})
      for row in _get(case.get('profile'), 'categories') or ():
        _insert(conn, 'profile_categories', {'case_id': case_id, 'category': row['category'],
                                             'time_s': row['time_s'], 'flops': row['flops'],
                                             'bytes': row['bytes']})
  return run_id


def record_ab(conn, result, source=None, commit_time=None):
  """Records an A/B result (ab.json): its verdicts per case, under its new commit,
  against its base. Returns the run's id, or None when recorded before."""
  try:
    result['new']['commit'], result['base']['commit'], [c['name'] for c in result['cases']]
  except (KeyError, TypeError):
    raise _unreadable(source, 'an A/B result') from None
  with _transaction(conn):
    run_id = _insert_run(conn, result, result.get('machine') or {}, kind='ab',
                         commit_sha=result['new']['commit'],
                         base_commit=result['base']['commit'], commit_time=commit_time,
                         config_file=result.get('config'), status=result.get('status'),
                         source=source)
    for case in result['cases'] if run_id else ():
      _insert(conn, 'ab_cases', {
          'run_id': run_id, 'name': case['name'], 'ratio': case['ratio'],
          'ci_low': case['ci_low'], 'ci_high': case['ci_high'], 'verdict': case['verdict'],
          'base_median_s': case['base_median_s'], 'new_median_s': case['new_median_s'],
          'rounds': len(case.get('base_s') or ())})
  return run_id


class _transaction:
  """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK on any error: a run lands whole or not."""

  def __init__(self, conn):
    self.conn = conn

  def __enter__(self):
    self.conn.execute('BEGIN IMMEDIATE')

  def __exit__(self, kind, *_):
    if kind:
      _rollback(self.conn)
    else:
      self.conn.execute('COMMIT')


def _rollback(conn):
  """ROLLBACK, unless SQLite already did (a full disk, say): then the error that made it
  is the one to see, not 'cannot rollback'."""
  if conn.in_transaction:
    conn.execute('ROLLBACK')


# --------------------------------------------------------------------------- Queries

# A config named as its suite name, its file, or its file's stem (configs/NAME.py).
_CONFIG_MATCH = ("(r.config_name = ? OR r.config_file = ? OR r.config_file LIKE '%/' || ? "
                 "|| '.py')")


def case_runs(conn, case=None, config=None, machine=None):
  """Rows (dicts) of every recorded run of a case, oldest first: run and case columns,
  the machine's key and label."""
  where, args = ["r.kind = 'run'"], []
  if case:
    where.append('c.name = ?')
    args.append(case)
  if config:
    where.append(_CONFIG_MATCH)
    args += [config] * 3
  if machine:
    where.append('(m.key LIKE ? OR m.id = ?)')
    args += [machine + '%', machine]
  rows = conn.execute(f"""
      SELECT r.id AS run_id, r.commit_sha, r.commit_time, r.recorded_at, r.dirty,
             r.config_name, r.status AS run_status, r.matmul_flops_per_s, r.copy_bytes_per_s,
             r.harness_version, m.id AS machine_id, m.key AS machine_key, m.cpu_model,
             m.cpu_count, m.backend, m.device_kind, m.hostname, c.*
      FROM cases c JOIN runs r ON c.run_id = r.id JOIN machines m ON r.machine_id = m.id
      WHERE {' AND '.join(where)} ORDER BY r.recorded_at, r.id""", args)
  names = [d[0] for d in rows.description]
  return [dict(zip(names, row)) for row in rows.fetchall()]


def runs(conn, config=None, case=None, machine=None, commits=None):
  """Every recorded run and A/B, oldest first, as dicts: id, kind, commit, base, when,
  config, machine, status, cases."""
  rows = conn.execute(f"""
      SELECT r.id, r.kind, r.commit_sha, r.base_commit, r.recorded_at, r.dirty,
             coalesce(r.config_name, r.config_file) AS config, r.status, m.key AS machine_key,
             m.cpu_model, m.device_kind, m.hostname,
             (SELECT group_concat(name, ',') FROM (
                SELECT name FROM cases WHERE run_id = r.id UNION ALL
                SELECT name FROM ab_cases WHERE run_id = r.id)) AS cases
      FROM runs r JOIN machines m ON r.machine_id = m.id
      WHERE {_CONFIG_MATCH if config else '1'} ORDER BY r.recorded_at, r.id""",
                      [config] * 3 if config else [])
  names = [d[0] for d in rows.description]
  out = []
  for row in map(lambda r: dict(zip(names, r)), rows.fetchall()):
    row['cases'] = (row['cases'] or '').split(',') if row['cases'] else []
    if case and case not in row['cases']:
      continue
    if machine and not row['machine_key'].startswith(machine):
      continue
    if commits is not None and row['commit_sha'] not in commits:
      continue
    out.append(row)
  return out


def ab_verdicts(conn, case):
  """{new commit: [(base commit, verdict, ratio)]} of the A/Bs that judged `case`."""
  out = {}
  for new, base, verdict, ratio in conn.execute("""
      SELECT r.commit_sha, r.base_commit, a.verdict, a.ratio FROM ab_cases a
      JOIN runs r ON a.run_id = r.id WHERE a.name = ? ORDER BY r.recorded_at""", (case,)):
    out.setdefault(new, []).append((base, verdict, ratio))
  return out


# ----------------------------------------------------------------- Along the commits

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


def median(values):
  values = [v for v in values if v is not None]
  return float(np.median(values)) if values else None


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
  beyond compare.PEAK_NOISE across it.

  Returns {'timing': [{case, machine, commit, previous, ratio, low, high, verdict,
  before, after}], 'undecided': [{case, machine, commit, reason}], 'deterministic':
  [{case, machine, commit, previous, figure, before, after}]}.
  """
  timing, undecided, exact = [], [], []
  for (name, _, _, machine), group in series(case_runs(conn, case=case, config=config)).items():
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
                for figure in DETERMINISTIC
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


def _cannot_decide(before, after):
  if min(len(before), len(after)) < 2:
    return f'too few runs ({len(before)} before, {len(after)} after; 2 needed on each side)'
  bound = math.log1p(compare.PEAK_NOISE)
  for label, column in (('matmul peak', 'matmul_flops_per_s'), ('copy bandwidth',
                                                                'copy_bytes_per_s')):
    a, b = median(r[column] for r in before), median(r[column] for r in after)
    if a and b and abs(math.log(b / a)) > bound:
      return f'the machine changed: its {label} moved {b / a:.2f}x'
  return None


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
