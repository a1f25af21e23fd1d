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
import sys

from absl import logging

from bench.core import logs
from bench.core.errors import ArgumentParser, UserError, fail

_USAGE = 'usage: python -m bench.convert_keras --model=resnet50 --weights=FILE.h5 --out=DIR'


def _arguments(argv):
  arguments = ArgumentParser(prog='bench.convert_keras', description=__doc__.split('\n')[0])
  arguments.add_argument('--model', help='the registered model the weights are for')
  arguments.add_argument('--weights', metavar='FILE.h5', help='the Keras .h5 weights file')
  arguments.add_argument('--out', metavar='DIR', help='the directory to create for the orbax '
                         'checkpoint')
  arguments.add_argument('--model_kwargs', default='{}', metavar='JSON',
                         help='further model fields, as a JSON object')
  logs.add_verbosity(arguments)
  args = arguments.parse_args(argv)
  for name in ('model', 'weights', 'out'):
    if not getattr(args, name):
      fail(f'missing --{name}; {_USAGE}')
  try:
    args.model_kwargs = json.loads(args.model_kwargs)
    if not isinstance(args.model_kwargs, dict):
      raise ValueError('not an object')
  except ValueError as e:
    fail(f'--model_kwargs must be a JSON object such as \'{{"alpha": 0.5}}\' ({e})')
  if os.path.isdir(args.weights):
    fail(f'--weights {args.weights} is a directory, not a file; give the path of a Keras .h5 '
         'file')
  if not os.path.isfile(args.weights):
    fail(f'--weights {args.weights} does not exist; give the path of a Keras .h5 file')
  return args


def main(argv=None):
  """`python -m bench.convert_keras ARGS`: writes the checkpoint; exit 0, 2 for a user
  error."""
  args = _arguments(sys.argv[1:] if argv is None else argv)
  logs.configure(args.verbosity)
  # pylint: disable=import-outside-toplevel  (seconds of imports, once the arguments are good)
  from bench.workload import pretrained
  try:
    metadata = pretrained.convert_keras(args.model, args.weights, args.out, args.model_kwargs)
  except UserError as e:
    fail(e)
  logging.info('wrote %s: %s', args.out, metadata)


if __name__ == '__main__':
  sys.exit(main())
