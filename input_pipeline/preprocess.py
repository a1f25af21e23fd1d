"""Per-example preprocessing on tf.data: decode, crop, resize, flip, normalise.

The choices (config.resize, config.augment, config.normalization) are listed
in options.py.

One example goes: encoded bytes -> a window of the decoded image -> the target
size -> (training) a random flip -> normalised float32. The window is:
  * training with augment='crop_flip': a random crop (Inception style: 25-100%
    of the area, aspect ratio 3/4-4/3);
  * resize='center_crop': the central 87.5% of the image, at the target's
    aspect ratio (the ImageNet evaluation convention);
  * otherwise the whole image.
JPEGs are decoded and cropped in one op, which decodes only the window's blocks.
Then `resize` scales the window to the target: 'resize' stretches it;
'letterbox' scales the longer side to the target keeping the aspect ratio and
pads the shorter side symmetrically with black (reference experiment 2,
docs/reference-experiments.md#2-resnet50-transfer); after a
center crop the window already has the target's aspect ratio.

Every random choice comes from a stateless op seeded by (seed, example index),
so the same seed gives the same batches whatever tf.data's parallelism.
"""

import tensorflow as tf

from input_pipeline import options

CENTER_CROP_FRACTION = 0.875
CROP_AREA = (0.25, 1.0)
CROP_ASPECT = (3 / 4, 4 / 3)


def decode_window(encoded, channels, window_fn):
  """uint8 [h, w, channels]: the window `window_fn(hw) -> [y, x, h, w]` of an encoded image.

  `hw` is the full image's int32 [height, width]. Any format tf.io.decode_image
  reads is accepted; JPEGs skip decoding what lies outside the window.
  """
  def jpeg():
    hw = tf.image.extract_jpeg_shape(encoded)[:2]
    return tf.io.decode_and_crop_jpeg(encoded, window_fn(hw), channels=channels)

  def other():
    # GIF and BMP decode only to RGB(A); grayscale is converted after decoding.
    image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
    if channels == 1:
      image = tf.image.rgb_to_grayscale(image)
    y, x, h, w = tf.unstack(window_fn(tf.shape(image)[:2]))
    return image[y:y + h, x:x + w]

  image = tf.cond(tf.io.is_jpeg(encoded), jpeg, other)
  return tf.ensure_shape(image, [None, None, channels])


def full_window(hw):
  return tf.stack([0, 0, hw[0], hw[1]])


def center_window(hw, target_hw, fraction=CENTER_CROP_FRACTION):
  """The central window with the target's aspect ratio, `fraction` of the largest such."""
  h, w = tf.cast(hw[0], tf.float32), tf.cast(hw[1], tf.float32)
  aspect = target_hw[1] / target_hw[0]
  crop_h = tf.minimum(h, w / aspect) * fraction
  size = tf.maximum(tf.cast(tf.round(tf.stack([crop_h, crop_h * aspect])), tf.int32), 1)
  size = tf.minimum(size, hw)
  offset = (hw - size) // 2
  return tf.concat([offset, size], 0)


def random_window(hw, seed, channels):
  """A random crop of CROP_AREA of the image area at an aspect ratio in CROP_ASPECT."""
  begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
      tf.concat([hw, [channels]], 0), bounding_boxes=tf.constant([[[0.0, 0.0, 1.0, 1.0]]]),
      seed=seed, min_object_covered=CROP_AREA[0], aspect_ratio_range=CROP_ASPECT,
      area_range=CROP_AREA, max_attempts=10, use_image_if_no_bounding_boxes=True)
  return tf.concat([begin[:2], size[:2]], 0)


def letterbox(image, target_hw):
  """float32 [target_h, target_w, c]: `image` scaled to fit, keeping its aspect ratio,
  and centred on a black canvas (the odd pixel of padding goes below / right)."""
  hw = tf.cast(tf.shape(image)[:2], tf.float32)
  target = tf.constant(target_hw, tf.float32)
  scale = tf.reduce_min(target / hw)
  new_hw = tf.clip_by_value(tf.cast(tf.round(hw * scale), tf.int32), 1, list(target_hw))
  resized = tf.image.resize(image, new_hw)
  pad = tf.constant(target_hw, tf.int32) - new_hw
  before = pad // 2
  return tf.pad(resized, tf.stack([[before[0], pad[0] - before[0]],
                                   [before[1], pad[1] - before[1]], [0, 0]]))


def make(image_shape, *, resize, augment, normalization, training, on_device=False):
  """f(encoded, seed) -> float32 image of `image_shape`; `seed` is an int32/int64 pair.

  Augmentation happens only when `training`. `on_device`: uint8 pixels (rounded)
  instead, left for the step to normalise (options.normalize): a quarter of the
  bytes to copy to the device.
  """
  target_hw, channels = tuple(image_shape[:2]), image_shape[2]
  augment = augment if training else 'none'

  def fn(encoded, seed):
    crop_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    if augment == 'crop_flip':
      window_fn = lambda hw: random_window(hw, crop_seed, channels)
    elif resize == 'center_crop':
      window_fn = lambda hw: center_window(hw, target_hw)
    else:
      window_fn = full_window
    image = decode_window(encoded, channels, window_fn)
    if resize == 'letterbox':
      image = letterbox(image, target_hw)
    else:
      image = tf.image.resize(image, target_hw)
    if augment in ('flip', 'crop_flip'):
      image = tf.image.stateless_random_flip_left_right(image, flip_seed)
    if on_device:
      return tf.ensure_shape(tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8),
                             image_shape)
    return tf.ensure_shape(options.normalize(image, normalization), image_shape)
  return fn
