"""Stanford Cars (cars196) from the files users have, never from the dead URL.

tfds's cars196 builder downloads from ai.stanford.edu, which has been gone since
2023. This builder has the same name, version and features, so a cars196 that
tfds prepared in the past is read as it is, but it prepares only from a manual
directory holding the original release:

  MANUAL_DIR/cars_train/00001.jpg ...             8,144 images (cars_train.tgz)
  MANUAL_DIR/cars_test/00001.jpg ...              8,041 images (cars_test.tgz)
  MANUAL_DIR/devkit/cars_train_annos.mat          (car_devkit.tgz)
  MANUAL_DIR/cars_test_annos_withlabels.mat

MANUAL_DIR is DATA_DIR/downloads/manual, tfds's convention. `check_manual_dir`
lists what is missing without touching the network, so a missing dataset is one
clear error before anything else happens.
"""

import os

import tensorflow_datasets as tfds
from tensorflow_datasets.image_classification import cars196

REQUIRED = (
    ('cars_train', 'directory of the 8,144 training images from cars_train.tgz'),
    ('cars_test', 'directory of the 8,041 test images from cars_test.tgz'),
    (os.path.join('devkit', 'cars_train_annos.mat'), 'from car_devkit.tgz'),
    ('cars_test_annos_withlabels.mat', 'the test labels'),
)


def manual_dir(data_dir):
  return os.path.join(data_dir, 'downloads', 'manual')


def missing_files(manual):
  """The REQUIRED entries (with their description) not present under `manual`; an image
  directory without .jpg files directly inside counts as missing."""
  def present(name):
    path = os.path.join(manual, name)
    if name.endswith('.mat'):
      return os.path.isfile(path)
    return os.path.isdir(path) and any(f.endswith('.jpg') for f in os.listdir(path))
  return [(name, what) for name, what in REQUIRED if not present(name)]


class Cars196(cars196.Cars196, skip_registration=True):
  """cars196 2.1.0 prepared from MANUAL_DIR (see the module docstring)."""

  name = 'cars196'
  MANUAL_DOWNLOAD_INSTRUCTIONS = __doc__

  def _split_generators(self, dl_manager):
    manual = dl_manager.manual_dir
    return [
        tfds.core.SplitGenerator(name='train', gen_kwargs={
            'split_name': 'train',
            'data_dir_path': os.path.join(manual, 'cars_train'),
            'data_annotations_path': os.path.join(manual, 'devkit', 'cars_train_annos.mat'),
        }),
        tfds.core.SplitGenerator(name='test', gen_kwargs={
            'split_name': 'test',
            'data_dir_path': os.path.join(manual, 'cars_test'),
            'data_annotations_path': os.path.join(manual, 'cars_test_annos_withlabels.mat'),
        }),
    ]
