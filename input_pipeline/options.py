"""Dataset names and preprocessing choices, importable without TensorFlow.

Configs are validated against these before anything is loaded, and a run on
synthetic data never pays for importing TF (several seconds).
"""

import os

from bench.errors import UserError

# See datasets.py for what each is.
DATASETS = ('synthetic', 'cifar10', 'cars196', 'shapes', 'image_folder:<path>')
FOLDER_PREFIX = 'image_folder:'

# See preprocess.py for what each does.
RESIZE_MODES = ('resize', 'letterbox', 'center_crop')
AUGMENTATIONS = ('none', 'flip', 'crop_flip')
# What the reference models were trained on (keras.applications preprocess_input modes):
# caffe: BGR, ImageNet mean subtracted (ResNet50); tf: [-1, 1] (Xception, MobileNetV2);
# torch: [0, 1], then ImageNet mean/std (torchvision); unit: [0, 1] (the seed nets).
NORMALIZATIONS = ('caffe', 'tf', 'torch', 'unit')
RGB_ONLY = ('caffe', 'torch')


def parse_dataset(spec):
  """(kind, absolute folder path or None) of a dataset spec, or UserError naming the known ones."""
  if isinstance(spec, str) and spec.startswith(FOLDER_PREFIX):
    path = spec[len(FOLDER_PREFIX):]
    if not path:
      raise UserError(f'dataset {spec!r} has no path; write image_folder:/path/to/folder')
    return 'image_folder', os.path.abspath(os.path.expanduser(path))
  if spec in DATASETS:
    return spec, None
  raise UserError(f'unknown dataset {spec!r}; known: {", ".join(DATASETS)}')
