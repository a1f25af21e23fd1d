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

from absl import app
from absl import flags
from absl import logging

from bench.core import logs
from bench.core.errors import UserError, fail
from bench.train import visualize

_WORKDIR = flags.DEFINE_string('workdir', None, 'Workdir of a training run (holds report.json '
                               'and weights/).')
_CASE = flags.DEFINE_string('case', None, 'Name of the case in report.json.')
_IMAGES = flags.DEFINE_list('images', None, 'Comma-separated image files.')
_OUT = flags.DEFINE_string('out', None, 'Directory for the PNGs (created if missing).')
_LAYER = flags.DEFINE_string('layer', '', 'Top-level backbone layer for Grad-CAM; default: '
                             'the backbone output (the feature map the top pools).')
_CLASS_INDEX = flags.DEFINE_integer('class_index', -1, 'Class Grad-CAM explains; negative: '
                                    'the predicted class.')


def _parse_flags(argv):
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    fail(str(e).splitlines()[0])


def main(argv):
  if len(argv) > 1:
    fail(f'unexpected arguments {" ".join(argv[1:])}; flags are --workdir, --case, --images, '
          '--out, --layer, --class_index')
  for flag in (_WORKDIR, _CASE, _IMAGES, _OUT):
    if not flag.value:
      fail(f'missing --{flag.name}; usage: python -m bench.visualize --workdir=DIR --case=NAME '
            '--images=a.jpg,b.png --out=OUTDIR')
  logs.configure()
  try:
    paths = visualize.visualize(_WORKDIR.value, _CASE.value, _IMAGES.value, _OUT.value,
                      layer=_LAYER.value, class_index=_CLASS_INDEX.value)
  except UserError as e:
    fail(e)
  logging.info('wrote %s', ', '.join(paths))


if __name__ == '__main__':
  app.run(main, flags_parser=_parse_flags)
