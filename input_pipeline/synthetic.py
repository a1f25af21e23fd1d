"""Synthetic batches: a dataset's shape and label range, generated on device.

The batches are created directly with the data-parallel sharding, so the timed
loop measures compute and never a host-to-device copy. Several distinct batches
are made and rotated so no step can reuse a cached result of the previous one.
"""

import functools

import jax
import jax.numpy as jnp


def make_batches(rng, *, num_batches, batch_size, image_shape, num_classes, sharding,
                 layout=lambda x: x):
  """Returns `num_batches` dicts {'image': float32 [B, *image_shape] in [0, 1), 'label': int32 [B]}.

  `batch_size` is the global batch; `sharding` splits its leading axis over devices.
  `layout` reshapes each array first (pmap's leading device axis): the values
  are drawn for the global batch, so they are the same in every layout.
  """
  @functools.partial(jax.jit, out_shardings=sharding)
  def one(key):
    k_image, k_label = jax.random.split(key)
    return {
        'image': layout(jax.random.uniform(k_image, (batch_size, *image_shape), jnp.float32)),
        'label': layout(jax.random.randint(k_label, (batch_size,), 0, num_classes, jnp.int32)),
    }
  batches = [one(key) for key in jax.random.split(rng, num_batches)]
  jax.block_until_ready(batches)
  return batches
