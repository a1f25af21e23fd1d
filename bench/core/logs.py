"""What a command prints while it works: the suite's own log lines, not the libraries'.

By default a command logs INFO from this project's packages (each case as it
starts and ends, progress, the peaks) and WARNING and above from everyone, as
plain `HH:MM:SS message` lines; the libraries' INFO chatter (jax probing for a
TPU, orbax's saves, tfds) is filtered out. An explicit `--verbosity` (absl's
levels) applies to every library alike, in absl's own format. The modules log
through absl.logging, whose records reach the one stderr handler set here on the
root logger (no absl flags are parsed: the command lines use argparse).
"""

import importlib.abc
import importlib.util
import logging as std_logging
import os
import re
import sys
import tempfile

from absl import logging
from absl.logging import converter

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


class _Stderr(std_logging.Handler):
  """Writes each record to the sys.stderr of the moment (a test may have replaced it)."""

  def emit(self, record):
    try:
      sys.stderr.write(self.format(record) + '\n')
    except Exception:  # pylint: disable=broad-except  (logging's own convention)
      self.handleError(record)


def add_verbosity(arguments):
  """--verbosity (-v) on the argparse parser `arguments`: `configure`'s `verbosity`."""
  arguments.add_argument('--verbosity', '-v', type=int, metavar='N',
                         help="every library's log lines at absl's level N, in absl's format "
                         '(1 debug, 0 info, -1 warning); default: the suite\'s own lines and '
                         "every library's warnings")


def configure(verbosity=None):
  """INFO from the suite, WARNING and above from everyone, as plain lines; a
  `verbosity` (absl's levels: 1 = debug, 0 = info, -1 = warning, -2 = error) applies
  to every library alike, in absl's own format. Called again, it replaces its handler."""
  root = std_logging.getLogger()
  # Ours from an earlier call, absl's, and the one absl.logging adds on a first record
  # logged before this (logging.basicConfig): each would print every line again.
  for old in root.handlers[:]:
    if isinstance(old, (_Stderr, logging.ABSLHandler)) or (
        type(old) is std_logging.StreamHandler and old.stream in (sys.stderr, sys.__stderr__)):
      root.removeHandler(old)
  handler = _Stderr()
  root.addHandler(handler)
  logging.get_absl_logger().setLevel(std_logging.NOTSET)  # absl's records go by the root's
  if verbosity is not None:
    root.setLevel(converter.absl_to_standard(verbosity))  # above 1: DEBUG - (verbosity - 1)
    handler.setFormatter(logging.PythonFormatter())
    return
  root.setLevel(std_logging.INFO)
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
    self._finding = False

  def find_spec(self, name, path=None, target=None):
    # Every lookup until the import, not only the first: a library may only ask whether
    # the package is there (etils: importlib.util.find_spec('tensorflow')) long before.
    # Once imported, the package is in sys.modules and no finder is asked again.
    if name not in self._names or self._finding:
      return None
    self._finding = True
    try:
      spec = importlib.util.find_spec(name)  # by the other finders: this one skips it now
    finally:
      self._finding = False
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
