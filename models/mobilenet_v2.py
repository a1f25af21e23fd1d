"""MobileNetV2 exactly as Keras Applications builds it (keras/src/applications/mobilenet_v2.py).

A 3x3 stride-2 convolution of 32 * alpha filters, 17 inverted-residual blocks
(expand 1x1 to 6x the input width, except block 0; depthwise 3x3; linear 1x1
projection; identity added when the shape is unchanged), a 1x1 convolution to
1280 (1280 * alpha when alpha > 1), ReLU6 throughout, no convolution bias, and
BatchNorm with epsilon 1e-3 and momentum 0.999. Widths are rounded as Keras's
`_make_divisible` rounds them. Alpha 1.0 has 3,538,984 parameters with the
1000-class top and 2,257,984 without (34,112 of them BatchNorm statistics).

Stride-2 depthwise convolutions pad as Keras's `correct_pad` + valid, which is
TF's 'SAME' (one extra row and column after the input when it is even).
Layers are named as in Keras (Conv1, bn_Conv1, block_N_expand, ...,
expanded_conv_depthwise for block 0, Conv_1, Conv_1_bn).
"""

import functools
from typing import Any

import flax.linen as nn

from models import registry
from models.layers import Classifier, DepthwiseConv2D, KERAS_KERNEL_INIT, batch_norm

# (expansion, output filters, stride) of blocks 0..16.
_BLOCKS = ((1, 16, 1),
           (6, 24, 2), (6, 24, 1),
           (6, 32, 2), (6, 32, 1), (6, 32, 1),
           (6, 64, 2), (6, 64, 1), (6, 64, 1), (6, 64, 1),
           (6, 96, 1), (6, 96, 1), (6, 96, 1),
           (6, 160, 2), (6, 160, 1), (6, 160, 1),
           (6, 320, 1))


def make_divisible(value, divisor=8):
  """Keras's rounding of a width to a multiple of `divisor`, never more than 10% down."""
  rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
  return rounded + divisor if rounded < 0.9 * value else rounded


def _norm(train, dtype, name):
  return batch_norm(train, momentum=0.999, epsilon=1e-3, dtype=dtype, name=name)


class InvertedResidual(nn.Module):
  expansion: int
  filters: int
  strides: int
  dtype: Any

  @nn.compact
  def __call__(self, x, train):
    conv = functools.partial(nn.Conv, kernel_size=(1, 1), use_bias=False, dtype=self.dtype,
                             kernel_init=KERAS_KERNEL_INIT)
    y = x
    if self.expansion != 1:
      y = conv(self.expansion * x.shape[-1], name='expand')(y)
      y = nn.relu6(_norm(train, self.dtype, 'expand_BN')(y))
    y = DepthwiseConv2D(3, self.strides, dtype=self.dtype, name='depthwise')(y)
    y = nn.relu6(_norm(train, self.dtype, 'depthwise_BN')(y))
    y = _norm(train, self.dtype, 'project_BN')(conv(self.filters, name='project')(y))
    if self.strides == 1 and x.shape[-1] == self.filters:
      y = x + y
    return y


@registry.register('mobilenet_v2')
class MobileNetV2(Classifier):
  alpha: float = 1.0  # width multiplier (Keras ships weights for 0.35 to 1.4)

  default_image_shape = (224, 224, 3)
  normalization = 'tf'  # keras.applications.mobilenet_v2.preprocess_input: [-1, 1]

  @classmethod
  def family_problem(cls, values):
    alpha = values['alpha']
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or alpha <= 0:
      return f'alpha {alpha!r} must be a number > 0'
    return None

  def features(self, x, train):
    x = nn.Conv(make_divisible(32 * self.alpha), (3, 3), (2, 2), padding='SAME', use_bias=False,
                dtype=self.dtype, kernel_init=self.kernel_init, name='Conv1')(x)
    x = nn.relu6(_norm(train, self.dtype, 'bn_Conv1')(x))
    for i, (expansion, filters, strides) in enumerate(_BLOCKS):
      x = InvertedResidual(expansion, make_divisible(int(filters * self.alpha)), strides,
                           self.dtype, name=f'block_{i}' if i else 'expanded_conv')(x, train)
    last = make_divisible(1280 * self.alpha) if self.alpha > 1.0 else 1280
    x = nn.Conv(last, (1, 1), use_bias=False, dtype=self.dtype, kernel_init=self.kernel_init,
                name='Conv_1')(x)
    return nn.relu6(_norm(train, self.dtype, 'Conv_1_bn')(x))
