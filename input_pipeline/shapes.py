"""The embedded dataset: six classes of shapes, generated on the machine.

`ensure(data_dir)` writes DATA_DIR/shapes/VERSION/<class>/<nnn>.jpg|.png once
(an image folder, see folder.py) and returns its path. Every image is drawn from
a fixed seed: a noisy background colour, one shape of another colour at a random
place and scale, at a random size between 48 and 320 pixels on each side (never
square by design), three in four encoded as JPEG and the rest as PNG. So the
demo and the tests read, decode, crop, letterbox and flip real encoded images of
varied sizes without any download.

The folder is generated in a temporary directory and renamed into place, so an
interrupted generation leaves no partial dataset behind.
"""

import os
import shutil
import tempfile

import numpy as np
import tensorflow as tf

from bench.core.errors import UserError

VERSION = '1.0.0'
CLASSES = ('circle', 'cross', 'diamond', 'ring', 'square', 'triangle')
IMAGES_PER_CLASS = 60
SIZE_RANGE = (48, 320)
_SEED = 20261122


def _mask(kind, h, w, cy, cx, r):
  y, x = np.mgrid[:h, :w].astype(np.float32)
  dy, dx = y - cy, x - cx
  if kind == 'circle':
    return dx ** 2 + dy ** 2 <= r ** 2
  if kind == 'ring':
    return (dx ** 2 + dy ** 2 <= r ** 2) & (dx ** 2 + dy ** 2 >= (0.6 * r) ** 2)
  if kind == 'square':
    return (np.abs(dx) <= r) & (np.abs(dy) <= r)
  if kind == 'diamond':
    return np.abs(dx) + np.abs(dy) <= r
  if kind == 'cross':
    return (((np.abs(dx) <= r / 3) & (np.abs(dy) <= r))
            | ((np.abs(dy) <= r / 3) & (np.abs(dx) <= r)))
  if kind == 'triangle':  # apex up, base at cy + r
    return (dy >= -r) & (dy <= r) & (np.abs(dx) <= (dy + r) / 2)
  raise ValueError(kind)


def draw(rng, kind):
  """uint8 [h, w, 3]: one shape of `kind` on a noisy background."""
  h, w = rng.integers(SIZE_RANGE[0], SIZE_RANGE[1] + 1, size=2)
  if h == w:
    w = w + 1 if w < SIZE_RANGE[1] else w - 1
  background, foreground = rng.integers(0, 256, size=(2, 3))
  # Keep the shape visible: at least 96 levels apart in some channel.
  while np.abs(background - foreground).max() < 96:
    foreground = rng.integers(0, 256, size=3)
  r = rng.uniform(0.2, 0.45) * min(h, w)
  cy, cx = rng.uniform(r, h - r), rng.uniform(r, w - r)
  image = np.where(_mask(kind, h, w, cy, cx, r)[..., None], foreground, background)
  image = image + rng.normal(0, 8, size=image.shape)
  return np.clip(np.round(image), 0, 255).astype(np.uint8)


def _write(root, images_per_class):
  for c, kind in enumerate(CLASSES):
    os.makedirs(os.path.join(root, kind))
    for i in range(images_per_class):
      # One generator per image: image i of a class is the same whatever the count.
      image = draw(np.random.default_rng([_SEED, c, i]), kind)
      if i % 4 == 3:
        data, ext = tf.io.encode_png(image), 'png'
      else:
        data, ext = tf.io.encode_jpeg(image, quality=90), 'jpg'
      with open(os.path.join(root, kind, f'{i:03d}.{ext}'), 'wb') as f:
        f.write(data.numpy())


def ensure(data_dir, images_per_class=IMAGES_PER_CLASS):
  """Path of the generated image folder under `data_dir`, writing it if it is missing."""
  path = os.path.join(data_dir, 'shapes', VERSION)
  if os.path.isdir(path):
    return path
  parent = os.path.dirname(path)
  try:
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(dir=parent, prefix=f'.{VERSION}.tmp-')
  except OSError as e:
    raise UserError(f'cannot write the generated shapes dataset to {parent} ({e.strerror or e}); '
                    'pass --config.data_dir=DIR with a directory you can write') from None
  try:
    _write(tmp, images_per_class)
    os.rename(tmp, path)
  except OSError:
    if not os.path.isdir(path):
      raise
    # Another process generated it first: identical content, keep theirs.
  finally:
    shutil.rmtree(tmp, ignore_errors=True)
  return path
