"""Atomic file writes: a killed run never leaves a half-written output.

A write goes to `.NAME.PID.RANDOM.tmp` beside NAME first (PID: the writing
process). A killed writer leaves that file behind; `sweep` removes such files
once their process is gone.
"""

import contextlib
import os
import re
import shutil
import tempfile

# An atomic write's temporary file: '.' NAME '.' PID '.' mkstemp's 8 random characters '.tmp'.
_TEMP = re.compile(r'\..+\.(\d+)\.[a-z0-9_]{8}\.tmp')


@contextlib.contextmanager
def atomic_open(path, mode='w'):
  """A file object for `path` ('w' text or 'wb' binary) that appears there, complete,
  only when the block ends without an exception: written to a temporary file in the
  same directory, synced, then renamed over `path`."""
  directory = os.path.dirname(os.path.abspath(path))
  fd, tmp = tempfile.mkstemp(prefix=f'.{os.path.basename(path)}.{os.getpid()}.', suffix='.tmp',
                             dir=directory)
  # mkstemp makes the file private (0600); outputs get the usual umask-based mode.
  umask = os.umask(0)
  os.umask(umask)
  os.chmod(tmp, 0o666 & ~umask)
  try:
    with os.fdopen(fd, mode, **({} if 'b' in mode else {'encoding': 'utf-8'})) as f:
      yield f
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException:
    os.unlink(tmp)
    raise


def atomic_write_text(path, text):
  """Writes `text` to `path` atomically (see `atomic_open`)."""
  with atomic_open(path) as f:
    f.write(text)


def replace_dir(fresh, path):
  """Moves the complete directory `fresh` to `path`, replacing what is there. A
  directory cannot be renamed over a non-empty one, so the old one is first moved
  aside: a kill in between leaves `path` missing (and PATH.old), never mixed."""
  old = f'{path}.old'
  if os.path.exists(path):
    shutil.rmtree(old, ignore_errors=True)
    os.replace(path, old)
  os.replace(fresh, path)
  shutil.rmtree(old, ignore_errors=True)


def running(pid):
  """Whether process `pid` exists (another user's too; a reused pid counts as running),
  a zombie no one has reaped yet not counted: it ended."""
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:  # another user's process
    return True
  try:
    with open(f'/proc/{pid}/stat', encoding='ascii') as f:
      return f.read().rsplit(')', 1)[1].split()[0] != 'Z'
  except (OSError, IndexError):  # no /proc (macOS), or it ended meanwhile
    return True


def sweep(directory):
  """Removes the temporary files of atomic writes in `directory` (not below) whose
  writer is gone: ours by their name (.NAME.PID.RANDOM.tmp), stale because process
  PID no longer runs (a running one may be writing; a reused PID only keeps a stale
  file). Returns the names removed."""
  removed = []
  for name in os.listdir(directory):
    found = _TEMP.fullmatch(name)
    if found and not running(int(found.group(1))):
      with contextlib.suppress(FileNotFoundError):
        os.unlink(os.path.join(directory, name))
        removed.append(name)
  return removed
