"""A model that fails inside the traced train step, as an out-of-memory compile or run
would; importing this module registers it as 'exploding' (tests, and config files the
tests write for a subprocess)."""

import flax.linen as nn
import jax.numpy as jnp

import models


@models.register('exploding')
class Exploding(nn.Module):
  num_classes: int = 10
  dtype: object = jnp.float32

  @nn.compact
  def __call__(self, x, train=False):
    logits = nn.Dense(self.num_classes)(x.reshape((x.shape[0], -1)))
    if train:
      raise MemoryError('RESOURCE_EXHAUSTED: pretend the device ran out of memory')
    return logits
