"""The results history's store: runs recorded once and whole, their queries and the
command line over them, the file's guards (foreign, newer, damaged, read-only files;
migration), two writers. The changes found along the commits: test_change_points.py."""

import json
import os
import sqlite3
import subprocess
import sys

import numpy as np
import pytest

from bench.core import machine
from bench.results import change_points
from bench.results import history
from bench.results import history_schema
from bench.results import schema as report_lib
from bench.results import sqlite_file
from bench.run import history as history_run
from tests import test_report
from tests.conftest import REPO, call_cli, run_cli

_MACHINE = {**test_report._ENV, 'machine_id': '5d41402abc4b2a76b9719d911017c592',
            'memory_bytes': 16 << 30,
            'peaks': {'matmul_flops_per_s': {'float32': 4e11}, 'copy_bytes_per_s': 5e10}}


def _report(commit, medians, params=400, machine=None, peak=4e11, seed=0):
  """A report of commit `commit` whose cases {name: median seconds} ran on `machine`."""
  cases = []
  for name, median in medians.items():
    case = test_report._case(name, params, 1e6, median)
    # Two runs never time the same samples: a report with a run's samples is that run's
    # (history._measured_before).
    case['step_time_s']['samples'] = [median * (1 + 0.01 * i + 1e-4 * seed) for i in range(-2, 3)]
    cases.append(case)
  env = {**_MACHINE, **(machine or {}), 'git_commit': commit, 'git_dirty': False,
         'peaks': {**test_report._ENV['peaks'], 'matmul_flops_per_s': {'float32': peak},
                   'copy_bytes_per_s': 5e10},
         'hostname': f'run-{commit}-{seed}'}  # every report distinct, as runs are
  return report_lib.build('study', 'configs/study.py', env, cases, [])


def _commit(i):
  return f'{i:02d}' * 20


def _history(tmp_path, slowdown_at=4, commits=8, runs=3, plant=1.3):
  """Runs of `commits` commits, `runs` each: 'mlp' at 10 ms give or take 3%, 30% slower
  from commit `slowdown_at` on; 'cnn' unchanged but for its parameters at commit 6."""
  conn = history.connect(str(tmp_path / 'h.db'))
  rng = np.random.default_rng(0)
  for i in range(commits):
    for r in range(runs):
      noise = lambda: 1 + rng.uniform(-0.03, 0.03)
      mlp = 0.010 * noise() * (plant if i >= slowdown_at else 1)
      report = _report(_commit(i), {'mlp': mlp, 'cnn': 0.05 * noise()},
                       params=500 if i >= 6 else 400, seed=r)
      history.record_report(conn, report, commit_time=1_000_000 + 100 * i)
  return conn


def test_recording_is_whole_and_once(tmp_path):
  conn = history.connect(str(tmp_path / 'h.db'))
  report = _report(_commit(1), {'mlp': 0.01, 'cnn': 0.05})
  first = history.record_report(conn, report, source='r.json', commit_time=5)
  assert first == 1 and history.record_report(conn, report) is None  # the same file again
  (run,) = history.runs(conn)
  assert (run['kind'], run['commit_sha'], run['config'], sorted(run['cases'])) == (
      'run', _commit(1), 'study', ['cnn', 'mlp'])
  rows = history.case_runs(conn, case='mlp')
  assert len(rows) == 1 and rows[0]['median_s'] == 0.01 and rows[0]['params'] == 400
  assert json.loads(rows[0]['samples']) == pytest.approx([0.0098, 0.0099, 0.01, 0.0101, 0.0102])
  assert rows[0]['matmul_flops_per_s'] == 4e11 and rows[0]['commit_time'] == 5
  # A report that breaks mid-way lands not at all.
  broken = _report(_commit(2), {'mlp': 0.01})
  broken['cases'].append(broken['cases'][0])  # the same case twice: UNIQUE (run, name)
  with pytest.raises(sqlite3.IntegrityError):
    history.record_report(conn, broken)
  assert len(history.runs(conn)) == 1


def test_the_command_line(tmp_path):
  conn = _history(tmp_path)
  db = str(tmp_path / 'h.db')
  conn.close()
  listed = call_cli(f'--history={db}', 'list', '--case=mlp', module='bench.history')
  assert listed.returncode == 0, listed.stderr
  assert listed.stdout.endswith('\n24 runs\n')
  shown = call_cli(f'--history={db}', 'show', 'mlp', f'--plot={tmp_path}', '--by_time',
                   module='bench.history')
  assert shown.returncode == 0, shown.stderr
  assert (tmp_path / 'trend.png').stat().st_size > 0
  assert '| 4 | 0404040404 | 1970-01-12 ' in shown.stdout  # commit 4 of 8, its 3 runs
  # This repository's HEAD line has none of these made-up commits.
  off_line = call_cli(f'--history={db}', 'show', 'mlp', module='bench.history')
  assert off_line.returncode == 2
  assert off_line.stderr.strip() == (
      "error: none of the 24 runs of 'mlp' is of a commit on HEAD's first-parent line; "
      'name another with --rev, or --by_time')
  changes = call_cli(f'--history={db}', 'changes', '--by_time', module='bench.history')
  assert changes.returncode == 0, changes.stderr
  assert '14 points in 2 series: 1 regression, 0 faster, 8 same, 5 undecided.' in changes.stdout
  assert '| 0404040404 | 0303030303 | 1.300 | 1.282-1.330 | regression | 12/6 |' in changes.stdout
  assert 'No step time moved' not in changes.stdout
  # For CI: exit 1 when a point has a verdict --fail-on names, and say which.
  failed = call_cli(f'--history={db}', 'changes', '--by_time', '--fail-on=regression,faster',
                    module='bench.history')
  assert (failed.returncode, failed.stderr.strip()) == (1, '--fail-on: 1 regression')
  wrong = call_cli(f'--history={db}', 'changes', '--fail-on=worse', module='bench.history')
  assert (wrong.returncode, wrong.stderr.strip()) == (2, (
      "error: argument --fail-on/--fail_on: 'worse' is not a comma-separated list of "
      'regression, faster, undecided; see python -m bench.history changes --help'))
  # This repository's line holds none of the made-up commits: said, not "nothing moved".
  off_line = call_cli(f'--history={db}', 'changes', '--case=mlp', module='bench.history')
  assert (off_line.returncode, off_line.stderr.strip()) == (2, (
      "error: none of the recorded runs of 'mlp' is of a commit on HEAD's first-parent "
      'line; name another with --rev, or --by_time'))
  exported = call_cli(f'--history={db}', 'export', '--format=json', '--case=cnn',
                      module='bench.history')
  rows = json.loads(exported.stdout)
  assert len(rows) == 24 and rows[0]['name'] == 'cnn' and len(rows[0]['samples']) == 5
  csv_rows = call_cli(f'--history={db}', 'export', module='bench.history').stdout.splitlines()
  assert len(csv_rows) == 49 and csv_rows[0].startswith('run_id,commit_sha,')


def test_a_rerun_report_is_recognised_and_the_harness_version_kept(tmp_path):
  """Issue 37: a finished workdir run again rewrites its report (new peaks, host, time)
  around the same samples; recorded once."""
  conn = history.connect(str(tmp_path / 'h.db'))
  report = _report(_commit(1), {'mlp': 0.01})
  assert history.record_report(conn, report)
  rerun = json.loads(json.dumps(report))
  rerun['environment']['peaks']['copy_bytes_per_s'] = 4.9e10
  rerun['environment']['hostname'] = 'elsewhere'
  assert history.record_report(conn, rerun) is None
  assert history.record_report(conn, _report(_commit(1), {'mlp': 0.01}, seed=1))
  assert [r['harness_version'] for r in history.case_runs(conn)] == ['0.1.0', '0.1.0']


def test_a_foreign_or_newer_file_is_refused_and_left_alone(tmp_path):
  text = tmp_path / 'notes.txt'
  text.write_text('not a database\n')
  result = call_cli(f'--history={text}', 'list', module='bench.history')
  assert result.returncode == 2
  assert result.stderr.strip() == (
      f'error: {text}: is not an SQLite database, or is a damaged one: not a flax-bench '
      'history; name another file with --history=PATH (this one is left as it is)')
  assert text.read_text() == 'not a database\n'
  other = tmp_path / 'other.db'
  sqlite3.connect(other).execute('CREATE TABLE t (x)').connection.commit()
  with pytest.raises(history.UserError, match='an SQLite database of another program'):
    history.connect(str(other))
  damaged = tmp_path / 'damaged.db'
  damaged.write_bytes(b'SQLite format 3\x00' + bytes(range(256)) * 16)
  with pytest.raises(history.UserError, match='damaged.db: is not an SQLite database, or is a '
                     'damaged one'):
    history.connect(str(damaged))
  assert damaged.read_bytes()[:16] == b'SQLite format 3\x00'  # left as it was
  newer = tmp_path / 'newer.db'
  history.connect(str(newer)).execute(
      f'PRAGMA user_version = {history_schema.SCHEMA_VERSION + 1}')
  with pytest.raises(history.UserError, match='written by a newer flax-bench'):
    history.connect(str(newer))


def test_damaged_pages_are_refused_never_written_never_a_traceback(tmp_path):
  """Issue 37's faults: 4 KiB of random bytes at 10 random pages of a 90-run history,
  and truncations. Every command is one line, exit 2; the file is left byte for byte."""
  db = tmp_path / 'h.db'
  conn = history.connect(str(db))
  for i in range(30):
    for r in range(3):
      history.record_report(conn, _report(_commit(i), {'mlp': 0.01, 'cnn': 0.05}, seed=r))
  conn.execute('PRAGMA wal_checkpoint(TRUNCATE)')
  conn.close()
  report = tmp_path / 'r.json'
  report.write_text(json.dumps(_report(_commit(50), {'mlp': 0.01})))
  whole = db.read_bytes()
  rng = np.random.default_rng(0)
  damaged = []
  for page in rng.choice(np.arange(1, len(whole) // 4096), 10, replace=False):
    data = bytearray(whole)
    data[page * 4096:(page + 1) * 4096] = rng.bytes(4096)
    damaged.append(bytes(data))
  damaged += [whole[:len(whole) // 2], whole[:4096 * 3 + 100]]  # truncated
  for data in damaged:
    db.write_bytes(data)
    for command in (('add', str(report)), ('changes', '--by_time'), ('list',),
                    ('export', '--format=json')):
      result = call_cli(f'--history={db}', *command, module='bench.history')
      assert (result.returncode, result.stdout) == (2, ''), (command, result.stderr)
      (line,) = result.stderr.splitlines()
      assert line.startswith(f'error: {db}: ') and 'left as it is' in line
      assert db.read_bytes() == data
      assert sorted(os.listdir(tmp_path)) == ['h.db', 'r.json']


def test_a_read_only_history_is_read_and_never_written(tmp_path):
  """Issue 37: a history this process may not write (made immutable here: root ignores
  file modes) is read as usual; a write is one line, exit 2, and nothing is left
  beside it (it had left empty -wal and -shm files, and a traceback)."""
  db = tmp_path / 'h.db'
  conn = history.connect(str(db))
  for i in range(2):
    history.record_report(conn, _report(_commit(i), {'mlp': 0.01}))
  conn.close()
  report = tmp_path / 'r.json'
  report.write_text(json.dumps(_report(_commit(5), {'mlp': 0.01})))
  if subprocess.run(['chattr', '+i', str(db)], capture_output=True, check=False).returncode:
    pytest.skip('chattr +i is not permitted here')
  try:
    before = db.read_bytes()
    listed = call_cli(f'--history={db}', 'list', module='bench.history')
    assert listed.returncode == 0 and listed.stdout.endswith('\n2 runs\n'), listed.stderr
    added = call_cli(f'--history={db}', 'add', str(report), module='bench.history')
    assert (added.returncode, added.stderr) == (2, (
        f'error: {db}: is read-only here (no write permission): nothing was written; make it '
        'writable; name another file with --history=PATH (this one is left as it is)\n'))
    with pytest.raises(history.UserError, match='is read-only here'):
      history_run.check(str(db))  # a run is refused up front, not at its end
    assert db.read_bytes() == before and sorted(os.listdir(tmp_path)) == ['h.db', 'r.json']
  finally:
    subprocess.run(['chattr', '-i', str(db)], check=True)


def test_two_writers_at_once_lose_nothing(tmp_path):
  """Two processes each backfilling 15 reports at the same moment: all 30 land."""
  files = {side: [] for side in 'ab'}
  for side in 'ab':
    for i in range(15):
      path = tmp_path / f'{side}{i}.json'
      path.write_text(json.dumps(_report(_commit(i), {'mlp': 0.01, 'cnn': 0.05},
                                         seed=ord(side))))
      files[side].append(str(path))
  db = str(tmp_path / 'h.db')
  procs = [subprocess.Popen([sys.executable, '-m', 'bench.history', f'--history={db}', 'add',
                             *files[side]], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True) for side in 'ab']
  outputs = [p.communicate(timeout=120) for p in procs]
  assert [p.returncode for p in procs] == [0, 0], outputs
  conn = history.connect(db)
  assert len(history.runs(conn)) == 30
  assert conn.execute('SELECT count(*) FROM cases').fetchone()[0] == 60
  assert conn.execute('PRAGMA journal_mode').fetchone()[0] == 'wal'


@pytest.mark.fast
def test_a_finished_run_is_recorded(tmp_path):
  db = tmp_path / 'history.db'
  result = run_cli('--config=configs/base.py', f'--workdir={tmp_path / "w"}',
                   '--config.timed_steps=3', '--config.warmup_steps=1',
                   env={'FLAX_BENCH_HISTORY': str(db)})
  assert result.returncode == 0, result.stderr
  conn = history.connect(str(db))
  (run,) = history.runs(conn)
  report = report_lib.load(str(tmp_path / 'w' / 'report.json'))
  assert run['commit_sha'] == report['environment']['git_commit']
  (row,) = history.case_runs(conn)
  assert row['median_s'] == report['cases'][0]['step_time_s']['median']
  env = report['environment']
  assert (row['host_id'], row['cpu_model'], row['cpu_signature'], row['memory_bytes']) == (
      env['machine_id'], env['cpu_model'], env['cpu_signature'], env['memory_bytes'])
  assert os.path.exists(db)


def test_dirty_runs_missing_figures_and_config_files(tmp_path):
  conn = history.connect(str(tmp_path / 'h.db'))
  for i in range(2):
    for r in range(2):
      report = _report(_commit(i), {'mlp': 0.01}, seed=r)
      if i == 1:
        report['cases'][0]['xla']['flops'] = None  # not measured: no change
      history.record_report(conn, report)
  dirty = _report(_commit(1), {'mlp': 0.05}, seed=9)
  dirty['environment']['git_dirty'] = True  # uncommitted changes: not commit 1's figure
  history.record_report(conn, dirty)
  commits = change_points.per_commit(history.case_runs(conn, case='mlp'))
  assert [(c, len(rows)) for c, rows in commits] == [(_commit(0), 2), (_commit(1), 2)]
  assert change_points.changes(conn)['deterministic'] == []
  # A config by its suite name, its file or its file's stem.
  for config in ('study', 'configs/study.py'):
    assert len(history.runs(conn, config=config)) == 5
    assert len(history.case_runs(conn, config=config)) == 5
  assert history.runs(conn, config='other') == []


def test_a_file_that_is_no_report_is_one_line(tmp_path):
  listed = tmp_path / 'list.json'
  listed.write_text('[1, 2]')
  ab_like = tmp_path / 'ab.json'
  ab_like.write_text(json.dumps({'rounds': [], 'base': {}, 'cases': []}))
  for path, what in ((listed, 'a benchmark report'), (ab_like, 'an A/B result')):
    result = call_cli(f'--history={tmp_path / "h.db"}', 'add', str(path),
                      module='bench.history')
    assert result.returncode == 2
    assert result.stderr.strip() == (f'error: {path}: not {what} this version can read; '
                                     'pass a report.json or an ab.json')
    assert not (tmp_path / 'h.db').exists()


def test_a_history_of_schema_1_is_migrated(tmp_path):
  """A file of the first schema (no machine id in its machines table) gains the
  identity's columns and the runs' order index; its machine is unknown, a new run's
  machine a new row."""
  path = str(tmp_path / 'old.db')
  old = sqlite3.connect(path, isolation_level=None)
  for statement in sqlite_file.statements(history_schema.MIGRATIONS[0]):
    old.execute(statement)
  old.execute(f'PRAGMA application_id = {history_schema.APPLICATION_ID}')
  old.execute('PRAGMA user_version = 1')
  old.execute("INSERT INTO machines (key, cpu_model) VALUES ('k1', 'test cpu')")
  old.execute("INSERT INTO runs (kind, digest, recorded_at, commit_sha, machine_id, status) "
              f"VALUES ('run', 'd1', 1.0, '{_commit(0)}', 1, 'complete')")
  old.execute("INSERT INTO cases (run_id, name, status, median_s) VALUES (1, 'mlp', 'ok', 0.01)")
  old.close()
  conn = history.connect(path)
  assert conn.execute('PRAGMA user_version').fetchone()[0] == 3
  assert 'INDEX runs_in_order' in str(conn.execute(
      'EXPLAIN QUERY PLAN SELECT id FROM runs ORDER BY recorded_at, id').fetchall())
  history.record_report(conn, _report(_commit(1), {'mlp': 0.01}))
  rows = history.case_runs(conn, case='mlp')
  assert [(r['machine_key'], r['host_id'], r['jax']) for r in rows] == [
      ('k1', None, None), (machine.key(machine.identity(_MACHINE)), _MACHINE['machine_id'],
                           '0.10.2')]
  conn.close()
  assert history.connect(path).execute('PRAGMA user_version').fetchone()[0] == 3


@pytest.mark.parametrize('where, value, line', [
    ('step_time_s', 'fast', "case 'mlp' step_time_s must be an object, got str"),
    ('median', 'fast', "case 'mlp' step_time_s.median is 'fast', not a number"),
    ('samples', ['a'], "case 'mlp' step_time_s.samples is not a list of numbers"),
    ('flops', '1e6', "case 'mlp' xla.flops is '1e6', not a number"),
])
def test_a_report_with_a_figure_that_is_no_number_is_one_line(tmp_path, where, value, line):
  for version in (report_lib.SCHEMA_VERSION, 9):  # this version's, and an older one
    report = _report(_commit(1), {'mlp': 0.01})
    report['schema_version'] = version
    case = report['cases'][0]
    if where == 'step_time_s':
      case['step_time_s'] = value
    elif where == 'flops':
      case['xla']['flops'] = value
    else:
      case['step_time_s'][where] = value
    path = tmp_path / f'r{version}.json'
    path.write_text(json.dumps(report))
    db = tmp_path / 'h.db'
    result = call_cli(f'--history={db}', 'add', str(path), module='bench.history')
    assert (result.returncode, result.stdout) == (2, '')
    assert result.stderr.strip() == (f'error: {path}: {line}; not recorded: pass a report.json '
                                     'as a run wrote it')
    assert not db.exists()  # checked before the history was created
