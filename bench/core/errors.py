"""The one exception type for mistakes a user can fix, and how a CLI ends on one:
one line, exit status 2 (flags that argparse reads included)."""

import argparse
import math
import sys


class UserError(Exception):
  """A problem in the user's config, flags or paths.

  The CLI prints its message as one line and exits with status 2; the message
  names the problem and the fix. Bugs raise anything else and keep tracebacks.
  """


def first_line(error):
  """An exception's message cut to its first line (libraries' messages can run to
  many), for quoting inside a one-line error."""
  return (str(error).splitlines() or [type(error).__name__])[0]


def fail(message):
  """Ends the program for a user error: one line on stderr, exit status 2."""
  print(f'error: {message}', file=sys.stderr)
  sys.exit(2)


class ArgumentParser(argparse.ArgumentParser):
  """argparse for every command line, whose usage errors are one line and exit 2."""

  def error(self, message):
    fail(f'{message}; see python -m {self.prog} --help')


def number(valid, hint):
  """An argparse type: a number, or a percentage with '%', that `valid` accepts."""
  def parse(text):
    try:
      value = float(text[:-1]) / 100 if text.endswith('%') else float(text)
    except ValueError:
      value = math.nan  # valid() rejects it
    if not valid(value):
      raise argparse.ArgumentTypeError(f'{text!r} is not {hint}')
    return value
  return parse


def integer(minimum):
  """An argparse type: an integer >= `minimum`."""
  def parse(text):
    try:
      value = int(text)
    except ValueError:
      value = minimum - 1
    if value < minimum:
      raise argparse.ArgumentTypeError(f'{text!r} is not an integer >= {minimum}')
    return value
  return parse


# --threshold of bench.compare and bench.ab.
THRESHOLD = number(lambda v: 0 <= v < math.inf, 'a fraction >= 0: give e.g. 10% or 0.1')
