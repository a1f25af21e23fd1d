"""A case's train step in Keras, timed in a process of its own (bench/keras_peer.py,
bench/workload/keras_twin.py): what `flax-bench peer` runs for each case of a
config.

The Keras process gets the case as a spec, JSON on its standard input: the case's
model fields as its flax module holds them (defaults included, so the twin builds
exactly the model this harness builds), its parsed head, batch, image shape,
classes, dtype and the optimizer's fields. It imports no JAX, and this process
(which does) no Keras.
"""

import dataclasses
import json
import os
import subprocess
import sys

from bench.measure import timer
from bench.run import predict
from bench.workload import build
from bench.workload import twins
from models import layers

# The case fields the twin reads besides the model's (keras_twin: the step it times).
_CASE_FIELDS = ('batch_size', 'num_classes', 'dtype', 'optimizer', 'learning_rate', 'momentum',
                'nesterov', 'benchmark', 'loss', 'transfer', 'weight_decay', 'grad_clip_norm',
                'schedule')


def spec(case):
  """The Keras process's spec of `case` (a case config)."""
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
          **{key: case[key] for key in _CASE_FIELDS}}


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


def peer(config, warmup_steps, timed_steps, on_case=lambda row: None):
  """[row] of each case of `config` with a step (predict.step_cases): {name, model,
  batch_size, why (no twin), error (its process failed), step_time_s (timer.summarize
  of its samples), params, jit_compile, keras, backend}; `on_case(row)` hears each as it ends."""
  rows = []
  for name, case in predict.step_cases(config):
    case_spec = spec(case)
    row = {'name': name, 'model': case.model, 'batch_size': case.batch_size,
           'why': twins.missing(case_spec)}
    if not row['why']:
      result = time_in_keras(case_spec, warmup_steps, timed_steps)
      row.update(result)
      if 'samples' in result:  # summarised as our step times are (report step_time_s)
        row['step_time_s'] = timer.summarize(result.pop('samples'))
    rows.append(row)
    on_case(row)
  return rows
