"""Grad-CAM, first-layer filters and activation maps of a trained case.

  python -m bench.visualize --workdir=DIR --case=NAME --images=a.jpg,b.png --out=OUTDIR \\
      [--layer=LAYER] [--class_index=-1]

Reads the case's config from DIR/report.json and its final weights from
DIR/weights/NAME/ (the final weights of a run of benchmark 'train'), preprocesses each
image as the case's evaluation does, and writes into OUTDIR:
  <stem>_gradcam.png      Grad-CAM (Selvaraju et al., 2017) over the image as the
                          model sees it (preprocessed geometry), for the predicted
                          class or --class_index;
  <stem>_activations.png  the output channels of the first convolution;
  filters.png             the kernels of the first convolution.
Grad-CAM looks at the backbone's feature map (what the top pools) unless
--layer names an earlier top-level layer of the backbone.

Every input is checked, and every figure rendered, before OUTDIR is created, so
a user error (one line, exit 2) writes nothing; each file is written atomically.
Only models built on models.layers.Classifier have the backbone/top split and
the convolutions all three figures need.
"""

import sys

from absl import logging

from bench.core import logs
from bench.core.errors import ArgumentParser, UserError, fail

_USAGE = ('usage: python -m bench.visualize --workdir=DIR --case=NAME --images=a.jpg,b.png '
          '--out=OUTDIR')


def _arguments(argv):
  arguments = ArgumentParser(prog='bench.visualize', description=__doc__.split('\n')[0])
  arguments.add_argument('--workdir', help='the workdir of a training run (holds report.json '
                         'and weights/)')
  arguments.add_argument('--case', help='the name of the case in report.json')
  arguments.add_argument('--images', metavar='A.jpg,B.png', help='comma-separated image files')
  arguments.add_argument('--out', metavar='OUTDIR', help='the directory for the PNGs (created '
                         'if missing)')
  arguments.add_argument('--layer', default='', help='the top-level backbone layer for '
                         'Grad-CAM; default: the backbone output (the feature map the top pools)')
  arguments.add_argument('--class_index', type=int, default=-1, help='the class Grad-CAM '
                         'explains; negative: the predicted class')
  logs.add_verbosity(arguments)
  args = arguments.parse_args(argv)
  for name in ('workdir', 'case', 'images', 'out'):
    if not getattr(args, name):
      fail(f'missing --{name}; {_USAGE}')
  args.images = [path for path in args.images.split(',') if path]
  return args


def main(argv=None):
  """`python -m bench.visualize ARGS`: writes the figures; exit 0, 2 for a user error."""
  args = _arguments(sys.argv[1:] if argv is None else argv)
  logs.configure(args.verbosity)  # before TensorFlow prints its start-up lines
  # pylint: disable=import-outside-toplevel  (seconds of imports, once the arguments are good)
  from bench.train import visualize
  try:
    paths = visualize.visualize(args.workdir, args.case, args.images, args.out,
                                layer=args.layer, class_index=args.class_index)
  except UserError as e:
    fail(e)
  logging.info('wrote %s', ', '.join(paths))


if __name__ == '__main__':
  sys.exit(main())
