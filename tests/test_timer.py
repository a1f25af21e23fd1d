"""The one timer: what is called, what is sampled, and the statistics."""

import itertools
import threading
import time

import jax
import numpy as np
import pytest

from bench.measure import timer
from tests.conftest import build_case


class _Out:
  """A step output that logs when the timer waits for it."""

  def __init__(self, log, k):
    self._log, self._k = log, k

  def block_until_ready(self):
    if threading.current_thread() is threading.main_thread():  # not the completion watcher
      self._log.append(('wait', self._k))
    return self


def _logging_step(log):
  def step(carry, batch):
    log.append(('call', carry, batch))
    return carry + 1, _Out(log, carry)
  return step


@pytest.mark.parametrize('sync', timer.SYNC_MODES)
def test_calls_exactly_warmup_plus_timed_one_batch_each(sync):
  log = []
  carry, _, samples, waits = timer.time_steps(_logging_step(log), 0, iter('abcdefgh'),
                                              warmup_steps=2, timed_steps=5, sync=sync)
  calls = [entry for entry in log if entry[0] == 'call']
  assert carry == 7 and len(calls) == 7 and len(samples) == 5 and len(waits) == 5
  assert [batch for _, _, batch in calls] == list('abcdefg')


class _SimulatedDevice:
  """Runs one step at a time for `step_s` each, in dispatch order, like a device queue."""

  def __init__(self, step_s):
    self.step_s, self.free_at = step_s, 0.0

  def step(self, carry, batch):
    self.free_at = max(time.perf_counter(), self.free_at) + self.step_s
    return carry, _Ready(self.free_at)


class _Ready:
  def __init__(self, at):
    self.at = at

  def block_until_ready(self):
    time.sleep(max(0.0, self.at - time.perf_counter()))
    return self


def _batches_every(period_s):
  """A pipeline that produces one batch per period, whoever asks."""
  next_at = time.perf_counter()
  while True:
    next_at = max(next_at + period_s, time.perf_counter())
    time.sleep(max(0.0, next_at - time.perf_counter()))
    yield 0


@pytest.mark.parametrize('sync', timer.SYNC_MODES)
@pytest.mark.parametrize('step_s, period_s, share', [
    (0.08, 0.1, 0.2),  # the pipeline is slower: the device idles 20 ms of every 100
    (0.06, 0.02, 0.0),  # the pipeline keeps up: no wait
])
def test_data_wait_is_the_time_the_device_idled_for_its_batch(sync, step_s, period_s, share):
  device = _SimulatedDevice(step_s)
  _, _, samples, waits = timer.time_steps(device.step, None, _batches_every(period_s),
                                          warmup_steps=2, timed_steps=12, sync=sync)
  block = timer.summarize_waits(waits, samples)
  assert block['total'] == pytest.approx(sum(waits)) and sum(waits) <= sum(samples)
  assert block['share'] == pytest.approx(share, abs=0.06)


def test_summarize_waits_share_is_total_wait_over_total_step_time():
  block = timer.summarize_waits([0.0, 1.0, 2.0, 1.0], [2.0, 2.0, 4.0, 2.0])
  assert block == {'median': 1.0, 'mean': 1.0, 'p90': pytest.approx(1.7), 'max': 2.0,
                   'total': 4.0, 'share': 0.4}


def test_pipelined_waits_for_previous_step_after_dispatching_next():
  log = []
  timer.time_steps(_logging_step(log), 0, itertools.repeat(None), warmup_steps=1,
                   timed_steps=3)
  timed = [(kind, k) for kind, k, *_ in log][2:]  # after warm-up call 0 and its wait
  assert timed == [('call', 1), ('call', 2), ('wait', 1), ('call', 3), ('wait', 2), ('wait', 3)]


def test_every_step_waits_before_the_next_dispatch():
  log = []
  timer.time_steps(_logging_step(log), 0, itertools.repeat(None), warmup_steps=1,
                   timed_steps=2, sync='every_step')
  assert [(kind, k) for kind, k, *_ in log][2:] == [('call', 1), ('wait', 1), ('call', 2),
                                                     ('wait', 2)]


def test_slow_first_call_is_not_sampled():
  calls = []

  def step(carry, batch):
    calls.append(batch)
    if len(calls) == 1:
      time.sleep(0.3)  # a lazily compiling first call
    return carry, np.zeros(())
  _, _, samples, _ = timer.time_steps(step, None, itertools.repeat(0), warmup_steps=1,
                                      timed_steps=4)
  assert len(samples) == 4 and max(samples) < 0.1


def test_real_compiled_step_excludes_compilation():
  record, step, state, batches = build_case(batch_size=8)
  calls = []

  def counted(s, b):
    calls.append(1)
    return step(s, b)
  state, metrics, samples, _ = timer.time_steps(counted, state, itertools.cycle(batches),
                                                warmup_steps=2, timed_steps=6)
  assert len(calls) == 8 and len(samples) == 6
  assert int(state.step) == 8  # every call was one train step
  assert max(samples) < record['compile_s'] + record['lower_s']
  assert np.isfinite(float(metrics['loss']))


def test_compile_timed_returns_an_executable_and_positive_times():
  compiled, lower_s, compile_s, cache = timer.compile_timed(jax.jit(lambda x: x * 2), np.ones(3))
  assert lower_s > 0 and compile_s > 0
  assert cache in ('miss', 'hit')  # tests/conftest.py turns the compilation cache on
  np.testing.assert_array_equal(compiled(np.ones(3)), 2 * np.ones(3))


def test_summarize_statistics():
  stats = timer.summarize([float(v) for v in range(1, 11)])
  assert stats['median'] == 5.5 and stats['mean'] == 5.5
  assert stats['min'] == 1.0 and stats['max'] == 10.0
  assert stats['p10'] == pytest.approx(1.9) and stats['p90'] == pytest.approx(9.1)
  assert stats['iqr'] == pytest.approx(7.75 - 3.25)
  assert stats['iqr_over_median'] == pytest.approx(4.5 / 5.5)
  assert stats['n'] == 10 and stats['samples'] == [float(v) for v in range(1, 11)]
