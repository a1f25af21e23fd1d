"""Where the results history lives, what git says of its commits, and the recording
of a finished run or A/B (bench/results/history.py is the store).

The default file is ~/.cache/flax-bench/history.db, one per user and machine, not
one beside each workdir: a history is worth keeping across workdirs, clean clones
and worktrees (bench.ab's sides run in fresh ones), and a machine's figures
belong together. $FLAX_BENCH_HISTORY names another; --history=PATH on the
command line wins; --history=off records nothing.
"""

import json
import os
import sqlite3
import sys

from bench.core.errors import UserError
from bench.results import history
from bench.results import sqlite_file
from bench.run.git import output, repository, resolve

ENV = 'FLAX_BENCH_HISTORY'
DEFAULT = os.path.join('~', '.cache', 'flax-bench', 'history.db')
OFF = 'off'


def path(flag=None):
  """The history file to use (expanded), or None for --history=off."""
  chosen = flag or os.environ.get(ENV) or DEFAULT
  return None if chosen == OFF else os.path.expanduser(chosen)


def commit_time(repo, commit):
  """The committer time (unix seconds) of `commit`, or None where git does not know it."""
  if not repo or not commit:
    return None
  found = output(repo, 'show', '-s', '--format=%ct', commit)
  return int(found) if found and found.isdigit() else None


def lineage(repo, rev='HEAD', flag='--rev'):
  """The commits of `rev`'s first-parent line, oldest first: the order along which
  `changes` reads a history (a side branch's commits are on its own line, not on
  main's). None outside a repository; a UserError (naming `flag`) for a revision git
  does not know."""
  if not repo:
    return None
  return output(repo, 'rev-list', '--first-parent', '--reverse',
                resolve(repo, rev, flag)).split()


def expand_range(repo, spec):
  """The commits of a `A..B` range or one revision (git's own syntax), or None."""
  if not repo:
    return None
  listed = output(repo, 'rev-list', spec) if '..' in spec else output(repo, 'rev-parse', spec)
  return set(listed.split()) if listed else None


def record_finished(chosen, data, source, ab=False):
  """`record` at the end of a run or an A/B, whose own outputs are written by then: a
  history that fails now (a full disk) costs a warning line, not the run's result."""
  try:
    record(chosen, data, source=source, ab=ab)
  except (UserError, sqlite3.Error) as e:
    print(f'warning: not recorded in the history {chosen}: {e}', file=sys.stderr)


def check(flag=None):
  """Opens (creating or migrating) the history a run will record into, before the run
  starts: a bad file is the user's error up front. Returns its path or None (off)."""
  chosen = path(flag)
  if chosen:
    conn = history.connect(chosen)
    conn.close()
    if conn.read_only:  # a run would end without its record
      sqlite_file.read_only(conn)
  return chosen


def record_file(chosen, path):
  """`record` of the report.json or ab.json at `path` (`history add`); a UserError for a
  file that is not JSON."""
  try:
    with open(path, encoding='utf-8') as f:
      data = json.load(f)
  except (OSError, ValueError) as e:
    raise UserError(f'{path}: cannot read it as JSON ({getattr(e, "strerror", None) or e}); '
                    'pass a report.json or an ab.json') from None
  ab = isinstance(data, dict) and 'rounds' in data and 'base' in data  # an ab.json
  return record(chosen, data, source=os.path.abspath(path), ab=ab)


def record(chosen, data, source=None, ab=False):
  """Records a finished run's report (or an A/B's result) into the history at `chosen`;
  returns the run's id (None if it was there already). A UserError for a file it
  cannot read as either."""
  repo = repository(os.path.dirname(os.path.abspath(__file__)))
  side = (data.get('new') if ab else data.get('environment')) if isinstance(data, dict) else None
  commit = side.get('commit' if ab else 'git_commit') if isinstance(side, dict) else None
  # Checked before the file is opened: a refused file leaves no new history behind.
  (history.check_ab if ab else history.check_report)(data, source)
  conn = history.connect(chosen)
  try:
    write = history.record_ab if ab else history.record_report
    return write(conn, data, source=source, commit_time=commit_time(repo, commit))
  finally:
    conn.close()
