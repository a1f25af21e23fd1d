"""Input pipelines: preprocessing geometry, datasets by name, exact evaluation, bad input.

Offline throughout: tfds datasets are mocked (tfds.testing.mock_data) or built
from files written here, and tests/offline/sitecustomize.py makes any network
connection raise.
"""

import json
import os

import jax
import ml_collections
import numpy as np
from PIL import Image
import pytest
import tensorflow as tf

from bench.core import parallel
from bench.core.errors import UserError
from bench.run import runner
from bench.workload import steps
from configs import base
from input_pipeline import datasets
from input_pipeline import folder
from input_pipeline import options
from input_pipeline import pipeline
from input_pipeline import preprocess
from input_pipeline import synthetic
import models
from tests.conftest import call_cli, case_config, run_cli


def _encoded(h, w, fmt='jpg', color=(200, 100, 50)):
  image = np.broadcast_to(np.array(color, np.uint8), (h, w, 3))
  return (tf.io.encode_png(image) if fmt == 'png' else tf.io.encode_jpeg(image)).numpy()


# ---------------------------------------------------------------------- image folders

def _write_images(root, layout):
  """layout: {class: [(h, w, ext), ...]}: real encoded images."""
  for name, images in layout.items():
    os.makedirs(os.path.join(root, name), exist_ok=True)
    for i, (h, w, ext) in enumerate(images):
      with open(os.path.join(root, name, f'{i}.{ext}'), 'wb') as f:
        f.write(_encoded(h, w, 'png' if ext == 'png' else 'jpg'))
  return str(root)


def test_folder_scan_classes_labels_and_ignored_files(tmp_path):
  root = _write_images(tmp_path, {'b_dog': [(10, 20, 'jpg'), (30, 12, 'png')],
                                  'a_cat': [(16, 16, 'jpeg')]})
  os.makedirs(tmp_path / 'b_dog' / 'nested')
  (tmp_path / 'b_dog' / 'nested' / 'x.JPG').write_bytes(_encoded(8, 9))
  (tmp_path / 'b_dog' / 'README.txt').write_text('not an image')
  (tmp_path / 'a_cat' / '.DS_Store').write_bytes(b'\0\0')
  paths, labels, classes, ignored = folder.scan(root)
  assert classes == ('a_cat', 'b_dog') and ignored == 2
  assert sorted(zip((os.path.relpath(p, root) for p in paths), labels)) == [
      ('a_cat/0.jpeg', 0), ('b_dog/0.jpg', 1), ('b_dog/1.png', 1), ('b_dog/nested/x.JPG', 1)]


def _truncated(data):
  return lambda path: path.write_bytes(data[:len(data) // 2])


@pytest.mark.parametrize('make, message', [
    (lambda root: root.joinpath('a', 'bad.jpg').write_text('<html>404</html>'),
     'bad.jpg is not an image (its 16 bytes start with'),
    (lambda root: _truncated(_encoded(64, 64))(root / 'a' / 'cut.jpg'),
     'cut.jpg is a truncated JPEG (no end-of-image marker)'),
    (lambda root: _truncated(_encoded(64, 64, 'png'))(root / 'a' / 'cut.png'),
     'cut.png is a truncated PNG'),
    (lambda root: root.joinpath('a', 'empty.png').write_bytes(b''),
     'empty.png is not an image (its 0 bytes'),
    (lambda root: os.makedirs(root / 'c'), "class folder {root}/c has no images"),
])
def test_folder_problems_name_the_file(tmp_path, make, message):
  root = _write_images(tmp_path, {'a': [(10, 10, 'jpg')], 'b': [(10, 10, 'jpg')]})
  make(tmp_path)
  with pytest.raises(UserError, match=None) as e:
    folder.scan(root)
  assert message.format(root=root) in str(e.value)


@pytest.mark.parametrize('layout, message', [
    (None, 'does not exist or is not a directory'),
    ({}, 'has 0 class subfolders []; classification needs at least 2'),
    ({'only': [(8, 8, 'jpg')]}, "has 1 class subfolder ['only']; classification needs at least 2"),
])
def test_folder_layout_problems(tmp_path, layout, message):
  root = str(tmp_path / 'images')
  if layout is not None:
    os.makedirs(root)
    _write_images(root, layout)
  with pytest.raises(UserError) as e:
    folder.scan(root)
  assert message in str(e.value) and f'expected {root}/<class>/<image>.jpg' in str(e.value)


def test_corrupt_image_through_the_cli_exits_2_and_writes_nothing(tmp_path):
  root = _write_images(tmp_path / 'images', {'a': [(10, 10, 'jpg')], 'b': [(10, 10, 'jpg')]})
  (tmp_path / 'images' / 'b' / 'x.png').write_text('oops')
  workdir = tmp_path / 'work'
  result = call_cli('--config=configs/base.py', f'--workdir={workdir}',
                    f'--config.dataset=image_folder:{root}', '--config.num_classes=0',
                    '--config.batch_size=2')
  assert result.returncode == 2, result.stderr
  errors = [line for line in result.stderr.splitlines() if line.startswith('error:')]
  assert len(errors) == 1 and f'{root}/b/x.png is not an image' in errors[0], result.stderr
  assert 'Traceback' not in result.stderr and not workdir.exists()


# ------------------------------------------------------------- splits and the runner

def _suite(data_dir, **fields):
  config = base.get_config()
  config.update(dict(dataset='shapes', data_dir=data_dir, num_classes=0, model='seed_cnn',
                     batch_size=8, warmup_steps=1, timed_steps=2, resize='letterbox',
                     augment='crop_flip'))
  config.update(fields)
  return config


@pytest.mark.parametrize('fields, message', [
    (dict(train_split='validation'), "split 'validation' is not valid (Unknown split "
     "'validation'. Should be one of ['train'].); splits: train (360)"),
    (dict(train_split='train[400:500]'), 'Requested slice [400:500] incompatible with 360'),
    (dict(train_split='train[:150%]'), 'percent slice boundaries should be in [-100, 100]'),
    (dict(train_split='train[10:5]'), "split 'train[10:5]' has no examples"),
    (dict(train_split='train[:80%]+train[50%:10%]'), 'a slice that is empty or backwards'),
    (dict(benchmark='compile', train_split='validation'), "split 'validation' is not valid"),
    (dict(train_split='train[:5]'), "split 'train[:5]' has 5 examples per process, fewer than "
     'one batch of 8'),
    (dict(eval_split='train[360:]'), "split 'train[360:]' has no examples"),
    (dict(num_classes=10), 'num_classes is 10 but dataset shapes has 6 classes; set '
     '--config.num_classes=6, or 0'),
])
def test_bad_splits_and_classes_write_nothing(data_dir, tmp_path, fields, message):
  workdir = tmp_path / 'work'
  with pytest.raises(UserError) as e:
    runner.run_suite(_suite(data_dir, **fields), str(workdir))
  assert message in str(e.value) and str(e.value).startswith("case 'default': ")
  assert not workdir.exists()


def test_unwritable_data_dir_for_the_generated_dataset(tmp_path):
  (tmp_path / 'file').write_text('')
  datasets.open_source.cache_clear()
  with pytest.raises(UserError) as e:
    runner.run_suite(_suite(str(tmp_path / 'file' / 'data')), str(tmp_path / 'work'))
  assert (f"cannot write the generated shapes dataset to {tmp_path}/file/data/shapes "
          '(Not a directory); pass --config.data_dir=DIR' in str(e.value))
  assert not (tmp_path / 'work').exists()


@pytest.mark.parametrize('fields, message', [
    (dict(dataset='synthetic', eval_split='test'), 'needs a real dataset'),
    (dict(dataset='synthetic', benchmark='input'), "benchmark 'input' times an input pipeline"),
    (dict(dataset='synthetic', num_classes=0), 'synthetic data needs num_classes >= 1'),
    (dict(dataset='shapes', image_shape=(32, 32, 1), model='resnet50'),
     "normalization 'caffe' is defined for RGB images"),
    (dict(dataset='shapes', image_shape=(32, 32, 4)), 'images decode to 1 (grayscale) or 3'),
    (dict(dataset='imagenet'), "unknown dataset 'imagenet'; known: synthetic, cifar10"),
    (dict(dataset='image_folder:'), 'has no path; write image_folder:/path/to/folder'),
    (dict(resize='crop'), "'resize' = 'crop' must be one of resize, letterbox, center_crop"),
])
def test_data_fields_are_checked_with_the_config(fields, message):
  with pytest.raises(UserError) as e:
    case_config(**fields)
  assert message in str(e.value)


def test_normalization_follows_the_model():
  assert case_config(model='resnet50').normalization == 'caffe'
  assert case_config(model='xception').normalization == 'tf'
  assert case_config(model='mobilenet_v2').normalization == 'tf'
  assert case_config(model='seed_cnn').normalization == 'unit'
  assert case_config(model='resnet50', normalization='torch').normalization == 'torch'


def _input(data_dir, **fields):
  case = ml_collections.ConfigDict(case_config(dataset='shapes', data_dir=data_dir,
                                               num_classes=0, **fields))
  data = runner.open_input('test', case, parallel.mesh())
  return case, data


def test_same_seed_same_batches_other_seed_other_batches(data_dir):
  def first_batches(seed):
    _, data = _input(data_dir, seed=seed, image_shape=(24, 24, 3), resize='letterbox',
                     augment='crop_flip', batch_size=8)
    stream = data.stream('train[:80%]', training=True)
    return [next(stream) for _ in range(2)]

  a, b, c = first_batches(0), first_batches(0), first_batches(1)
  for x, y in zip(a, b):
    np.testing.assert_array_equal(x['image'], y['image'])
    np.testing.assert_array_equal(x['label'], y['label'])
  assert not np.array_equal(a[0]['label'], c[0]['label'])


def test_each_process_reads_its_own_part(data_dir, monkeypatch):
  monkeypatch.setattr(jax, 'process_count', lambda: 3)
  monkeypatch.setattr(jax, 'process_index', lambda: 2)
  _, data = _input(data_dir, batch_size=9)
  part, counts = data._parts('train[:80%]')  # pylint: disable=protected-access
  assert counts == [96, 96, 96] and data.per_process == 3
  assert data.source.splits[part].num_examples == 96
  assert data.check('train[:100]', full_batches=True) == 100  # 34 + 33 + 33


def test_a_process_with_nothing_to_evaluate_runs_padding_only(data_dir, monkeypatch):
  monkeypatch.setattr(jax, 'process_count', lambda: 3)
  monkeypatch.setattr(jax, 'process_index', lambda: 2)
  monkeypatch.setattr(pipeline, 'device_prefetch', lambda batches, sharding, size: batches)
  _, data = _input(data_dir, batch_size=3, image_shape=(8, 8, 3))
  batches, n = data.evaluation('train[-2:]')  # parts of 1, 1 and 0 examples
  batches = list(batches)
  assert n == 2 and len(batches) == 1 and batches[0]['mask'].tolist() == [False]


def test_grayscale_from_every_format(tmp_path):
  image = np.full((12, 20, 3), (200, 100, 50), np.uint8)
  fn = preprocess.make((8, 8, 1), resize='resize', augment='none', normalization='unit',
                       training=False)
  gif = tmp_path / 'x.gif'
  Image.fromarray(image).save(gif)
  Image.fromarray(image).save(tmp_path / 'x.bmp')
  expected = (0.2989 * 200 + 0.587 * 100 + 0.114 * 50) / 255
  for encoded in (gif.read_bytes(), (tmp_path / 'x.bmp').read_bytes(), _encoded(12, 20),
                  _encoded(12, 20, 'png')):
    out = fn(tf.constant(encoded), tf.constant([0, 0], tf.int64)).numpy()
    assert out.shape == (8, 8, 1)
    np.testing.assert_allclose(out, expected, atol=0.03)


def test_evaluation_is_exact_for_a_partial_last_batch(data_dir):
  case, data = _input(data_dir, model='seed_cnn', image_shape=(32, 32, 3), batch_size=8,
                      resize='letterbox')
  batches, n = data.evaluation('train[:29]')
  batches = list(batches)
  assert n == 29 and len(batches) == 4
  np.testing.assert_array_equal(np.asarray(batches[-1]['mask']), [1] * 5 + [0] * 3)

  model = models.create('seed_cnn', num_classes=6, dtype=np.float32)
  variables = model.init(jax.random.key(1), np.zeros((1, 32, 32, 3)), train=False)
  state = steps.TrainState(step=0, params=variables['params'], batch_stats={}, opt_state=(),
                           rng=jax.random.key(0))
  metrics = steps.evaluate(jax.jit(steps.make_eval_sums(model)), state, batches)

  images = np.concatenate([np.asarray(b['image'])[np.asarray(b['mask'])] for b in batches])
  labels = np.concatenate([np.asarray(b['label'])[np.asarray(b['mask'])] for b in batches])
  logits = np.asarray(model.apply(variables, images, train=False), np.float64)
  logp = logits - np.log(np.exp(logits - logits.max(1, keepdims=True)).sum(1, keepdims=True)) \
      - logits.max(1, keepdims=True)
  assert images.shape == (29, 32, 32, 3) and metrics['num_examples'] == 29
  assert metrics['loss'] == pytest.approx(-logp[np.arange(29), labels].mean(), rel=1e-5)
  assert metrics['accuracy'] == pytest.approx((logits.argmax(1) == labels).mean(), abs=1e-12)


# ------------------------------------------------------------------ end to end (CLI)

def test_input_pipeline_config_on_two_devices(data_dir, tmp_path):
  """Input-only and a train case from the generated folder; batch split over 2 devices;
  evaluation over 29 examples, not a multiple of the batch."""
  result = run_cli('--config=configs/input_pipeline.py', f'--workdir={tmp_path}',
                   f'--config.data_dir={data_dir}', '--config.select=letterbox224_augment,seed_cnn32',
                   '--config.batch_size=4', '--config.warmup_steps=1', '--config.timed_steps=3',
                   "--config.cases.seed_cnn32.eval_split=train[331:]",
                   env={'XLA_FLAGS': '--xla_force_host_platform_device_count=2'})
  assert result.returncode == 0, result.stderr[-3000:]
  report = json.loads((tmp_path / 'report.json').read_text())
  pipeline_only, train = report['cases']
  assert pipeline_only['status'] == train['status'] == 'ok'
  assert pipeline_only['params']['total'] is None and pipeline_only['num_devices'] == 2
  assert pipeline_only['throughput']['examples_per_s_total'] > 0
  assert train['eval']['num_examples'] == 29 and train['dataset']['train_examples'] == 288
  assert 0 <= train['data_wait_s']['share'] <= 1
  markdown = (tmp_path / 'report.md').read_text()
  assert '## Input pipeline only' in markdown and '| seed_cnn32 | shapes | train[331:] | 29 |' \
      in markdown


def test_synthetic_batches_are_fixed_by_the_key_in_range_and_placed():
  sharding = parallel.batch_sharding(parallel.mesh())
  kwargs = dict(num_batches=2, batch_size=4, image_shape=(3, 5, 2), num_classes=3,
                sharding=sharding)
  first, again, other = (jax.device_get(synthetic.make_batches(jax.random.key(seed), **kwargs))
                         for seed in (7, 7, 8))
  for batch in first:
    assert batch['image'].shape == (4, 3, 5, 2) and batch['image'].dtype == np.float32
    assert batch['label'].shape == (4,) and batch['label'].dtype == np.int32
    assert 0 <= batch['image'].min() and batch['image'].max() < 1
    assert set(batch['label']) <= {0, 1, 2}
  assert not np.array_equal(first[0]['image'], first[1]['image'])  # distinct batches rotate
  jax.tree.map(np.testing.assert_array_equal, first, again)
  assert not np.array_equal(first[0]['image'], other[0]['image'])
  placed = synthetic.make_batches(jax.random.key(7), **kwargs)
  assert all(x.sharding == sharding for batch in placed for x in batch.values())
  # pmap's layout: the same values, with a leading device axis.
  per_device = synthetic.make_batches(jax.random.key(7), **kwargs,
                                      layout=lambda x: x.reshape(1, *x.shape))
  np.testing.assert_array_equal(np.asarray(per_device[1]['image'])[0], first[1]['image'])


def test_uint8_images_normalised_in_the_step_match_the_hosts_normalisation(data_dir):
  """device_normalize: the pipeline hands over uint8 pixels (a quarter of the bytes) and
  the step normalises them; the model sees what host normalisation of the same pixels
  gives, to float32 rounding, for every normalisation. The dataset block records the
  tf.data threads and the prefetch depth."""
  case, data = _input(data_dir, image_shape=(24, 24, 3), batch_size=8, device_normalize=True,
                      data_threads=3, prefetch=4)
  batch = next(data.stream('train[:80%]', training=False))
  assert batch['image'].dtype == np.uint8 and batch['image'].shape == (8, 24, 24, 3)
  assert data.describe()['threads'] == 3 and data.describe()['prefetch'] == 4
  pixels = np.asarray(batch['image'])
  for mode in options.NORMALIZATIONS:
    on_host = options.normalize(tf.cast(pixels, tf.float32), mode).numpy()
    in_step = jax.jit(lambda x, mode=mode: steps.model_input(x, mode))(pixels)
    np.testing.assert_allclose(in_step, on_host, rtol=1e-6, atol=1e-6)
  model = models.create('seed_cnn', num_classes=case.num_classes, dtype=np.float32)
  variables = model.init(jax.random.key(0), np.zeros((1, 24, 24, 3), np.float32), train=False)
  state = steps.TrainState(step=0, params=variables['params'], batch_stats={}, opt_state=(),
                           rng=jax.random.key(0))
  forward = jax.jit(steps.make_forward(model, case.normalization))
  np.testing.assert_allclose(
      forward(state, batch), forward(state, {'image': options.normalize(
          tf.cast(pixels, tf.float32), case.normalization).numpy()}), rtol=1e-6, atol=1e-6)
  _, float_data = _input(data_dir, image_shape=(24, 24, 3), batch_size=8)
  assert next(float_data.stream('train[:80%]', training=False))['image'].dtype == np.float32
  assert float_data.describe()['threads'] == len(os.sched_getaffinity(0))


def test_training_epochs_end_in_a_smaller_batch_and_resume_exactly(data_dir):
  """One pass over 29 examples at batch 8: three full batches, then the 5 they leave;
  the next pass reshuffles. A stream resumed at batch 3 or 5 continues as the first did."""
  _, data = _input(data_dir, image_shape=(16, 16, 3), batch_size=8, shuffle_buffer=64)
  assert data.epoch('train[:29]') == (3, 5) and data.epoch('train[:29]', True) == (3, 0)
  assert data.epoch('train[:32]') == (4, 0)
  stream = data.stream('train[:29]', training=True, epoch=(3, 5))
  batches = [next(stream) for _ in range(8)]
  assert [len(b['label']) for b in batches] == [8, 8, 8, 5] * 2
  every = sorted(np.asarray(ex['label']) for ex in data.source.read('train[:29]', shuffle=False,
                                                                     seed=0))
  for epoch in (batches[:4], batches[4:]):
    assert sorted(np.concatenate([b['label'] for b in epoch])) == every
    images = np.concatenate([b['image'] for b in epoch]).reshape(29, -1)
    assert len(np.unique(images, axis=0)) == 29  # 29 distinct examples, none twice
  assert not np.array_equal(batches[0]['image'], batches[4]['image'])  # reshuffled
  for start in (3, 5):  # at an epoch's last batch, and inside the next epoch
    resumed = data.stream('train[:29]', training=True, start=start, epoch=(3, 5))
    for expected in batches[start:]:
      got = next(resumed)
      np.testing.assert_array_equal(got['image'], expected['image'])
      np.testing.assert_array_equal(got['label'], expected['label'])
  # drop_remainder: each pass is its 3 full batches, the 5 left over not read.
  dropped = data.stream('train[:29]', training=True, epoch=(3, 0))
  epoch = [next(dropped) for _ in range(3)]
  assert len(np.unique(np.concatenate([b['image'] for b in epoch]).reshape(24, -1), axis=0)) == 24
