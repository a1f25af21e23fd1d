"""Run by tests/test_parallel.py in a subprocess with 8 fake CPU devices: trains
each case (a JSON list of config fields) for a few steps on 1 device, on 8 with
jit and on 8 with pmap, from the same initial state and batches, and prints a
JSON line per case with the largest differences of the parameters, BatchNorm
statistics and losses from the 1-device run."""

import itertools
import json
import sys

import jax
import numpy as np

from bench.core import parallel
from bench.results import case_record
from bench.workload import build
from tests.conftest import case_config


def train(fields, parallel_, num_devices, steps):
  case = case_config(**fields, parallel=parallel_, num_devices=num_devices)
  mesh = parallel.mesh(num_devices)
  step, state, batches, _, built = build.build(case, mesh)
  record = case_record.assemble('check', {}, mesh.size, build.per_device_batch(case, mesh),
                                built=built)
  losses = []
  for batch in itertools.islice(batches, steps):
    state, metrics = step(state, batch)
    losses.append(metrics['loss'])
  return jax.device_get({'params': state.params, 'batch_stats': state.batch_stats}), [
      float(loss) for loss in losses], record


def largest_difference(a, b):
  return max(float(np.max(np.abs(x - y))) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def check(fields, steps=3):
  one, one_losses, _ = train(fields, 'jit', 1, steps)
  result = {'devices': jax.device_count(), 'losses': one_losses,
            'batch_stats': bool(jax.tree.leaves(one['batch_stats']))}
  for strategy in parallel.STRATEGIES:
    variables, losses, record = train(fields, strategy, 8, steps)
    result[strategy] = {
        'params': largest_difference(one['params'], variables['params']),
        'batch_stats': (largest_difference(one['batch_stats'], variables['batch_stats'])
                        if result['batch_stats'] else None),
        'losses': float(np.max(np.abs(np.subtract(one_losses, losses)))),
        'collective_ops': record['xla']['collective_ops'],
        'collective_bytes': record['xla']['collective_bytes'],
    }
  print(json.dumps(result))


if __name__ == '__main__':
  for case_fields in json.loads(sys.argv[1]):
    check(case_fields)
