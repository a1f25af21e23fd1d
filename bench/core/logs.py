"""What a command prints while it works: the suite's own log lines, not the libraries'.

By default a command logs INFO from this project's packages (each case as it
starts and ends, progress, the peaks) and WARNING and above from everyone, as
plain `HH:MM:SS message` lines; the libraries' INFO chatter (jax probing for a
TPU, orbax's saves, tfds) is filtered out. An explicit absl `--verbosity` applies
to every library alike, in absl's own format.
"""

import importlib.abc
import importlib.util
import logging as std_logging
import os
import re
import sys
import tempfile

from absl import flags
from absl import logging

# The project's packages, whose INFO lines are the suite's own output
# (this file is bench/core/logs.py under the repository's root).
_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_OWN_PACKAGES = tuple(os.path.join(_ROOT, package) + os.sep
                      for package in ('bench', 'models', 'input_pipeline', 'configs'))


def _own(record):
  return record.pathname.startswith(_OWN_PACKAGES)


def _quiet(record):
  """Default logging: the suite's own lines, and every library's warnings and errors,
  but not the libraries' INFO chatter (jax's backend probing, orbax's saves, tfds)."""
  return record.levelno >= std_logging.WARNING or _own(record)


class _Plain(std_logging.Formatter):
  """Default log lines: `HH:MM:SS message`; a warning or an error says so, and names
  the library it comes from when that is not the suite."""

  def __init__(self):
    super().__init__('%(asctime)s %(message)s', datefmt='%H:%M:%S')

  def format(self, record):
    line = super().format(record)
    if record.levelno < std_logging.WARNING:
      return line
    clock, message = line.split(' ', 1)
    source = '' if _own(record) else f' ({record.name})'
    return f'{clock} {record.levelname.lower()}{source}: {message}'


def configure():
  """INFO from the suite, WARNING and above from everyone, as plain lines; an explicit
  --verbosity (absl's flag: 1 = debug, 0 = info, -1 = warning) applies to every
  library alike, in absl's own format."""
  handler = logging.get_absl_handler()
  if flags.FLAGS['verbosity'].present:
    handler.removeFilter(_quiet)
    handler.setFormatter(logging.PythonFormatter())
    return
  logging.set_verbosity(logging.INFO)
  if _quiet not in handler.filters:
    handler.addFilter(_quiet)
  handler.setFormatter(_Plain())
  # TensorFlow's C++ start-up notices (oneDNN, CPU features) are INFO too; its
  # warnings still show. Read when TensorFlow is imported, so set before that.
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '1')
  if not any(isinstance(f, QuietNativeImport) for f in sys.meta_path):
    sys.meta_path.insert(0, QuietNativeImport(('tensorflow',)))


# A C++ absl log line at INFO (`I1205 13:14:05.123456 ...`, or `I0000 00:00:<epoch seconds>`
# before absl is initialised), and absl's notice that precedes the first line of a process.
_NATIVE_INFO = re.compile(r'(I\d{4} \d\d:\d\d:\d+\.\d+ |WARNING: All log messages before '
                          r'absl::InitializeLog\(\) is called are written to STDERR)')


class QuietNativeImport(importlib.abc.MetaPathFinder):
  """Imports the packages `names` with file descriptor 2 caught, then writes back all
  they printed but absl's C++ INFO lines.

  TensorFlow 2.21 prints its start-up notices ('oneDNN custom operations are on',
  on CPUs where oneDNN is) through absl's C++ logging before anything can set its
  level: TF_CPP_MIN_LOG_LEVEL does not reach them (tensorflow/tensorflow#100442).
  Installed by `configure` for default logging only; each package's first import
  is caught once, wherever it happens, so commands that never read images never
  import TensorFlow for it.
  """

  def __init__(self, names):
    self._names = set(names)

  def find_spec(self, name, path=None, target=None):
    if name not in self._names:
      return None
    self._names.discard(name)
    spec = importlib.util.find_spec(name)  # by the other finders: this one skips it now
    if spec is not None and spec.loader is not None:
      spec.loader = _QuietLoader(spec.loader)
    return spec


class _QuietLoader(importlib.abc.Loader):

  def __init__(self, loader):
    self._loader = loader

  def create_module(self, spec):
    return self._loader.create_module(spec)

  def exec_module(self, module):
    # A file, not a pipe: whatever the import prints cannot fill a buffer and block it.
    with tempfile.TemporaryFile() as caught:
      sys.stderr.flush()
      saved = os.dup(2)
      os.dup2(caught.fileno(), 2)
      try:
        self._loader.exec_module(module)
      finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        caught.seek(0)
        kept = [line for line in caught.read().decode(errors='replace').splitlines(True)
                if not _NATIVE_INFO.match(line)]
        sys.stderr.write(''.join(kept))
