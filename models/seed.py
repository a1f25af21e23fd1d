"""The seed MLP and CNN of SEEDS.md section 1 (CIFAR-10, 32x32x3, 10 classes).

The MLP has about twice the parameters of the CNN (445,450 vs 227,146) but far
fewer operations per example: convolution weights are shared across positions.
Widths are fields so that studies can sweep them; the defaults are the seeds'.
"""

from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from models import registry


@registry.register('seed_mlp')
class SeedMLP(nn.Module):
  """Flatten -> Dense 128 -> Dense 128 -> Dense 256 -> Dense num_classes, ReLU between."""
  num_classes: int = 10
  features: Sequence[int] = (128, 128, 256)
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    del train  # no dropout or normalisation
    x = x.reshape((x.shape[0], -1)).astype(self.dtype)
    for width in self.features:
      x = nn.relu(nn.Dense(width, dtype=self.dtype)(x))
    return nn.Dense(self.num_classes, dtype=self.dtype)(x)


@registry.register('seed_cnn')
class SeedCNN(nn.Module):
  """(Conv 3x3 valid, ReLU, MaxPool 2) x3 -> Flatten -> Dense 256 -> Dense num_classes.

  At 32x32 the feature map after the third pool is 2x2x128 = 512 features.
  """
  num_classes: int = 10
  filters: Sequence[int] = (32, 64, 128)
  dense: int = 256
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    del train
    x = x.astype(self.dtype)
    for width in self.filters:
      x = nn.relu(nn.Conv(width, (3, 3), padding='VALID', dtype=self.dtype)(x))
      x = nn.max_pool(x, (2, 2), strides=(2, 2))
    x = x.reshape((x.shape[0], -1))
    x = nn.relu(nn.Dense(self.dense, dtype=self.dtype)(x))
    return nn.Dense(self.num_classes, dtype=self.dtype)(x)
