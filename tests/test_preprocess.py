"""Preprocessing: letterbox and centre-crop geometry, normalisations, seeded augmentation."""

import numpy as np
import pytest
import tensorflow as tf

from input_pipeline import options
from input_pipeline import preprocess
from tests.test_input import _encoded


def _gradient_jpeg(h, w):
  y, x = np.mgrid[:h, :w]
  image = np.stack([x * 255 // w, y * 255 // h, (x + y) % 256], -1).astype(np.uint8)
  return tf.io.encode_jpeg(image, quality=95).numpy()


@pytest.mark.parametrize('hw, target, content, before', [
    ((100, 50), (64, 64), (64, 32), (0, 16)),
    ((31, 64), (64, 64), (31, 64), (16, 0)),  # 33 rows of padding: 16 above, 17 below
    ((100, 100), (48, 64), (48, 48), (0, 8)),
    ((64, 64), (64, 64), (64, 64), (0, 0)),
])
def test_letterbox_keeps_aspect_ratio_and_centres_the_image(hw, target, content, before):
  out = preprocess.letterbox(tf.fill([*hw, 3], tf.constant(200, tf.uint8)), target).numpy()
  assert out.shape == (*target, 3)
  inside = out[..., 0] > 0
  rows, cols = np.nonzero(inside.any(1))[0], np.nonzero(inside.any(0))[0]
  assert (rows[0], cols[0]) == before
  assert (len(rows), len(cols)) == content  # the longer side fills the target
  np.testing.assert_allclose(out[inside], 200.0)
  np.testing.assert_array_equal(out[~inside], 0.0)  # black border
  after = (target[0] - before[0] - content[0], target[1] - before[1] - content[1])
  assert all(0 <= a - b <= 1 for a, b in zip(after, before))


def test_letterbox_of_an_encoded_non_square_jpeg_to_224():
  fn = preprocess.make((224, 224, 3), resize='letterbox', augment='none', normalization='unit',
                       training=False)
  out = fn(tf.constant(_encoded(120, 60)), tf.constant([0, 0], tf.int64)).numpy()
  assert out.shape == (224, 224, 3)
  np.testing.assert_array_equal(out[:, :56], 0.0)
  np.testing.assert_array_equal(out[:, 168:], 0.0)
  np.testing.assert_allclose(out[10:-10, 60:-60], np.broadcast_to(
      np.array([200, 100, 50]) / 255, out[10:-10, 60:-60].shape), atol=0.02)


def test_center_window_has_the_target_aspect_and_is_centred():
  window = preprocess.center_window(tf.constant([200, 100]), (64, 64)).numpy()
  np.testing.assert_array_equal(window, [56, 6, 88, 88])  # 0.875 * 100 = 87.5 -> 88
  window = preprocess.center_window(tf.constant([100, 200]), (32, 64)).numpy()
  np.testing.assert_array_equal(window, [6, 12, 88, 175])


@pytest.mark.parametrize('fmt', ['jpg', 'png'])
def test_center_crop_decodes_the_window_in_either_format(fmt):
  # Left half red, right half blue: a center crop of a wide image keeps both halves.
  image = np.zeros((40, 200, 3), np.uint8)
  image[:, :100, 0] = 255
  image[:, 100:, 2] = 255
  encoded = (tf.io.encode_png(image) if fmt == 'png' else tf.io.encode_jpeg(image, quality=100))
  window = preprocess.decode_window(encoded, 3, lambda hw: preprocess.center_window(hw, (32, 32)))
  assert window.shape == (35, 35, 3)  # 0.875 * 40
  np.testing.assert_allclose(window.numpy()[:, :10].mean((0, 1)), [255, 0, 0], atol=8)
  np.testing.assert_allclose(window.numpy()[:, -10:].mean((0, 1)), [0, 0, 255], atol=8)


def test_normalizations_match_keras_preprocess_input():
  pixel = tf.constant([[[255.0, 0.0, 127.5]]])
  np.testing.assert_allclose(options.normalize(pixel, 'caffe')[0, 0],
                             [127.5 - 103.939, 0 - 116.779, 255 - 123.68], rtol=1e-6)
  np.testing.assert_allclose(options.normalize(pixel, 'tf')[0, 0], [1, -1, 0])
  np.testing.assert_allclose(options.normalize(pixel, 'unit')[0, 0], [1, 0, 0.5])
  np.testing.assert_allclose(options.normalize(pixel, 'torch')[0, 0],
                             [(1 - 0.485) / 0.229, -0.456 / 0.224, (0.5 - 0.406) / 0.225],
                             rtol=1e-6)


def test_augmentation_is_a_function_of_the_seed():
  fn = preprocess.make((48, 48, 3), resize='letterbox', augment='crop_flip',
                       normalization='unit', training=True)
  encoded = tf.constant(_gradient_jpeg(90, 150))
  a, b = (fn(encoded, tf.constant([0, 5], tf.int64)).numpy() for _ in range(2))
  c = fn(encoded, tf.constant([0, 6], tf.int64)).numpy()
  np.testing.assert_array_equal(a, b)
  assert np.abs(a - c).max() > 0.1
  evaluation = preprocess.make((48, 48, 3), resize='letterbox', augment='crop_flip',
                               normalization='unit', training=False)
  np.testing.assert_array_equal(evaluation(encoded, tf.constant([0, 5], tf.int64)),
                                evaluation(encoded, tf.constant([0, 6], tf.int64)))
