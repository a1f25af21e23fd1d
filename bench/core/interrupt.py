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

A Python signal handler runs only when the main thread runs Python: one stuck in
native code (XLA:CPU waiting for ever on an allocation it cannot make, a long
compilation) never sees it. So `handlers()` also starts a watcher thread, woken
by every signal through signal.set_wakeup_fd (written by the C-level handler,
whatever the main thread is doing). If the main thread has not raised
`Interrupted` within the grace period, the watcher prints the line the CLI would
and ends the process with 128 + the signal's number. The grace: REACT_S when
nothing is deferred (Python acts on a signal within milliseconds, so a main thread
that has not after seconds is stuck); DEFER_S inside training, which finishes its
step and saves a preemption checkpoint first (an orbax save of a ResNet-50 train
state takes seconds; schedulers send SIGKILL 30 s to 2 minutes after SIGTERM);
AGAIN_S after a second signal, which asks to exit at once. A checkpoint cut short
is no loss: a rerun resumes from the last complete one. Once the main thread has
raised `Interrupted`, the process has UNWIND_S more to leave the block: one still
inside had the exception caught somewhere below the CLI, and is ended the same way.

Tests drive the same paths at exact steps through the BENCH_FAULT environment
variable (`fault`), which is empty in normal runs.
"""

import contextlib
import os
import select
import signal
import socket
import threading
import time

from absl import logging
import jax
from jax.experimental import multihost_utils
import numpy as np

SIGNALS = (signal.SIGTERM, signal.SIGINT)
FAULT_ENV = 'BENCH_FAULT'
# BENCH_FAULT=WHAT@STEP: what happens to this process when training step STEP
# has been dispatched ('kill', 'term') or its checkpoint save has started
# ('kill_in_save'). SIGKILL leaves whatever was on disk at that moment.
# 'hang' blocks the main thread in native code before case STEP (1-based) of a
# suite, as XLA:CPU does on an allocation it cannot make.
_FAULTS = {'kill': ('step', signal.SIGKILL), 'term': ('step', signal.SIGTERM),
           'kill_in_save': ('save', signal.SIGKILL), 'hang': ('case', None)}
# Seconds the main thread has to raise Interrupted after a signal (module docstring).
REACT_S, DEFER_S, AGAIN_S = 5.0, 60.0, 1.0
# Seconds the process has, once Interrupted was raised, to leave the handlers' block:
# unwinding writes nothing long (reports are written after each case, a preemption
# checkpoint before the raise), so a process still inside after this swallowed it
# (a library's `except BaseException` around a native wait).
UNWIND_S = 30.0
# The watcher reads a signal up to this long after its handler may have run (the
# GIL switch interval is 5 ms): an Interrupted raised since then answers it.
_SLACK_S = 1.0


class Interrupted(BaseException):
  """The run was stopped by a signal. A BaseException, as KeyboardInterrupt is: a
  suite's per-case `except Exception` must not record it as a failed case."""

  def __init__(self, signum, message=''):
    self.signum = signum
    _state['raised_at'] = time.monotonic()  # the main thread acts on it: the watcher stands down
    super().__init__(message or f'interrupted by {signal.Signals(signum).name}')


_state = {'deferring': False, 'requested': None, 'raised_at': -float('inf')}


def _defers():
  """Whether a first signal is only recorded now: inside training, or always with
  several processes, which stop together (between cases at the latest)."""
  return _state['deferring'] or jax.process_count() > 1


def _end_now(signum, grace, raised=False):
  """The line the CLI prints for a signal, then the exit: from the watcher, whose
  main thread did not act within `grace` seconds (or, `raised`, acted but did not
  leave)."""
  why = ('raised Interrupted but did not end: something caught it' if raised else
         'busy in native code, where Python cannot act on a signal')
  os.write(2, (f'interrupted: {signal.Signals(signum).name}, and the run did not stop within '
               f'{grace:g} s ({why}): ended at once\n').encode())
  os._exit(128 + signum)  # pylint: disable=protected-access  (no cleanup can run: it is stuck)


def _watch(reader):
  """The watcher thread: reads the signals' numbers from `reader` (the wakeup fd's other
  end) until a 0 byte, and ends the process when the main thread does not raise
  Interrupted in time (module docstring)."""
  armed = None  # (signal, when it was read, deadline, grace, whether Interrupted was raised)
  while True:
    timeout = None if armed is None else max(0.0, armed[2] - time.monotonic())
    if select.select([reader], [], [], timeout)[0]:
      data = reader.recv(64)
      if not data or 0 in data:
        return
      now = time.monotonic()
      for signum in (b for b in data if b in SIGNALS):
        if armed is None:
          grace = DEFER_S if _defers() else REACT_S
          armed = (signum, now, now + grace, grace, False)
        else:  # again: exit at once
          armed = (signum, armed[1], min(armed[2], now + AGAIN_S), AGAIN_S, armed[4])
    elif armed is not None:
      if armed[4] or _state['raised_at'] < armed[1] - _SLACK_S:
        _end_now(armed[0], armed[3], armed[4])
      # The main thread acted: it has UNWIND_S to leave the block (the \0 ends this loop).
      armed = (armed[0], armed[1], time.monotonic() + UNWIND_S, UNWIND_S, True)


@contextlib.contextmanager
def _watcher():
  """The watcher thread and the wakeup fd that wakes it, for the block."""
  reader, writer = socket.socketpair()
  writer.setblocking(False)
  previous = signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
  thread = threading.Thread(target=_watch, args=(reader,), name='signal-watcher', daemon=True)
  thread.start()
  try:
    yield
  finally:
    signal.set_wakeup_fd(previous)
    writer.send(b'\0')
    thread.join()
    reader.close()
    writer.close()


def _handle(signum, frame):
  del frame
  if _defers() and _state['requested'] is None:
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
    with _watcher():
      yield
  finally:
    for s, handler in previous.items():
      signal.signal(s, handler)


def _raise(signum, frame):
  del frame
  raise Interrupted(signum)


@contextlib.contextmanager
def raising():
  """For a process that runs no jax (bench.ab): SIGTERM and SIGINT raise Interrupted
  at once within the block, old handlers restored after."""
  previous = {s: signal.signal(s, _raise) for s in SIGNALS}
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
  """Sends this process the signal BENCH_FAULT names for `point` ('step', 'save' or
  'case') at `step`, if any, or hangs in native code."""
  if _FAULT is None or _FAULT[:2] != (point, step):
    return
  if _FAULT[2] is not None:
    os.kill(os.getpid(), _FAULT[2])
    return
  # An XLA loop that never ends, waited for in C++ as a stuck allocation is.
  forever = jax.jit(lambda x: jax.lax.while_loop(lambda c: c >= 0, lambda c: c + 1.0, x))
  compiled = forever.lower(0.0).compile()
  os.write(2, b'BENCH_FAULT: hanging in native code\n')
  compiled(0.0).block_until_ready()
