"""A case's train step in Keras, timed in a process of its own (bench/keras_peer.py,
bench/workload/keras_twin.py), interleaved with ours: what `flax-bench peer` runs.

The Keras process gets the case as a spec, JSON on its standard input: the case's
model fields as its flax module holds them (defaults included, so the twin builds
exactly the model this harness builds), its parsed head, batch, image shape,
classes, dtype and the optimizer's fields. It imports no JAX, and this process
(which does) no Keras.
"""

import dataclasses
import json
import math
import os
import subprocess
import sys
import time
import warnings

import numpy as np

from bench.core import stats
from bench.core.errors import UserError
from bench.measure import timer
from bench.results import ab_stats
from bench.run import ab
from bench.run import predict
from bench.run import suite
from bench.workload import build
from bench.workload import twins
from models import layers

# The case fields the twin reads besides the model's (keras_twin: the step it times).
_CASE_FIELDS = ('batch_size', 'num_classes', 'dtype', 'optimizer', 'learning_rate', 'momentum',
                'nesterov', 'benchmark', 'loss', 'transfer', 'weight_decay', 'grad_clip_norm',
                'schedule')


def spec(case, dataset=None):
  """The Keras process's spec of `case` (a case config); `dataset` the case's own where
  `case` is predict.step_cases' (which compiles every case on synthetic batches)."""
  model = build.model_of(case)
  fields = {}
  for field in dataclasses.fields(model):
    value = getattr(model, field.name)
    if isinstance(value, (bool, int, float, str)) or (
        isinstance(value, (tuple, list)) and all(isinstance(v, (int, float)) for v in value)):
      fields[field.name] = list(value) if isinstance(value, (tuple, list)) else value
  fields.pop('name', None)
  return {'model': case.model, 'fields': fields, 'image_shape': list(case.image_shape),
          'head': [list(layer) for layer in layers.parse_head(fields.get('head', ''))],
          **{key: case[key] for key in _CASE_FIELDS}, 'dataset': dataset or case.dataset}


def time_in_keras(case_spec, warmup_steps, timed_steps, timeout_s=1800):
  """keras_twin.time_train_steps of `case_spec` in a fresh `python -m bench.keras_peer`
  process: its result dict, or {'error': its last line} where it failed."""
  request = {'spec': case_spec, 'warmup_steps': warmup_steps, 'timed_steps': timed_steps}
  env = {**os.environ, 'KERAS_BACKEND': 'tensorflow', 'TF_CPP_MIN_LOG_LEVEL': '2'}
  done = subprocess.run([sys.executable, '-m', 'bench.keras_peer'], input=json.dumps(request),
                        capture_output=True, text=True, env=env, timeout=timeout_s, check=False)
  if done.returncode:
    lines = done.stderr.strip().splitlines() or [f'exit status {done.returncode}']
    return {'error': lines[-1]}
  return json.loads(done.stdout)


def peer(config_file, config, overrides, rounds, workdir, seed, on_round=lambda text: None):
  """Each case of the config with a Keras twin, timed in both frameworks in `rounds`
  interleaved rounds: per round our side (the config's cases in one fresh
  `bench.main` process, as an A/B's side: bench/run/ab.py run_side) and the Keras
  side (each case in a fresh Keras process, its own warm-up and timed step counts),
  in ABBA/BAAB order (ab_stats.orders). Returns [row] of every case with a step:
  {name, model, batch_size, why (no twin), ours_s, keras_s (medians over the rounds
  of each round's median), ratio (ours/Keras: Hodges-Lehmann over the rounds' log
  ratios), ci_low, ci_high (its exact signed-rank 95% interval), rounds, params,
  jit_compile, keras, ours_iqr_over_median, keras_iqr_over_median}. `on_round(text)`
  hears each round as it ends."""
  cases = predict.step_cases(config)
  datasets = {name: case.dataset for name, case in suite.expand(config).cases}
  specs = {name: spec(case, datasets[name]) for name, case in cases}
  why = {name: twins.missing(case_spec) for name, case_spec in specs.items()}
  twinned = [name for name, _ in cases if not why[name]]
  if not twinned:
    raise UserError('no case of the config has a Keras twin: '
                    + '; '.join(f'{name}: {why[name]}' for name, _ in cases))
  steps = {name: (case.warmup_steps, case.timed_steps) for name, case in cases}
  repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  for sub in ('runs', 'logs'):
    os.makedirs(os.path.join(workdir, sub), exist_ok=True)
  ours = [f'--config.select={",".join(twinned)}', *overrides]
  times = {side: {name: [] for name in twinned} for side in ab_stats.SIDES}
  spread = {side: {name: [] for name in twinned} for side in ab_stats.SIDES}
  first = {}
  with warnings.catch_warnings():
    # step_cases started JAX here, whose at-fork hook warns of each subprocess: these
    # fork and exec at once (subprocess's fork_exec), with no JAX thread in the child.
    warnings.filterwarnings('ignore', 'os.fork', RuntimeWarning)
    for index, order in enumerate(ab_stats.orders(seed, rounds), 1):
      took = {}
      for side in order:
        t0 = time.perf_counter()
        if side == _OURS:
          report, _ = ab.run_side('jax', index, repo, os.path.abspath(config_file), ours, workdir)
          step = {c['name']: c['step_time_s'] for c in report['cases'] if c['status'] == 'ok'}
        else:
          step = _keras_side(index, {name: specs[name] for name in twinned}, steps, first)
        for name in twinned:
          if name not in step:  # it failed in our run: its report says why
            raise ab.SideFailed(f'our side did not time {name} in round {index}', 1,
                                os.path.join(workdir, 'runs', f'{index:03d}-jax.json'))
          times[side][name].append(step[name]['median'])
          spread[side][name].append(step[name]['iqr_over_median'])
        took[side] = time.perf_counter() - t0
      on_round(f'round {index}: ' + ', '.join(f'{_LABEL[side]} {took[side]:.1f} s'
                                              for side in order))
  rows = []
  for name, case in cases:
    row = {'name': name, 'model': case.model, 'batch_size': case.batch_size, 'why': why[name]}
    if not row['why']:
      mine, theirs = times[_OURS][name], times[_KERAS][name]
      estimate, low, high = ab_stats.signed_rank_interval(
          np.log(np.asarray(mine) / np.asarray(theirs)), 0.95)
      row.update(ours_s=stats.median(mine), keras_s=stats.median(theirs),
                 ratio=math.exp(estimate),
                 ci_low=math.exp(low) if math.isfinite(low) else None,
                 ci_high=math.exp(high) if math.isfinite(high) else None, rounds=len(mine),
                 ours_iqr_over_median=stats.median(spread[_OURS][name]),
                 keras_iqr_over_median=stats.median(spread[_KERAS][name]),
                 **{key: first[name][key] for key in ('params', 'jit_compile', 'keras')})
    rows.append(row)
  return rows


def _keras_side(index, specs, steps, first):
  """{case: timer.summarize of its Keras steps} of round `index`, each of `specs` in a
  Keras process of its own; `first` keeps each case's first result (its parameters,
  jit_compile, version)."""
  out = {}
  for name, case_spec in specs.items():
    result = time_in_keras(case_spec, *steps[name])
    if 'error' in result:
      raise ab.SideFailed(f'the Keras side failed in round {index} on {name}: '
                          f'{result["error"]}', 1, None)
    first.setdefault(name, result)
    out[name] = timer.summarize(result['samples'])
  return out


# ab_stats.orders draws the order of two sides: ours is its 'base', Keras its 'new'.
_OURS, _KERAS = ab_stats.SIDES
_LABEL = {_OURS: 'ours', _KERAS: 'Keras'}
