"""What a command prints while it works: the suite's own log lines, not the libraries'.

By default a command logs INFO from this project's packages (each case as it
starts and ends, progress, the peaks) and WARNING and above from everyone, as
plain `HH:MM:SS message` lines; the libraries' INFO chatter (jax probing for a
TPU, orbax's saves, tfds) is filtered out. An explicit absl `--verbosity` applies
to every library alike, in absl's own format.
"""

import logging as std_logging
import os

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
