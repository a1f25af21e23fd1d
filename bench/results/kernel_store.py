"""The kernel database: every kernel measured alone, per machine, in one SQLite file.

A kernel is bench/measure/kernels.py's (kind, signature, the HLO module that
compiles alone, FLOPs, bytes, ops, operand and result types), keyed by its key
(a hash of the signature: two programs running the same kernel share the row).
A measurement is one kernel timed alone on one machine (bench/measure/
kernel_bench.py): its samples, median and IQR (seconds per call, less the
probe's call overhead, probe_s), where it came from ('sample': a randomly
generated kernel; 'config:NAME': a kernel of that config's cases), whether
alone it compiled to the same kernel (same, why, and what it ran), and the
machine's peaks (bench/measure/peaks.py's float32 matmul FLOP/s and copy
bandwidth) probed in the same session. A kernel that does not compile alone is
recorded too (no median; why says), so that it is not tried again.

A machine is bench/core/machine.py's identity, as in the results history (its
jax and jaxlib versions are part of it: an upgrade is a new machine, and its
kernels are measured anew). A session whose peaks are below the best this
machine recorded by more than machine.PEAK_NOISE (`disturbed`: a neighbour had
a core) marks its measurements disturbed: they are kept, but do not count as
measured (`measured`), and the next measure run takes them again.

The default file is ~/.cache/flax-bench/kernels.db, beside the results history
and for the same reasons: a kernel's time belongs to the machine, not to a
workdir, a clone or a worktree, so one file per user and machine keeps every
kernel measured once; $FLAX_BENCH_KERNELS names another, --db=PATH on the
command line wins. The file is opened, migrated and guarded as each of ours
(bench/results/sqlite_file.py: a foreign, newer or damaged file is a UserError
and never written to), each measurement written in a transaction of its own (a
killed run keeps what it measured). It also keeps each machine's latest fitted
predictors (`fit`, `keep_fit`: a pickle, which only a file of the user's own is
trusted to hold), so that a run or a prediction does not refit the same rows
(9 s for 1,125 rows here, 0.15 s to load). Plain data, no jax.
"""

import json
import math
import os
import statistics
import time

from bench.core import machine
from bench.core.errors import UserError
from bench.results import history
from bench.results import sqlite_file
from bench.results.history_schema import MACHINE_COLUMNS

ENV = 'FLAX_BENCH_KERNELS'
DEFAULT = os.path.join('~', '.cache', 'flax-bench', 'kernels.db')
APPLICATION_ID = 0x46424b31  # 'FBK1'

# MIGRATIONS[v] takes a file of version v to v + 1 (never edit a step: append one).
MIGRATIONS = ("""
CREATE TABLE machines (
  id INTEGER PRIMARY KEY,
  key TEXT UNIQUE NOT NULL,          -- machine.key of its identity
  host_id TEXT, cpu_model TEXT, cpu_signature TEXT, cpu_count INTEGER, memory_bytes INTEGER,
  backend TEXT, device_kind TEXT, device_count INTEGER, process_count INTEGER,
  xla_flags TEXT, jax TEXT, jaxlib TEXT
);
CREATE TABLE kernels (
  key TEXT PRIMARY KEY,              -- kernels.Kernel.key: sha256 of the signature, 16 hex
  kind TEXT NOT NULL,
  signature TEXT NOT NULL,           -- the module with names by position
  module TEXT NOT NULL,              -- HLO module of the kernel alone
  flops REAL, bytes REAL,            -- per execution
  ops TEXT NOT NULL,                 -- JSON list of the opcodes it runs
  parameters TEXT NOT NULL,          -- JSON list of its operands' types
  result TEXT NOT NULL
);
CREATE TABLE measurements (
  id INTEGER PRIMARY KEY,
  machine_id INTEGER NOT NULL REFERENCES machines (id),
  kernel_key TEXT NOT NULL REFERENCES kernels (key),
  source TEXT NOT NULL CHECK (source = 'sample' OR source LIKE 'config:_%'),
  taken_at REAL NOT NULL,            -- unix time
  median_s REAL, iqr_s REAL, n INTEGER,  -- null: it does not compile alone (why says)
  samples TEXT,                      -- JSON list of seconds per call, less probe_s
  probe_s REAL,                      -- the median call overhead subtracted
  matmul_flops_per_s REAL,           -- the session's peaks (float32 matmul, copy)
  copy_bytes_per_s REAL,
  disturbed INTEGER NOT NULL,        -- the peaks were far below this machine's best
  same INTEGER NOT NULL,             -- alone it compiled to the same kernel
  why TEXT NOT NULL,                 -- '' when same
  ran TEXT NOT NULL                  -- JSON [[kind, key]] of the kernels it ran alone
);
CREATE INDEX measurements_by_machine ON measurements (machine_id, kernel_key);
""", """
CREATE TABLE fits (
  machine_id INTEGER PRIMARY KEY REFERENCES machines (id),  -- the latest fit of each machine
  digest TEXT NOT NULL,              -- of what it was fitted from: rows and code (kernels.fitted)
  model BLOB NOT NULL,               -- the pickled kernel_model.Model
  created_at REAL NOT NULL
);
""")
KERNELS = sqlite_file.Format(APPLICATION_ID, MIGRATIONS, 'kernel database', '--db=PATH')

_KERNEL_FIELDS = ('key', 'kind', 'signature', 'module', 'flops', 'bytes', 'ops', 'parameters',
                  'result')
_JSON = ('ops', 'parameters', 'samples', 'ran')
# A row of `rows`: the kernel's fields, then its measurement's.
ROW_FIELDS = (*_KERNEL_FIELDS, 'machine_key', 'source', 'taken_at', 'median_s', 'iqr_s', 'n',
              'samples', 'probe_s', 'matmul_flops_per_s', 'copy_bytes_per_s', 'disturbed',
              'same', 'why', 'ran')


OFF = 'off'
# How long `kernels sample` runs by default: what filled the database the kernel
# predictors' goals were judged on (docs/measurement.md, "The kernel database").
SAMPLE_MINUTES = 15.0


def path(flag=None, optional=False):
  """The kernel database to use, expanded: --db, else $FLAX_BENCH_KERNELS, else
  DEFAULT. OFF (a run that predicts nothing) is None where `optional`, else a
  UserError."""
  value = flag or os.environ.get(ENV) or DEFAULT
  if value == OFF:
    if optional:
      return None
    raise UserError(f'the kernel database is {OFF} (${ENV}={os.environ.get(ENV)}); name one '
                    'with --db=PATH')
  return os.path.expanduser(value)


def existing(flag=None):
  """`path(flag)`, where a kernel database is; a UserError where there is none yet."""
  file = path(flag)
  if not os.path.exists(file):
    raise UserError(f'{file}: no kernel database here yet; `flax-bench kernels sample` '
                    f'makes one (about {SAMPLE_MINUTES:g} minutes), on this machine')
  return file


def connect(file):
  """The Store of the kernel database at `file` (created when missing); a UserError for
  a file that is not one, a newer one, or a damaged one."""
  return Store(sqlite_file.connect(file, KERNELS))


class Store:
  """An open kernel database; a context manager that closes it."""

  def __init__(self, conn):
    self.conn = conn

  def __enter__(self):
    return self

  def __exit__(self, *_):
    self.close()

  def close(self):
    self.conn.close()

  def add(self, identity, kernel, summary, check, probe_s, peaks, source, disturbed):
    """Records one measurement, in a transaction of its own; returns its id.

    identity: machine.identity of the machine; kernel: a kernels.Kernel; summary:
    kernel_bench.measure's timer.summarize block (None: it does not compile alone);
    check: its kernel_bench.Check (same, why, ran); probe_s: the call overhead
    subtracted; peaks: the session's peaks.measure block; source: 'sample' or
    'config:NAME'; disturbed: the session's `disturbed` answer (true: marked)."""
    matmul, copy = history.peak_columns(peaks)
    summary = summary or {}
    with sqlite_file.transaction(self.conn):
      self.conn.execute(
          f'INSERT OR IGNORE INTO kernels ({", ".join(_KERNEL_FIELDS)}) '
          f'VALUES ({", ".join("?" * len(_KERNEL_FIELDS))})',
          [json.dumps(list(getattr(kernel, f))) if f in _JSON else getattr(kernel, f)
           for f in _KERNEL_FIELDS])
      return sqlite_file.insert(self.conn, 'measurements', {
          'machine_id': history.machine_row(self.conn, identity), 'kernel_key': kernel.key,
          'source': source, 'taken_at': time.time(), 'median_s': summary.get('median'),
          'iqr_s': summary.get('iqr'), 'n': summary.get('n'),
          'samples': json.dumps(summary['samples']) if summary else None, 'probe_s': probe_s,
          'matmul_flops_per_s': matmul, 'copy_bytes_per_s': copy,
          'disturbed': bool(disturbed), 'same': bool(check.same), 'why': check.why,
          'ran': json.dumps([list(pair) for pair in check.ran])})

  def disturbed(self, machine_key, peaks):
    """Why a session of these peaks (a peaks.measure block) on the machine of
    `machine_key` is disturbed: 'matmul peak 0.52x of the best this machine recorded'
    for each peak below its best in an undisturbed session by more than
    machine.PEAK_NOISE (the bound machine.judge uses); '' when none is (or nothing
    was recorded yet)."""
    best = self.conn.execute("""
        SELECT max(s.matmul_flops_per_s), max(s.copy_bytes_per_s) FROM measurements s
        JOIN machines m ON s.machine_id = m.id WHERE m.key = ? AND NOT s.disturbed""",
                             (machine_key,)).fetchone()
    bound = -math.log1p(machine.PEAK_NOISE)
    return '; '.join(
        f'{label} {value / top:.2f}x of the best this machine recorded'
        for label, value, top in zip(('matmul peak', 'copy bandwidth'),
                                     history.peak_columns(peaks), best)
        if value and top and math.log(value / top) < bound)

  def rows(self, machine_key, kind=None, source=None):
    """The measurement that counts of each kernel measured on the machine of
    `machine_key` (its latest undisturbed one, else its latest), as {ROW_FIELDS}
    dicts in key order: ops, parameters, samples and ran lists, disturbed and same
    booleans; only those of `kind` and of that measurement's `source` when given."""
    where, args = ['s.rank = 1'], [machine_key]
    for column, value in (('k.kind', kind), ('s.source', source)):
      if value is not None:
        where.append(f'{column} = ?')
        args.append(value)
    found = self.conn.execute(f"""
        SELECT {', '.join(f'k.{f}' for f in _KERNEL_FIELDS)}, s.* FROM (
          SELECT m.key AS machine_key, x.source, x.taken_at, x.median_s, x.iqr_s, x.n,
                 x.samples, x.probe_s, x.matmul_flops_per_s, x.copy_bytes_per_s,
                 x.disturbed, x.same, x.why, x.ran, x.kernel_key,
                 row_number() OVER (PARTITION BY x.kernel_key
                                    ORDER BY x.disturbed, x.taken_at DESC, x.id DESC) AS rank
          FROM measurements x JOIN machines m ON x.machine_id = m.id WHERE m.key = ?) s
        JOIN kernels k ON k.key = s.kernel_key
        WHERE {' AND '.join(where)} ORDER BY k.key""", args)
    names = [d[0] for d in found.description]
    out = []
    for values in found.fetchall():
      row = {f: v for f, v in zip(names, values) if f in ROW_FIELDS}
      out.append({f: json.loads(row[f]) if f in _JSON and row[f] is not None
                  else bool(row[f]) if f in ('disturbed', 'same') else row[f]
                  for f in ROW_FIELDS})
    return out

  def measured(self, machine_key):
    """{kernel key: row of `rows`} of the kernels the machine of `machine_key` has an
    undisturbed measurement of: those a measure run need not take again."""
    return {r['key']: r for r in self.rows(machine_key) if not r['disturbed']}

  def fit(self, machine_key, digest):
    """The pickled Model the machine of `machine_key` keeps for `digest`, or None."""
    found = self.conn.execute("""
        SELECT f.model FROM fits f JOIN machines m ON f.machine_id = m.id
        WHERE m.key = ? AND f.digest = ?""", (machine_key, digest)).fetchone()
    return found[0] if found else None

  def keep_fit(self, machine_key, digest, model):
    """Keeps the pickled `model` for `digest` as the machine's fit, in place of its last."""
    with sqlite_file.transaction(self.conn):
      self.conn.execute("""
          INSERT OR REPLACE INTO fits (machine_id, digest, model, created_at)
          SELECT id, ?, ?, ? FROM machines WHERE key = ?""",
                        (digest, model, time.time(), machine_key))

  def machines(self):
    """Every machine with a measurement, as dicts: key, its identity (machine.IDENTITY),
    kernels (how many it has a measurement of), measured (undisturbed ones)."""
    columns = MACHINE_COLUMNS
    found = self.conn.execute(f"""
        SELECT m.key, {', '.join(f'm.{c}' for c in columns.values())},
               count(DISTINCT s.kernel_key),
               count(DISTINCT CASE WHEN NOT s.disturbed THEN s.kernel_key END)
        FROM machines m JOIN measurements s ON s.machine_id = m.id
        GROUP BY m.id ORDER BY m.id""").fetchall()
    return [{'key': r[0], **dict(zip(columns, r[1:-2])), 'kernels': r[-2], 'measured': r[-1]}
            for r in found]


def summary(rows):
  """[(kind, kernels, measured, median of their medians in seconds or None, not the same
  alone)] of `rows` (Store.rows of one machine), a row per kind, sorted: `kernels
  list`'s table. Measured: with a median, undisturbed."""
  kinds = {}
  for row in rows:
    kinds.setdefault(row['kind'], []).append(row)
  out = []
  for kind in sorted(kinds):
    medians = [r['median_s'] for r in kinds[kind]
               if r['median_s'] is not None and not r['disturbed']]
    out.append((kind, len(kinds[kind]), len(medians),
                statistics.median(medians) if medians else None,
                sum(not r['same'] for r in kinds[kind])))
  return out
