"""The seed networks of reference experiments 1 and 3 (CIFAR-10, 32x32x3, 10 classes).

docs/reference-experiments.md#1-mlp-versus-cnn,
docs/reference-experiments.md#3-cifar-10-cnn-ablations

Section 1: the MLP has about twice the parameters of the CNN (445,450 vs
227,146) but far fewer operations per example: convolution weights are shared
across positions. Section 3: one configurable small CNN whose base has 21,032
parameters and whose ablations (more conv layers, bigger first kernel, a single
conv layer, other activations, BatchNorm first) are field changes.
Widths are fields so that studies can sweep them; the defaults are the seeds'.
"""

from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from models import registry
from models.layers import ACTIVATIONS, Classifier, batch_norm, max_pool


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
class SeedCNN(Classifier):
  """(Conv 3x3 valid, ReLU, MaxPool 2) x3 -> Flatten -> Dense 256 ReLU -> Dense num_classes.

  At 32x32 the feature map after the third pool is 2x2x128 = 512 features.
  """
  num_classes: int = 10
  pooling: str = 'flatten'
  head: str = 'dense:256:relu'
  filters: Sequence[int] = (32, 64, 128)
  pool_impl: str = 'reshape'  # layers.POOL_IMPLS

  default_image_shape = (32, 32, 3)

  def features(self, x, train):
    del train
    for i, width in enumerate(self.filters, 1):
      x = nn.relu(nn.Conv(width, (3, 3), padding='VALID', dtype=self.dtype,
                          kernel_init=self.kernel_init, name=f'conv{i}')(x))
      x = max_pool(x, 2, self.pool_impl)
    return x


def _positive_ints(values):
  return (isinstance(values, (tuple, list)) and len(values) > 0
          and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in values))


@registry.register('seed_cifar')
class SeedCIFAR(Classifier):
  """Reference experiment 3: [BatchNorm] -> Conv (same) -> Conv (valid)... -> MaxPools ->
  Flatten -> Dropout 0.3 -> Dense num_classes.

  The first convolution pads 'same', the others are 'valid'; `pools` are the
  max-pool sizes applied, in order, after the last convolution. The base
  (filters 7, 9; kernels 3, 3; pool 2) has 21,032 parameters. The ablations:
  3 or 4 conv layers: filters (7, 7, 9) / (7, 7, 7, 9), kernels all 3;
  first kernel 5 or 7: kernel_sizes (5, 3) / (7, 3);
  single conv layer: filters (7,), kernel_sizes (5,), pools (5, 2);
  activation sigmoid, tanh or leaky_relu (slope 0.3); batchnorm_first=True.
  """
  num_classes: int = 10
  pooling: str = 'flatten'
  head: str = 'dropout:0.3'
  filters: Sequence[int] = (7, 9)
  kernel_sizes: Sequence[int] = (3, 3)
  pools: Sequence[int] = (2,)
  activation: str = 'relu'
  batchnorm_first: bool = False
  pool_impl: str = 'reshape'  # layers.POOL_IMPLS

  default_image_shape = (32, 32, 3)

  @classmethod
  def family_problem(cls, values):
    for field in ('filters', 'kernel_sizes'):
      if not _positive_ints(values[field]):
        return f'{field} {values[field]!r} must be a non-empty list of positive integers'
    if len(values['filters']) != len(values['kernel_sizes']):
      return (f'filters {tuple(values["filters"])} and kernel_sizes '
              f'{tuple(values["kernel_sizes"])} must have one entry per conv layer')
    if not (values['pools'] == () or _positive_ints(values['pools'])):
      return f'pools {values["pools"]!r} must be a list of positive integers'
    if values['activation'] not in ACTIVATIONS:
      return f'activation {values["activation"]!r} must be one of {", ".join(ACTIVATIONS)}'
    return None

  def features(self, x, train):
    if self.batchnorm_first:
      x = batch_norm(train, momentum=0.99, epsilon=1e-3, dtype=self.dtype, name='input_bn')(x)
    activation = ACTIVATIONS[self.activation]
    for i, (width, size) in enumerate(zip(self.filters, self.kernel_sizes), 1):
      x = activation(nn.Conv(width, (size, size), padding='SAME' if i == 1 else 'VALID',
                             dtype=self.dtype, kernel_init=self.kernel_init, name=f'conv{i}')(x))
    for size in self.pools:
      x = max_pool(x, size, self.pool_impl)
    return x
