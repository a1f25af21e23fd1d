"""The one timer: what is called, what is sampled, and the statistics."""

import itertools
import time

import jax
import numpy as np
import pytest

from bench import timer
from tests.conftest import build_case


class _Out:
  """A step output that logs when the timer waits for it."""

  def __init__(self, log, k):
    self._log, self._k = log, k

  def block_until_ready(self):
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


def test_data_wait_is_the_time_in_next_and_part_of_the_step_time():
  def slow_batches():
    while True:
      time.sleep(0.05)
      yield 0

  _, _, samples, waits = timer.time_steps(lambda c, b: (c, np.zeros(())), None, slow_batches(),
                                          warmup_steps=1, timed_steps=4)
  assert all(0.05 <= w < 0.1 for w in waits)
  assert sum(waits) <= sum(samples)  # waits happen inside the timed loop
  block = timer.summarize_waits(waits, samples)
  assert block['total'] == pytest.approx(sum(waits))
  assert 0.5 < block['share'] <= 1.0


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
  compiled, lower_s, compile_s = timer.compile_timed(jax.jit(lambda x: x * 2), np.ones(3))
  assert lower_s > 0 and compile_s > 0
  np.testing.assert_array_equal(compiled(np.ones(3)), 2 * np.ones(3))


def test_summarize_statistics():
  stats = timer.summarize([float(v) for v in range(1, 11)])
  assert stats['median'] == 5.5 and stats['mean'] == 5.5
  assert stats['min'] == 1.0 and stats['max'] == 10.0
  assert stats['p10'] == pytest.approx(1.9) and stats['p90'] == pytest.approx(9.1)
  assert stats['iqr'] == pytest.approx(7.75 - 3.25)
  assert stats['iqr_over_median'] == pytest.approx(4.5 / 5.5)
  assert stats['n'] == 10 and stats['samples'] == [float(v) for v in range(1, 11)]
