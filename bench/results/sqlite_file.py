"""A flax-bench SQLite file (the results history, the kernel database): opened,
created, migrated and guarded the one way, and written in whole transactions.

One file, the standard library's sqlite3: no server, copyable, readable by any
SQLite tool. WAL journal, and each write in one IMMEDIATE transaction, so two
processes writing at once both land (the second waits up to BUSY_TIMEOUT_S), and
readers never block writers. The schema is versioned (PRAGMA user_version) and
migrated in place by the format's MIGRATIONS; the file is marked as ours (PRAGMA
application_id), so another program's database, a newer version's, or a damaged
file (SQLite's quick_check, at every open) is a UserError and never written to.
"""

import dataclasses
import errno
import os
import sqlite3
import time
import urllib.parse

from bench.core.errors import UserError

BUSY_TIMEOUT_S = 60


@dataclasses.dataclass(frozen=True)
class Format:
  """What one kind of file of ours is."""
  application_id: int  # PRAGMA application_id: the file is ours
  migrations: tuple    # migrations[v] takes a file of version v to v + 1 (SQL script)
  noun: str            # what an error calls it: 'history', 'kernel database'
  flag: str            # how to name another file: '--history=PATH'

  @property
  def version(self):
    return len(self.migrations)


def _refuse(form, path, why):
  raise UserError(f'{path}: {why}; name another file with {form.flag} (this one is left as '
                  'it is)')


def _damaged(form, path, why):
  """A damaged file refused, with how to save what is still readable: SQLite's shell
  copies every row it can read into a new file (a history's runs can also be recorded
  again from their report.json files, `history add`)."""
  _refuse(form, path, f'{why}; to keep what is readable: sqlite3 {path} .recover | sqlite3 '
          'NEW.db')


class Connection(sqlite3.Connection):
  """A connection that knows its file, and whether it may write to it (`transaction`
  refuses, in one line, before SQLite would)."""
  path, form, read_only = None, None, False


def _read_only_uri(path):
  """The URI that reads a file this process may not write without writing anything
  beside it: immutable (no locks, no -shm or -wal made next to it; a read-only history
  once left both, empty), unless a write-ahead log with content lies beside it, which
  only a read-only open reads."""
  wal = path + '-wal'
  mode = 'mode=ro' if os.path.exists(wal) and os.path.getsize(wal) else 'immutable=1'
  return f'file:{urllib.parse.quote(os.path.abspath(path))}?{mode}'


def connect(path, form):
  """The file of Format `form` at `path`, created (with its folder) when missing,
  migrated to its version; a UserError for a file that is not one of ours, a newer
  one, or damaged. A file this process may not write is opened to read (its writes
  refused by `transaction`)."""
  path = os.path.expanduser(path)
  if os.path.isdir(path):
    _refuse(form, path, f'is a directory, not a {form.noun} file')
  # Not opened here to read its header: closing any descriptor of the file drops the
  # POSIX locks SQLite holds on it for this process's other connections (measured: two
  # writers then failed with 'disk I/O error'). SQLite says when it is not a database.
  if not os.path.exists(path):
    try:
      os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    except OSError as e:
      folder = os.path.dirname(os.path.abspath(path))
      _refuse(form, path, f'cannot create its folder {folder} ('
              + ('a file is in the way' if e.errno in (errno.EEXIST, errno.ENOTDIR) else e.strerror)
              + ')')
  conn = None
  try:
    read_only = os.path.exists(path) and not os.access(path, os.W_OK)
    conn = sqlite3.connect(_read_only_uri(path) if read_only else path, uri=read_only,
                           timeout=BUSY_TIMEOUT_S, isolation_level=None, factory=Connection)
    conn.path, conn.form, conn.read_only = path, form, read_only
    conn.execute('PRAGMA foreign_keys = ON')
    application, version = (conn.execute(f'PRAGMA {p}').fetchone()[0]
                            for p in ('application_id', 'user_version'))
    tables = conn.execute("SELECT count(*) FROM sqlite_master WHERE type = 'table'").fetchone()[0]
    if application != form.application_id and (application or version or tables):
      conn.close()
      _refuse(form, path, f'is an SQLite database of another program, not a flax-bench '
              f'{form.noun}')
    if version > form.version:
      conn.close()
      _refuse(form, path, f'is a {form.noun} of schema {version}, written by a newer '
              f'flax-bench (this one reads schema {form.version})')
    # Every page read once (0.18 s for a 196 MB file): a damaged page is found now, not
    # by a query halfway through, nor by a write into the damaged file.
    problems = conn.execute('PRAGMA quick_check').fetchall()
    if problems != [('ok',)]:
      conn.close()
      # One line: its first problem, without the header line SQLite puts above it.
      found = ' '.join(problems[0][0].replace('*** in database main ***', '').split())
      _damaged(form, path, f'is damaged (SQLite finds: {found})')
    if version < form.version and read_only:
      conn.close()
      _refuse(form, path, f'is a {form.noun} of schema {version}, read-only here: this '
              f'version reads it once it has migrated it to schema {form.version}; make it '
              'writable')
    if version < form.version:
      _migrate(conn, form)
      # WAL stays set in the file, for every later connection. Switching takes a lock
      # that SQLite does not wait for (a second process creating the file at once got
      # 'database is locked' at once, 1 time in 10): retried here.
      _retrying(lambda: conn.execute('PRAGMA journal_mode = WAL'))
  except sqlite3.DatabaseError as e:
    if conn:
      conn.close()  # now, not when collected: SQLite removes the journal files it made
    if 'file is not a database' in str(e):
      _refuse(form, path, f'is not an SQLite database, or is a damaged one: not a flax-bench '
              f'{form.noun}')
    if 'malformed' in str(e):
      _damaged(form, path, f'is damaged ({e})')
    _refuse(form, path, f'cannot be read as a {form.noun} ({e})')
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


def statements(script):
  """The SQL statements of `script`, one by one (executescript would commit the
  migration's transaction before it starts)."""
  statement = ''
  for line in script.splitlines(keepends=True):
    statement += line
    if sqlite3.complete_statement(statement):
      yield statement
      statement = ''


def _migrate(conn, form):
  conn.execute('BEGIN IMMEDIATE')  # a second process migrating at once waits, then sees it done
  try:
    version = conn.execute('PRAGMA user_version').fetchone()[0]
    for step in form.migrations[version:]:
      for statement in statements(step):
        conn.execute(statement)
    conn.execute(f'PRAGMA application_id = {form.application_id}')
    conn.execute(f'PRAGMA user_version = {form.version}')
    conn.execute('COMMIT')
  except BaseException:
    rollback(conn)
    raise


class transaction:  # pylint: disable=invalid-name  (used as a statement: with transaction(c))
  """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK on any error: a write lands whole or not."""

  def __init__(self, conn):
    self.conn = conn

  def __enter__(self):
    if getattr(self.conn, 'read_only', False):
      read_only(self.conn)
    self.conn.execute('BEGIN IMMEDIATE')

  def __exit__(self, kind, *_):
    if kind:
      rollback(self.conn)
    else:
      self.conn.execute('COMMIT')


def read_only(conn):
  """The UserError of a write into a file `connect` opened read-only."""
  _refuse(conn.form, conn.path, 'is read-only here (no write permission): nothing was '
          'written; make it writable')


def rollback(conn):
  """ROLLBACK, unless SQLite already did (a full disk, say): then the error that made it
  is the one to see, not 'cannot rollback'."""
  if conn.in_transaction:
    conn.execute('ROLLBACK')


def insert(conn, table, row):
  """Inserts {column: value} into `table`; returns its rowid."""
  conn.execute(f'INSERT INTO {table} ({", ".join(row)}) VALUES ({", ".join("?" * len(row))})',
               list(row.values()))
  return conn.execute('SELECT last_insert_rowid()').fetchone()[0]
