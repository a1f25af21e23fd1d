"""The step peak of bench/measure/host_memory.py: what was allocated and touched
between start and stop, over what the process held without it."""

import os

import numpy as np
import pytest

from bench.measure import host_memory

pytestmark = pytest.mark.skipif(not os.access('/proc/self/clear_refs', os.W_OK),
                                reason='the kernel offers no reset of the resident peak here')
MIB = 2 ** 20


def test_the_peak_of_a_phase_and_not_of_what_came_before():
  earlier = np.ones(300 * MIB // 8)  # a larger peak before the case: reset, not counted
  del earlier
  peak = host_memory.StepPeak()
  held = np.ones(40 * MIB // 8)  # the case's state, built before its steps ...
  peak.start()
  temporary = np.ones(120 * MIB // 8)  # ... and what one of its steps needs at once
  del temporary
  peak.stop()
  del held
  measured = peak.bytes() / MIB
  # 160 MiB of touched pages, give or take a few of the interpreter's own.
  assert 158 <= measured < 175, measured


def test_a_phase_never_started_or_stopped_is_unmeasured():
  peak = host_memory.StepPeak()
  assert peak.bytes() is None
  peak.start()
  assert peak.bytes() is None


def test_a_reset_the_kernel_ignores_is_no_measurement(monkeypatch):
  status = host_memory._status()
  # The write is accepted, but the mark stays far above the resident size.
  monkeypatch.setattr(host_memory, '_status', lambda: {**status, 'VmHWM': status['VmRSS'] + MIB * 64})
  peak = host_memory.StepPeak()
  peak.start()
  peak.stop()
  assert peak.bytes() is None
