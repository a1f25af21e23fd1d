"""SIGTERM and SIGINT: a preemption checkpoint, then a clean exit.

A cloud VM being preempted gets SIGTERM and a grace period; Ctrl-C sends
SIGINT. Inside a training loop (`deferred()`), the first such signal is only
recorded: the loop finishes its step, saves a checkpoint and raises
`Interrupted`, and the CLI exits with 128 + the signal's number (the shell's
convention, so a job scheduler sees why the run ended). Anywhere else, or on a
second signal, `Interrupted` is raised at once: there is no training state to
lose.

With several processes (a multi-host run) the processes must stop together:
one that saved and left while the others ran their next step would leave them
waiting in a collective for ever. There a signal is acted on where every process
asks (`agreed`: between training chunks and between cases), and all stop if
any of them got one. Within training that is the next epoch end or step-interval
save, not the next step.

Tests drive the same paths at exact steps through the BENCH_FAULT environment
variable (`fault`), which is empty in normal runs.
"""

import contextlib
import os
import signal
import threading

from absl import logging
import jax
from jax.experimental import multihost_utils
import numpy as np

SIGNALS = (signal.SIGTERM, signal.SIGINT)
FAULT_ENV = 'BENCH_FAULT'
# BENCH_FAULT=WHAT@STEP: what happens to this process when training step STEP
# has been dispatched ('kill', 'term') or its checkpoint save has started
# ('kill_in_save'). SIGKILL leaves whatever was on disk at that moment.
_FAULTS = {'kill': ('step', signal.SIGKILL), 'term': ('step', signal.SIGTERM),
           'kill_in_save': ('save', signal.SIGKILL)}


class Interrupted(BaseException):
  """The run was stopped by a signal. A BaseException, as KeyboardInterrupt is: a
  suite's per-case `except Exception` must not record it as a failed case."""

  def __init__(self, signum, message=''):
    self.signum = signum
    super().__init__(message or f'interrupted by {signal.Signals(signum).name}')


_state = {'deferring': False, 'requested': None}


def _handle(signum, frame):
  del frame
  # Several processes always defer: they stop together, between cases at the latest.
  if (_state['deferring'] or jax.process_count() > 1) and _state['requested'] is None:
    _state['requested'] = signum
    logging.warning('%s received: %s, then exiting (send it again to exit at once)',
                    signal.Signals(signum).name,
                    'saving a checkpoint after the current step' if jax.process_count() == 1
                    else 'stopping where every process agrees')
    return
  raise Interrupted(signum)


@contextlib.contextmanager
def handlers():
  """Installs the handlers for the block, restoring the old ones after. Python lets
  only the main thread set them: elsewhere (a suite run from a notebook's worker
  thread) signals keep their usual effect."""
  _state['requested'] = None
  if threading.current_thread() is not threading.main_thread():
    yield
    return
  previous = {s: signal.signal(s, _handle) for s in SIGNALS}
  try:
    yield
  finally:
    for s, handler in previous.items():
      signal.signal(s, handler)


@contextlib.contextmanager
def deferred():
  """Within the block, a first signal is recorded (see `requested`), not raised."""
  _state['deferring'] = True
  try:
    yield
  finally:
    _state['deferring'] = False


def requested():
  """The number of the signal received and not yet acted on, or None."""
  return _state['requested']


def local_stop():
  """What a training loop may poll between steps (`requested`), or None with several
  processes, which must all run the same steps (see `agreed`)."""
  return requested if jax.process_count() == 1 else None


def agreed():
  """The signal recorded here or, with several processes, in any of them (a
  collective: every process must call it at the same point); None if none."""
  mine = _state['requested']
  if jax.process_count() == 1:
    return mine
  found = int(np.max(multihost_utils.process_allgather(np.int32(mine or 0))))
  return found or None


def check():
  """Raises Interrupted if a signal was recorded (in any process): between cases,
  where nothing is lost."""
  signum = agreed()
  if signum is not None:
    raise Interrupted(signum)


def _planned_fault(spec):
  """(point, step, signal) of a BENCH_FAULT value, or None."""
  if not spec:
    return None
  what, at = spec.split('@')
  point, signum = _FAULTS[what]
  return point, int(at), signum


# Read once: `fault` is called on every training step.
_FAULT = _planned_fault(os.environ.get(FAULT_ENV))


def fault(point, step):
  """Sends this process the signal BENCH_FAULT names for `point` ('step' or 'save') at
  `step`, if any."""
  if _FAULT is not None and _FAULT[:2] == (point, step):
    os.kill(os.getpid(), _FAULT[2])
