"""The width-sweep nets of reference experiment 6: a small encoder-decoder CNN whose
width is NF, plain, with U-Net skip connections, or with residual blocks.

The experiment (docs/reference-experiments.md#6-width-sweep-and-skip-connections)
only says "number of filters NF at kernel k", "U-Net-style skip
connections" and "residual blocks"; this is the design, the same in all three
except for the skips (input 32x32, k = kernel_size, every conv 'same'):

  enc1  unit(NF)        32x32       a unit is conv k -> BN -> ReLU -> conv k -> BN -> ReLU
        max pool 2      16x16
  enc2  unit(2 NF)      16x16
        max pool 2       8x8
  mid   unit(4 NF)       8x8
  up2   conv-transpose 2x2 stride 2 to 2 NF, ReLU     16x16
  dec2  unit(2 NF)      16x16       unet: its input is concat(up2, enc2), 4 NF channels
  up1   conv-transpose 2x2 stride 2 to NF, ReLU       32x32
  dec1  unit(NF)        32x32       unet: its input is concat(up1, enc1), 2 NF channels
  top   global average pool -> Dense num_classes

In `width_resnet` every unit is a residual block: ReLU(x' + BN(conv(ReLU(BN(conv(x)))))),
where x' is x, or a 1x1 conv + BN of x where the width changes.
"""

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from models import registry
from models.layers import Classifier, KERAS_KERNEL_INIT, batch_norm, max_pool

SKIPS = ('none', 'unet', 'residual')


class Unit(nn.Module):
  width: int
  kernel_size: int
  residual: bool
  dtype: Any

  @nn.compact
  def __call__(self, x, train):
    def conv(width, size, name):
      return nn.Conv(width, (size, size), padding='SAME', dtype=self.dtype,
                     kernel_init=KERAS_KERNEL_INIT, name=name)

    def norm(name):
      return batch_norm(train, momentum=0.99, epsilon=1e-3, dtype=self.dtype, name=name)

    y = nn.relu(norm('bn1')(conv(self.width, self.kernel_size, 'conv1')(x)))
    y = norm('bn2')(conv(self.width, self.kernel_size, 'conv2')(y))
    if self.residual:
      shortcut = x if x.shape[-1] == self.width else norm('proj_bn')(conv(self.width, 1, 'proj')(x))
      y = y + shortcut
    return nn.relu(y)


@registry.register('width_net', skip='none')
@registry.register('width_unet', skip='unet')
@registry.register('width_resnet', skip='residual')
class WidthNet(Classifier):
  num_classes: int = 10
  nf: int = 32  # the seeds swept 16, 32, 48, 64, 80, 96, 128
  kernel_size: int = 3
  skip: str = 'none'  # none | unet | residual
  pool_impl: str = 'reshape'  # layers.POOL_IMPLS

  default_image_shape = (32, 32, 3)

  @classmethod
  def family_problem(cls, values):
    for field in ('nf', 'kernel_size'):
      value = values[field]
      if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        return f'{field} {value!r} must be a positive integer'
    if values['skip'] not in SKIPS:
      return f'skip {values["skip"]!r} must be one of {", ".join(SKIPS)}'
    return None

  def features(self, x, train):
    nf, residual = self.nf, self.skip == 'residual'

    def unit(x, width, name):
      return Unit(width, self.kernel_size, residual, self.dtype, name=name)(x, train)

    def up(x, skip, width, name):
      x = nn.relu(nn.ConvTranspose(width, (2, 2), (2, 2), dtype=self.dtype,
                                   kernel_init=self.kernel_init, name=name)(x))
      return jnp.concatenate([x, skip], axis=-1) if self.skip == 'unet' else x

    enc1 = unit(x, nf, 'enc1')
    enc2 = unit(max_pool(enc1, 2, self.pool_impl), 2 * nf, 'enc2')
    x = unit(max_pool(enc2, 2, self.pool_impl), 4 * nf, 'mid')
    x = unit(up(x, enc2, 2 * nf, 'up2'), 2 * nf, 'dec2')
    return unit(up(x, enc1, nf, 'up1'), nf, 'dec1')
