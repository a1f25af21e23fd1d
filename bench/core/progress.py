"""Progress of long work: a tqdm bar with ETA on a terminal, periodic log lines otherwise."""

import sys
import time

from absl import logging
import tqdm


class Progress:
  """Counts steps of one phase. `update` is cheap: it is called inside the timed loop."""

  def __init__(self, total, desc, log_every_s=10.0):
    self._total, self._desc, self._log_every_s = total, desc, log_every_s
    self._bar = None
    if sys.stderr.isatty():
      self._bar = tqdm.tqdm(total=total, desc=desc, unit='step', leave=False, file=sys.stderr)
    self._start = self._last_log = time.monotonic()

  def update(self, done):
    """Sets the number of completed steps to `done`."""
    if self._bar is not None:
      self._bar.update(done - self._bar.n)
      return
    now = time.monotonic()
    if now - self._last_log >= self._log_every_s:
      self._last_log = now
      eta = (now - self._start) / done * (self._total - done)
      logging.info('%s: %d/%d steps, ETA %.0f s', self._desc, done, self._total, eta)

  def close(self):
    if self._bar is not None:
      self._bar.close()
