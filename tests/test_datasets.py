"""Datasets by name, offline: the generated shapes folder, tfds datasets mocked
(tfds.testing.mock_data), Stanford Cars prepared from its original files, and what
an unprepared dataset says."""

import json
import os

import numpy as np
import pytest
import scipy.io
import tensorflow as tf
import tensorflow_datasets as tfds

from bench.core.errors import UserError
from bench.run import runner
from input_pipeline import cars
from input_pipeline import datasets
from input_pipeline import folder
from input_pipeline import shapes
from tests.conftest import call_cli
from tests.test_input import _encoded, _suite


def test_generated_dataset_is_deterministic_and_varied(data_dir, tmp_path):
  paths, labels, classes, ignored = folder.scan(shapes.ensure(data_dir))
  assert classes == shapes.CLASSES and len(paths) == 360 and ignored == 0
  assert np.bincount(labels).tolist() == [60] * 6
  again = shapes.ensure(str(tmp_path), images_per_class=2)
  for name in os.listdir(again):
    for image in os.listdir(os.path.join(again, name)):
      with open(os.path.join(again, name, image), 'rb') as a, \
           open(os.path.join(data_dir, 'shapes', shapes.VERSION, name, image), 'rb') as b:
        assert a.read() == b.read()
  sizes = {tuple(tf.image.extract_jpeg_shape(tf.io.read_file(p)).numpy()[:2])
           for p in paths if p.endswith('.jpg')}
  assert len(sizes) > 100 and all(h != w for h, w in sizes)
  assert not [n for n in os.listdir(os.path.join(data_dir, 'shapes')) if n.startswith('.')]


# ----------------------------------------------------------------- tfds datasets

def _mock_metadata(root, builder, counts):
  """Writes dataset_info.json with these split sizes, as a prepared dataset has."""
  builder.info.set_splits(tfds.core.SplitDict([tfds.core.SplitInfo(
      name=name, shard_lengths=[n], num_bytes=0,
      filename_template=tfds.core.ShardedFileTemplate(
          data_dir=builder.data_dir, template='{DATASET}-{SPLIT}.{FILEFORMAT}-{SHARD_X_OF_Y}',
          dataset_name=builder.name, split=name, filetype_suffix='tfrecord'))
      for name, n in counts.items()]))
  os.makedirs(builder.data_dir, exist_ok=True)
  builder.info.write_to_directory(builder.data_dir)


@pytest.mark.parametrize('name, make_builder, classes', [
    ('cifar10', lambda root: tfds.builder('cifar10', data_dir=root), 10),
    ('cars196', lambda root: cars.Cars196(data_dir=root), 196),
])
def test_mocked_tfds_dataset_end_to_end(tmp_path, name, make_builder, classes):
  meta = str(tmp_path / 'meta')
  _mock_metadata(meta, make_builder(meta), {'train': 20, 'test': 20})
  datasets.open_source.cache_clear()
  workdir = str(tmp_path / 'work')
  config = _suite('', dataset=name, image_shape=(32, 32, 3), eval_split='test', batch_size=6)
  with tfds.testing.mock_data(num_examples=20, data_dir=meta,
                              policy=tfds.testing.MockPolicy.USE_FILES):
    report = runner.run_suite(config, workdir)
  datasets.open_source.cache_clear()
  case, = report['cases']
  assert case['status'] == 'ok', case['error']
  assert case['dataset']['name'] == name and case['dataset']['num_classes'] == classes
  assert case['config']['num_classes'] == classes and case['dataset']['train_examples'] == 20
  assert case['eval'] == {**case['eval'], 'split': 'test', 'num_examples': 20}
  assert 0 <= case['data_wait_s']['share'] <= 1
  with open(os.path.join(workdir, 'report.json')) as f:
    assert json.load(f)['suite']['status'] == 'complete'


def _cars_manual_dir(manual):
  """A miniature of the original Stanford Cars release: 3 train and 2 test images."""
  fields = [('bbox_x1', 'O'), ('bbox_y1', 'O'), ('bbox_x2', 'O'), ('bbox_y2', 'O'),
            ('class', 'O'), ('fname', 'O')]
  for split, labels, annotations in (('train', [1, 2, 196], 'devkit/cars_train_annos.mat'),
                                     ('test', [2, 1], 'cars_test_annos_withlabels.mat')):
    os.makedirs(manual / f'cars_{split}')
    os.makedirs((manual / annotations).parent, exist_ok=True)
    records = np.zeros((1, len(labels)), dtype=fields)
    for i, label in enumerate(labels):
      fname = f'{i + 1:05d}.jpg'
      (manual / f'cars_{split}' / fname).write_bytes(_encoded(40 + 10 * i, 70))
      records[0, i] = (np.array([[2]]), np.array([[3]]), np.array([[50]]), np.array([[30]]),
                       np.array([[label]]), np.array([fname]))
    scipy.io.savemat(manual / annotations, {'annotations': records})


def test_cars196_prepares_from_the_original_files_without_network(tmp_path):
  _cars_manual_dir(tmp_path / 'downloads' / 'manual')
  datasets.open_source.cache_clear()
  config = _suite(str(tmp_path), dataset='cars196', image_shape=(32, 32, 3), batch_size=2,
                  eval_split='test')
  report = runner.run_suite(config, str(tmp_path / 'work'))
  case, = report['cases']
  assert case['status'] == 'ok', case['error']
  assert case['dataset'] == {**case['dataset'], 'train_examples': 3, 'eval_examples': 2,
                             'num_classes': 196}
  assert case['eval']['num_examples'] == 2
  builder = cars.Cars196(data_dir=str(tmp_path))
  labels = sorted(int(ex['label']) for ex in tfds.as_numpy(builder.as_dataset(split='train')))
  assert labels == [0, 1, 195]


def test_missing_cars196_says_what_to_put_where(tmp_path):
  workdir = tmp_path / 'work'
  result = call_cli('--config=configs/base.py', f'--workdir={workdir}', '--config.dataset=cars196',
                    f'--config.data_dir={tmp_path}', '--config.num_classes=0')
  assert result.returncode == 2, result.stderr
  errors = [line for line in result.stderr.splitlines() if line.startswith('error:')]
  manual = tmp_path / 'downloads' / 'manual'
  assert len(errors) == 1 and 'Traceback' not in result.stderr
  assert (f'dataset cars196 is not prepared in {tmp_path}/cars196/2.1.0 and '
          f'{manual}/cars_train is missing' in errors[0])
  for name, _ in cars.REQUIRED:
    assert name in errors[0]
  assert not workdir.exists()


def test_cars196_partial_or_nested_copy_is_a_user_error(tmp_path):
  manual = tmp_path / 'downloads' / 'manual'
  _cars_manual_dir(manual)
  os.remove(manual / 'cars_test' / '00002.jpg')  # annotated, but not there
  datasets.open_source.cache_clear()
  with pytest.raises(UserError) as e:
    runner.run_suite(_suite(str(tmp_path), dataset='cars196'), str(tmp_path / 'work'))
  assert f'cannot prepare cars196 from {manual} (KeyError' in str(e.value)
  os.rename(manual / 'cars_train', tmp_path / 'x')
  os.makedirs(manual / 'cars_train')
  os.rename(tmp_path / 'x', manual / 'cars_train' / 'cars_train')  # the Kaggle layout
  datasets.open_source.cache_clear()
  with pytest.raises(UserError) as e:
    runner.run_suite(_suite(str(tmp_path), dataset='cars196'), str(tmp_path / 'work'))
  assert (f'{manual}/cars_train is missing (a directory must hold the .jpg files directly)'
          in str(e.value))
  assert not (tmp_path / 'work').exists()


def test_unprepared_cifar10_is_not_downloaded_unless_asked(tmp_path):
  datasets.open_source.cache_clear()
  with pytest.raises(UserError) as e:
    runner.run_suite(_suite(str(tmp_path), dataset='cifar10'), str(tmp_path / 'work'))
  assert (f'dataset cifar10 is not prepared in {tmp_path}/cifar10/3.0.2; pass '
          '--config.download=True' in str(e.value))
  assert not (tmp_path / 'work').exists()
