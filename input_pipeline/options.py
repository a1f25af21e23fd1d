"""Dataset names and preprocessing choices, importable without TensorFlow.

Configs are validated against these before anything is loaded, and a run on
synthetic data never pays for importing TF (several seconds).
"""

import os

import numpy as np

from bench.core.errors import UserError

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
_CAFFE_MEAN_BGR = np.array((103.939, 116.779, 123.68), np.float32)
_TORCH_MEAN = np.array((0.485, 0.456, 0.406), np.float32)
_TORCH_STD = np.array((0.229, 0.224, 0.225), np.float32)
# FLOPs per pixel value of `normalize` on uint8 input, as XLA counts them: the
# convert to float32, then each arithmetic op (the channel flip moves data). XLA may
# compute it more than once: a train step fuses it into both the first layer's
# forward and its kernel gradient, and counts it twice.
NORMALIZE_FLOPS = {'caffe': 2, 'tf': 3, 'torch': 4, 'unit': 2}


def normalize(image, mode):
  """float32 pixels in [0, 255] -> the input range of a model trained with `mode`.

  The same arithmetic on a tf.Tensor (the host pipeline) and on a jax array
  (a step that receives uint8 images, config device_normalize), so the two
  paths agree to float32 rounding.
  """
  if mode == 'caffe':
    return image[..., ::-1] - _CAFFE_MEAN_BGR
  if mode == 'tf':
    return image / 127.5 - 1.0
  if mode == 'torch':
    return (image / 255.0 - _TORCH_MEAN) / _TORCH_STD
  if mode == 'unit':
    return image / 255.0
  raise ValueError(f'unknown normalization {mode!r}')


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
