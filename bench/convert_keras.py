"""Converts a Keras Applications weights file into an orbax checkpoint of ours.

  python -m bench.convert_keras --model=resnet50 \\
      --weights=resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5 --out=weights/resnet50_notop

The checkpoint holds {'params', 'batch_stats'} of the named model and is what
`--config.init_from=orbax:weights/resnet50_notop` loads (bench/workload/pretrained.py).
Whether the file has its classifier top, and for how many classes, is read from
the file; --model_kwargs sets other fields as JSON (e.g. '{"alpha": 0.5}').
"""

import json
import os

from absl import app
from absl import flags
from absl import logging

from bench import main as cli
from bench.core import logs
from bench.core.errors import UserError
from bench.workload import pretrained

_MODEL = flags.DEFINE_string('model', None, 'Registered model the weights are for.')
_WEIGHTS = flags.DEFINE_string('weights', None, 'Keras .h5 weights file.')
_OUT = flags.DEFINE_string('out', None, 'Directory to create for the orbax checkpoint.')
_MODEL_KWARGS = flags.DEFINE_string('model_kwargs', '{}', 'Further model fields, as JSON.')


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
    metadata = pretrained.convert_keras(_MODEL.value, _WEIGHTS.value, _OUT.value, kwargs)
  except UserError as e:
    cli.fail(e)
  logging.info('wrote %s: %s', _OUT.value, metadata)


if __name__ == '__main__':
  app.run(main, flags_parser=cli.parse_flags)
