"""Synthetic batches: a dataset's shape and label range, placed on the devices.

The batches are placed before timing, directly with the data-parallel sharding,
so the timed loop measures compute and never a host-to-device copy. Several
distinct batches are made and rotated so no step can reuse a cached result of
the previous one.

The values are drawn on the host with numpy, not with jax.random on the device:
a jitted generator costs seconds of XLA compilation on a CPU for every new batch
shape (as much as compiling a small model's train step), while what is drawn
does not matter. Every process draws the same global batches from the same key
and places the rows its devices hold.
"""

import jax
import numpy as np


def make_batches(rng, *, num_batches, batch_size, image_shape, num_classes, sharding,
                 layout=lambda x: x, uint8=False):
  """Returns `num_batches` dicts {'image': float32 [B, *image_shape] in [0, 1), 'label': int32 [B]}
  (`uint8`: images of uint8 pixels in [0, 255], as a pipeline that leaves normalising
  to the step delivers them).

  `rng` is a jax key that fixes the values. `batch_size` is the global batch;
  `sharding` splits its leading axis over devices. `layout` reshapes each array
  first (pmap's leading device axis): the values are drawn for the global batch,
  so they are the same in every layout.
  """
  generator = np.random.default_rng(np.asarray(jax.random.key_data(rng)))

  def place(x):
    x = layout(x)
    return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])

  def images():
    shape = (batch_size, *image_shape)
    if uint8:
      return generator.integers(0, 256, shape, np.uint8)
    return generator.random(shape, np.float32)

  batches = [{'image': place(images()),
              'label': place(generator.integers(0, num_classes, (batch_size,), np.int32))}
             for _ in range(num_batches)]
  jax.block_until_ready(batches)
  return batches
