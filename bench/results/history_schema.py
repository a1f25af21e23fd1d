"""The results history's tables: SCHEMA_VERSION and the MIGRATIONS that build and
update a history file, and which column holds which figure of a report (FIGURES)
and of a machine (MACHINE_COLUMNS). bench/results/history.py is the store that
applies them.

A machine is bench/core/machine.py's identity (machines.key: machine.key of it),
the environment's machine_id in the column host_id (runs.machine_id is the
machines row). A machine recorded before schema 2 keeps the key of the hardware
keys of then, and has no host_id: an unknown machine.
"""

from bench.core import machine
from bench.results import schema as report_lib

APPLICATION_ID = 0x46424831  # 'FBH1'
SCHEMA_VERSION = 3

# MIGRATIONS[v] takes a file of version v to v + 1.
MIGRATIONS = ("""
CREATE TABLE machines (
  id INTEGER PRIMARY KEY,
  key TEXT UNIQUE NOT NULL,          -- sha256 of its identity (bench/core/machine.py key)
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
""", """
-- bench/core/machine.py's whole identity: the hashed machine id (null: a machine
-- recorded before, or a report without one: unknown), the CPU's signature, memory,
-- jax and jaxlib.
ALTER TABLE machines ADD COLUMN host_id TEXT;
ALTER TABLE machines ADD COLUMN cpu_signature TEXT;
ALTER TABLE machines ADD COLUMN memory_bytes INTEGER;
ALTER TABLE machines ADD COLUMN jax TEXT;
ALTER TABLE machines ADD COLUMN jaxlib TEXT;
""", """
-- Every query reads runs in the order they were recorded: in this index's order, not
-- sorted after reading (40,000 cases: 0.40 -> 0.20 s).
CREATE INDEX runs_in_order ON runs (recorded_at, id);
""")
assert len(MIGRATIONS) == SCHEMA_VERSION

# machines' column of each machine.IDENTITY key (runs.machine_id is taken).
MACHINE_COLUMNS = {key: 'host_id' if key == 'machine_id' else key for key in machine.IDENTITY}
# cases' columns of a case's figures: (block, key) of the report.
FIGURES = {'params': ('params', 'total'), 'flops': ('xla', 'flops'),
           'bytes_accessed': ('xla', 'bytes_accessed'),
           **{k: ('memory', k) for k in ('argument_bytes', 'output_bytes', 'alias_bytes',
                                         'temp_bytes', 'host_step_peak_bytes',
                                         'device_peak_bytes')}}
# Those the schema calls deterministic (report_lib.DETERMINISTIC): listed exactly by
# `changes`, never judged as timing.
DETERMINISTIC = tuple(column for column, (block, key) in FIGURES.items()
                      if key in report_lib.DETERMINISTIC.get(block, ()))
