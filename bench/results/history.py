"""The results history's store: every finished run and A/B in one SQLite file, keyed
by commit, machine, config and case: the file opened, migrated and guarded, the
recording and the queries. Where along the commits a case's figures moved is
bench/results/change_points.py's.

One file, the standard library's sqlite3, opened, migrated and guarded as
bench/results/sqlite_file.py opens each of ours (WAL, busy timeout, versioned by
MIGRATIONS; another program's, a newer version's or a damaged file is a
UserError and never written to); each run is recorded in one IMMEDIATE
transaction, so two runs finishing at once both land.

The tables, their migrations and which column holds what are
bench/results/history_schema.py's. Reads reports as plain data (no jax).
"""

import hashlib
import json
import time

from bench.core import machine
from bench.core.errors import UserError
from bench.results import schema as report_lib
from bench.results import sqlite_file
from bench.results.history_schema import (APPLICATION_ID, DETERMINISTIC, FIGURES,
                                          MACHINE_COLUMNS, MIGRATIONS)

HISTORY = sqlite_file.Format(APPLICATION_ID, MIGRATIONS, 'history', '--history=PATH')


def connect(path):
  """The history at `path`, created (with its folder) when missing, migrated to
  history_schema.SCHEMA_VERSION; a UserError for a file that is not one of ours, a newer one, or
  damaged (sqlite_file.connect)."""
  return sqlite_file.connect(path, HISTORY)


# ------------------------------------------------------------------------- Recording

def machine_row(conn, found, **labels):
  """The id of the machines row of the machine of identity `found` (machine.identity),
  added when new with `labels` (columns beside the identity's: hostname)."""
  key = machine.key(found)
  columns = [*MACHINE_COLUMNS.values(), *labels]
  conn.execute(f'INSERT OR IGNORE INTO machines (key, {", ".join(columns)}) '
               f'VALUES (?, {", ".join("?" * len(columns))})',
               [key, *(found[k] for k in MACHINE_COLUMNS), *labels.values()])
  return conn.execute('SELECT id FROM machines WHERE key = ?', (key,)).fetchone()[0]


def identity(row):
  """machine.identity of a case_runs row's machine."""
  return {key: row[column] for key, column in MACHINE_COLUMNS.items()}


def peak_columns(peaks):
  """(matmul FLOP/s, copy bytes/s) of a peaks block (bench/measure/peaks.py measure):
  float32's matmul, else the fastest dtype's; None for what it lacks."""
  peaks = peaks or {}
  matmul = peaks.get('matmul_flops_per_s') or {}
  return matmul.get('float32') or (max(matmul.values()) if matmul else None), \
      peaks.get('copy_bytes_per_s')


def _get(block, key):
  return (block or {}).get(key)


def _case_row(case):
  timing = case.get('step_time_s') or {}
  config = case.get('config') or {}
  return {'name': case['name'], 'model': config.get('model'),
          'benchmark': config.get('benchmark'), 'batch_size': config.get('batch_size'),
          'status': case.get('status'), 'median_s': timing.get('median'),
          'iqr_over_median': timing.get('iqr_over_median'),
          'samples': json.dumps(timing.get('samples') or []),
          'examples_per_s': _get(case.get('throughput'), 'examples_per_s'),
          **{column: _get(case.get(block), key) for column, (block, key) in FIGURES.items()}}


def digest(data):
  return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def _insert_run(conn, data, environment, **fields):
  """The runs row of `data` (a report or an A/B result) on the machine `environment`
  describes; None when the same file was recorded before. Inside a transaction."""
  key = digest(data)
  if conn.execute('SELECT 1 FROM runs WHERE digest = ?', (key,)).fetchone():
    return None
  matmul, copy = peak_columns(environment.get('peaks'))
  return sqlite_file.insert(conn, 'runs', {
      'digest': key, 'recorded_at': time.time(),
      'machine_id': machine_row(conn, machine.identity(environment),
                                hostname=environment.get('hostname')),
      'matmul_flops_per_s': matmul, 'copy_bytes_per_s': copy,
      # environment.collect's key (its package is flax-bench, its key flax_bench).
      'harness_version': _get(environment.get('versions'), 'flax_bench'), **fields})


def _measured_before(conn, report):
  """Whether the runs of `report` were recorded before from another file: a workdir
  run again runs no case but rewrites its report (new peaks, a new time), whose cases'
  samples and commit are then those of a run already recorded. One case with samples
  decides: the same timed samples of the same case at the same commit are the same
  measurement."""
  case = next((c for c in report['cases'] if (c.get('step_time_s') or {}).get('samples')),
              None)
  if case is None:
    return False
  return conn.execute(
      "SELECT 1 FROM cases c JOIN runs r ON c.run_id = r.id WHERE r.kind = 'run' AND "
      'c.name = ? AND c.samples = ? AND r.commit_sha IS ?',
      (case['name'], json.dumps(case['step_time_s']['samples']),
       report['environment'].get('git_commit'))).fetchone() is not None


def _unreadable(source, what):
  return UserError(f'{source or "the file"}: not {what} this version can read; pass a '
                   'report.json or an ab.json')


def check_report(report, source=None):
  """A UserError unless `report` can be recorded: a report of this schema version that
  validates, or of an older one whose cases have names and whose figures read here
  are numbers (schema.check_figures)."""
  if not isinstance(report, dict) or not isinstance(report.get('cases'), list) \
      or not isinstance(report.get('environment'), dict) \
      or not all(isinstance(c, dict) and isinstance(c.get('name'), str)
                 for c in report['cases']):
    raise _unreadable(source, 'a benchmark report')
  try:
    (report_lib.validate if report.get('schema_version') in report_lib.READS
     else report_lib.check_figures)(report)
  except (ValueError, TypeError) as e:
    raise UserError(f'{source or "the report"}: {e}; not recorded: pass a report.json as a '
                    'run wrote it') from None


def check_ab(result, source=None):
  """A UserError unless `result` is an A/B result (ab.json) that can be recorded."""
  try:
    result['new']['commit'], result['base']['commit'], [c['name'] for c in result['cases']]
  except (KeyError, TypeError):
    raise _unreadable(source, 'an A/B result') from None


def record_report(conn, report, source=None, commit_time=None):
  """Records a report (check_report): one transaction. Returns the run's id, or None
  when this report, or the measurement it holds (_measured_before), was recorded
  before."""
  check_report(report, source)
  env, suite = report['environment'], report.get('suite') or {}
  with sqlite_file.transaction(conn):
    if _measured_before(conn, report):
      return None
    run_id = _insert_run(conn, report, env, kind='run', commit_sha=env.get('git_commit'),
                         commit_time=commit_time, dirty=env.get('git_dirty'),
                         config_name=suite.get('name'), config_file=suite.get('config_file'),
                         status=suite.get('status'), source=source)
    for case in report['cases'] if run_id else ():
      case_id = sqlite_file.insert(conn, 'cases', {'run_id': run_id, **_case_row(case)})
      for row in _get(case.get('profile'), 'categories') or ():
        sqlite_file.insert(conn, 'profile_categories', {'case_id': case_id, 'category': row['category'],
                                             'time_s': row['time_s'], 'flops': row['flops'],
                                             'bytes': row['bytes']})
  return run_id


def record_ab(conn, result, source=None, commit_time=None):
  """Records an A/B result (ab.json): its verdicts per case, under its new commit,
  against its base. Returns the run's id, or None when recorded before."""
  check_ab(result, source)
  with sqlite_file.transaction(conn):
    run_id = _insert_run(conn, result, result.get('machine') or {}, kind='ab',
                         commit_sha=result['new']['commit'],
                         base_commit=result['base']['commit'], commit_time=commit_time,
                         config_file=result.get('config'), status=result.get('status'),
                         source=source)
    for case in result['cases'] if run_id else ():
      sqlite_file.insert(conn, 'ab_cases', {
          'run_id': run_id, 'name': case['name'], 'ratio': case['ratio'],
          'ci_low': case['ci_low'], 'ci_high': case['ci_high'], 'verdict': case['verdict'],
          'base_median_s': case['base_median_s'], 'new_median_s': case['new_median_s'],
          'rounds': len(case.get('base_s') or ())})
  return run_id


# --------------------------------------------------------------------------- Queries

# A config named as its suite name, its file, or its file's stem (configs/NAME.py).
_CONFIG_MATCH = ("(r.config_name = ? OR r.config_file = ? OR r.config_file LIKE '%/' || ? "
                 "|| '.py')")


def case_runs(conn, case=None, config=None, machine=None):
  """Rows (dicts) of every recorded run of a case, oldest first: run and case columns,
  the machine's key and label."""
  rows = _case_query(conn, 'c.*', case, config, machine)
  names = [d[0] for d in rows.description]
  return [dict(zip(names, row)) for row in rows.fetchall()]


def _case_query(conn, selected, case, config, machine):
  """The cursor of case_runs' rows, each with the `selected` columns of cases (c)
  after the run's and its machine's."""
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
  return conn.execute(f"""
      SELECT r.id AS run_id, r.commit_sha, r.commit_time, r.recorded_at, r.dirty,
             r.config_name, r.config_file, r.status AS run_status, r.matmul_flops_per_s,
             r.copy_bytes_per_s, r.harness_version, m.id AS machine_id, m.key AS machine_key,
             m.hostname, {', '.join(f'm.{column}' for column in MACHINE_COLUMNS.values())},
             {selected}
      FROM cases c JOIN runs r ON c.run_id = r.id JOIN machines m ON r.machine_id = m.id
      WHERE {' AND '.join(where)} ORDER BY r.recorded_at, r.id""", args)


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


# `history export`'s columns: a run, its machine, then (from 'name' on) the columns of
# cases: a case's figures and samples.
EXPORT_COLUMNS = ('run_id', 'commit_sha', 'commit_time', 'recorded_at', 'dirty', 'config_name',
                  'machine_key', 'host_id', 'cpu_model', 'device_kind', 'hostname',
                  'matmul_flops_per_s', 'copy_bytes_per_s', 'name', 'model', 'benchmark',
                  'batch_size', 'status', 'median_s', 'iqr_over_median', 'examples_per_s',
                  *DETERMINISTIC, 'host_step_peak_bytes', 'device_peak_bytes', 'samples')


def export_rows(conn, case=None, config=None):
  """Every case of every run (case_runs) as a tuple of EXPORT_COLUMNS, samples the JSON
  text the history keeps (a CSV cell as it is: 40,000 rows decoded and encoded again,
  or made dicts, took half of an export)."""
  cases = EXPORT_COLUMNS[EXPORT_COLUMNS.index('name'):]
  rows = _case_query(conn, ', '.join(f'c.{c}' for c in cases), case, config, None)
  names = [d[0] for d in rows.description]
  at = [names.index(c) for c in EXPORT_COLUMNS]
  return [tuple(row[i] for i in at) for row in rows.fetchall()]


def ab_verdicts(conn, case):
  """{new commit: [(base commit, verdict, ratio)]} of the A/Bs that judged `case`."""
  out = {}
  for new, base, verdict, ratio in conn.execute("""
      SELECT r.commit_sha, r.base_commit, a.verdict, a.ratio FROM ab_cases a
      JOIN runs r ON a.run_id = r.id WHERE a.name = ? ORDER BY r.recorded_at""", (case,)):
    out.setdefault(new, []).append((base, verdict, ratio))
  return out
