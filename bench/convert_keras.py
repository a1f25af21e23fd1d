"""Converts a Keras Applications weights file into an orbax checkpoint of ours.

  python -m bench.convert_keras --model=resnet50 \\
      --weights=resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5 --out=weights/resnet50_notop

The checkpoint holds {'params', 'batch_stats'} of the named model and is what
`--config.init_from=orbax:weights/resnet50_notop` loads (bench/pretrained.py).
Whether the file has its classifier top, and for how many classes, is read from
the file; --model_kwargs sets other fields as JSON (e.g. '{"alpha": 0.5}').
"""

import json
import os

from absl import app
from absl import flags
from absl import logging
import jax.numpy as jnp

import models
from bench import logs
from bench import main as cli
from bench import pretrained
from bench.errors import UserError

_MODEL = flags.DEFINE_string('model', None, 'Registered model the weights are for.')
_WEIGHTS = flags.DEFINE_string('weights', None, 'Keras .h5 weights file.')
_OUT = flags.DEFINE_string('out', None, 'Directory to create for the orbax checkpoint.')
_MODEL_KWARGS = flags.DEFINE_string('model_kwargs', '{}', 'Further model fields, as JSON.')


def convert(model_name, weights, out, model_kwargs=None):
  """Writes the orbax checkpoint; returns its metadata. UserError for anything the user can fix."""
  if model_name not in models.names():
    raise UserError(f'unknown model {model_name!r}; --model must be one of '
                    f'{", ".join(models.names())}')
  if os.path.exists(out):
    raise UserError(f'--out {out} already exists; give a new directory or remove it')
  source = pretrained.read_keras_h5(weights)
  top = source.get('predictions')
  kwargs = dict(model_kwargs or {})
  kwargs.setdefault('include_top', top is not None)
  problem = models.kwarg_problem(model_name, kwargs)
  if problem:
    raise UserError(f'--model_kwargs for {model_name!r}: {problem}')
  num_classes = top[('params', 'bias')].shape[0] if top is not None else 1000
  model = models.create(model_name, num_classes=num_classes, dtype=jnp.float32, **kwargs)
  variables = pretrained.zeros_like_variables(model, models.default_image_shape(model_name))
  variables, kept = pretrained.load_keras_h5(weights, variables)
  if kept:
    raise UserError(f'{weights} has a top that does not fit {model_name}: {", ".join(kept)}')
  metadata = {'model': model_name, 'model_kwargs': kwargs, 'num_classes': num_classes,
              'source': os.path.abspath(weights)}
  pretrained.save_orbax(out, variables, metadata)
  return metadata


def main(argv):
  if len(argv) > 1:
    cli.fail(f'unexpected arguments {" ".join(argv[1:])}; use --model, --weights and --out')
  for flag in (_MODEL, _WEIGHTS, _OUT):
    if not flag.value:
      cli.fail(f'missing --{flag.name}; usage: python -m bench.convert_keras --model=resnet50 '
               '--weights=FILE.h5 --out=DIR')
  try:
    kwargs = json.loads(_MODEL_KWARGS.value)
    if not isinstance(kwargs, dict):
      raise ValueError('not an object')
  except ValueError as e:
    cli.fail(f'--model_kwargs must be a JSON object such as \'{{"alpha": 0.5}}\' ({e})')
  if not os.path.isfile(_WEIGHTS.value):
    cli.fail(f'--weights {_WEIGHTS.value} does not exist; give the path of a Keras .h5 file')
  logs.configure()
  try:
    metadata = convert(_MODEL.value, _WEIGHTS.value, _OUT.value, kwargs)
  except UserError as e:
    cli.fail(e)
  logging.info('wrote %s: %s', _OUT.value, metadata)


if __name__ == '__main__':
  app.run(main, flags_parser=cli.parse_flags)
