"""Datasets by name: the one registry.

  synthetic            random batches of config.image_shape, generated on device
                       (synthetic.py); no files, no input pipeline
  cifar10              tfds cifar10, prepared under data_dir
  cars196              Stanford Cars from the original files (cars.py)
  shapes               the embedded generated image folder (shapes.py)
  image_folder:<path>  one subfolder per class (folder.py)

Every real dataset is opened as a `Source`: its splits (sliceable with tfds's
syntax, 'train[:85%]'), number of classes, and a reader of encoded images and
labels. Opening checks that the data is there and never touches the network,
except for a tfds dataset with `download=True`. A missing dataset is a
UserError naming the path and what to put there.
"""

import contextlib
import dataclasses
import functools
import logging
import os
from typing import Callable

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from bench.core.errors import UserError
from input_pipeline import cars
from input_pipeline import folder
from input_pipeline import options
from input_pipeline import shapes

def default_data_dir():
  """tfds's data directory: $TFDS_DATA_DIR or ~/tensorflow_datasets."""
  return os.path.expanduser(tfds.core.constants.DATA_DIR)


@dataclasses.dataclass(frozen=True)
class Source:
  """A dataset on disk. `read(split, shuffle, seed)` gives {'image': encoded bytes,
  'label': int64, 'id': string unique in the dataset} examples of `split`, any tfds
  split spec or an even_splits part. The id lets cached features be found again
  in whatever order a shuffled read returns them."""
  name: str
  location: str
  num_classes: int
  splits: tfds.core.SplitDict
  read: Callable[..., tf.data.Dataset]
  ignored_files: int = 0

  def num_examples(self, split):
    """Examples in `split`, or UserError for an unknown, malformed or empty split."""
    available = ', '.join(f'{name} ({info.num_examples})' for name, info in self.splits.items())
    try:
      info = self.splits[split]
    except (ValueError, KeyError) as e:
      reason = ' '.join(str(e).replace('\n', ' ').split())
      raise UserError(f'dataset {self.name}: split {split!r} is not valid ({reason}); '
                      f'splits: {available}; slice like train[:85%] or train[100:200]') from None
    # A backwards slice (train[50%:10%]) counts negative; inside a sum it could hide.
    if info.num_examples <= 0 or any(fi.take <= 0 for fi in info.file_instructions):
      raise UserError(f'dataset {self.name}: split {split!r} has no examples (or a slice '
                      f'that is empty or backwards); splits: {available}')
    return info.num_examples


def _tfds_source(builder, location):
  def read(split, shuffle, seed):
    # Only image and label are read (not cars196's bbox or id), and images stay
    # encoded: preprocessing decodes them, cropping while it decodes.
    decoders = tfds.decode.PartialDecoding({'image': True, 'label': True},
                                           decoders={'image': tfds.decode.SkipDecoding()})
    ds = builder.as_dataset(split=split, shuffle_files=shuffle, decoders=decoders,
                            read_config=tfds.ReadConfig(shuffle_seed=seed, add_tfds_id=True))
    return ds.map(lambda ex: {'image': ex['image'], 'label': ex['label'], 'id': ex['tfds_id']})
  return Source(builder.name, location, builder.info.features['label'].num_classes,
                builder.info.splits, read)


def _folder_source(name, root):
  paths, labels, classes, ignored = folder.scan(root)
  template = tfds.core.ShardedFileTemplate(data_dir=root, template='{SPLIT}-{SHARD_X_OF_Y}',
                                           dataset_name=name, split='train',
                                           filetype_suffix='files')
  # The folder is one file list; tfds slices it like a one-shard split.
  splits = tfds.core.SplitDict([tfds.core.SplitInfo(
      name='train', shard_lengths=[len(paths)], num_bytes=0, filename_template=template)])
  paths, labels = np.array(paths), np.array(labels, np.int64)

  def read(split, shuffle, seed):
    index = np.concatenate([np.arange(fi.skip, fi.skip + fi.take)
                            for fi in splits[split].file_instructions])
    ds = tf.data.Dataset.from_tensor_slices({'path': paths[index], 'label': labels[index]})
    if shuffle:  # a file list is cheap to shuffle whole, every epoch anew
      ds = ds.shuffle(len(index), seed=seed, reshuffle_each_iteration=True)
    return ds.map(lambda ex: {'image': tf.io.read_file(ex['path']), 'label': ex['label'],
                              'id': ex['path']},
                  num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  return Source(name, root, len(classes), splits, read, ignored)


@contextlib.contextmanager
def _no_absl_warnings():
  """tfds warns through absl while it looks for a dataset that is not there ("Variant
  folder ... has no dataset_info.json"): a line before the UserError that says all."""
  logger = logging.getLogger('absl')
  level = logger.level
  logger.setLevel(logging.ERROR)
  try:
    yield
  finally:
    logger.setLevel(level)


def _prepared_tfds(name, data_dir, download):
  with _no_absl_warnings():
    builder = tfds.builder(name, data_dir=data_dir)
    prepared = builder.is_prepared()
  if not prepared:
    if not download:
      raise UserError(f'dataset {name} is not prepared in {builder.data_dir}; pass '
                      f'--config.download=True to download and prepare it (needs internet), '
                      f'or --config.data_dir=DIR where it is prepared')
    builder.download_and_prepare()
  return _tfds_source(builder, builder.data_dir)


def _prepared_cars(data_dir):
  builder = cars.Cars196(data_dir=data_dir)
  if not builder.is_prepared():
    manual = cars.manual_dir(data_dir)
    missing = cars.missing_files(manual)
    layout = '; '.join(f'{name} ({what})' for name, what in cars.REQUIRED)
    if missing:
      raise UserError(f'dataset cars196 is not prepared in {builder.data_dir} and '
                      f'{os.path.join(manual, missing[0][0])} is missing (a directory must hold '
                      f'the .jpg files directly); its download site is gone, so put the '
                      f'original Stanford Cars files in {manual}/: {layout}; or pass '
                      f'--config.data_dir=DIR where cars196 is prepared')
    try:
      builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
          manual_dir=manual, try_download_gcs=False))
    except (KeyError, OSError, ValueError) as e:
      # An annotation naming an image that is not there (a partial copy, say).
      raise UserError(f'cannot prepare cars196 from {manual} ({type(e).__name__}: {e}); the '
                      f'annotations and images must match the original release: {layout}') from None
  return _tfds_source(builder, builder.data_dir)


@functools.lru_cache(maxsize=8)
def open_source(spec, data_dir='', download=False):
  """The Source of dataset `spec` (not 'synthetic'), prepared or generated if it must be."""
  kind, path = options.parse_dataset(spec)
  data_dir = os.path.abspath(os.path.expanduser(data_dir)) if data_dir else default_data_dir()
  if kind == 'image_folder':
    return _folder_source(spec, path)
  if kind == 'shapes':
    return _folder_source('shapes', shapes.ensure(data_dir))
  if kind == 'cars196':
    return _prepared_cars(data_dir)
  if kind == 'cifar10':
    return _prepared_tfds(kind, data_dir, download)
  raise ValueError(f'{spec!r} has no files to open')
