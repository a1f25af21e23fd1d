"""ResNet 18, 34, 50, 101 and 152 in two layouts.

`variant='keras'` is Keras Applications' ResNet v1 (keras/src/applications/resnet.py):
the stride of a bottleneck block sits in its first 1x1 convolution, every
convolution has a bias, BatchNorm has epsilon 1.001e-5 and momentum 0.99, and
layers are named as Keras names them (conv1_conv, conv2_block1_1_conv, ...), so
Keras `.h5` weights load by name. ResNet50 has Keras's 25,636,712 parameters
(23,587,712 without the top; 53,120 of them BatchNorm statistics).

`variant='v1_5'` is the torchvision / MLPerf layout: stride in the bottleneck's
3x3, convolutions without bias, BatchNorm epsilon 1e-5 and momentum 0.9 (torch's
0.1), symmetric padding, He-normal (fan-out) kernels. ResNet50 v1.5 has
25,557,032 parameters and ~4.1 GMACs per 224x224 image.

Keras has no ResNet18/34; their `keras` variant is the basic-block network with
Keras's conventions (bias, epsilon, init) so the two variants differ only there.
A block projects its shortcut (1x1 convolution + BatchNorm, named `0_conv`,
`0_bn`) when it changes the stride or the width, which for the bottleneck nets
is Keras's rule of the first block of each stage.
"""

import collections
import functools
from typing import Any

import flax.linen as nn

from models import registry
from models.layers import Classifier, KERAS_KERNEL_INIT, batch_norm

# depth -> (block kind, blocks per stage)
DEPTHS = {
    18: ('basic', (2, 2, 2, 2)),
    34: ('basic', (3, 4, 6, 3)),
    50: ('bottleneck', (3, 4, 6, 3)),
    101: ('bottleneck', (3, 4, 23, 3)),
    152: ('bottleneck', (3, 8, 36, 3)),
}
Layout = collections.namedtuple('Layout', 'use_bias kernel_init momentum epsilon')
LAYOUTS = {
    'keras': Layout(True, KERAS_KERNEL_INIT, 0.99, 1.001e-5),
    'v1_5': Layout(False, nn.initializers.variance_scaling(2.0, 'fan_out', 'normal'), 0.9, 1e-5),
}
VARIANTS = tuple(LAYOUTS)
_STAGE_WIDTHS = (64, 128, 256, 512)
_PAD1 = ((1, 1), (1, 1))


def _conv_and_norm(variant, train, dtype):
  """The Conv and BatchNorm constructors of `variant`'s layout."""
  layout = LAYOUTS[variant]
  conv = functools.partial(nn.Conv, use_bias=layout.use_bias, dtype=dtype,
                           kernel_init=layout.kernel_init)
  norm = functools.partial(batch_norm, train, momentum=layout.momentum, epsilon=layout.epsilon,
                           dtype=dtype)
  return conv, norm


class Block(nn.Module):
  """A basic (two 3x3) or bottleneck (1x1, 3x3, 1x1 x4) residual block."""
  kind: str
  width: int
  strides: int
  variant: str
  dtype: Any

  @nn.compact
  def __call__(self, x, train):
    conv, norm = _conv_and_norm(self.variant, train, self.dtype)
    s = (self.strides, self.strides)
    out_width = self.width * (4 if self.kind == 'bottleneck' else 1)
    if self.strides != 1 or x.shape[-1] != out_width:
      shortcut = conv(out_width, (1, 1), s, padding='VALID', name='0_conv')(x)
      shortcut = norm(name='0_bn')(shortcut)
    else:
      shortcut = x
    if self.kind == 'basic':
      y = nn.relu(norm(name='1_bn')(conv(self.width, (3, 3), s, padding=_PAD1, name='1_conv')(x)))
      y = norm(name='2_bn')(conv(self.width, (3, 3), padding=_PAD1, name='2_conv')(y))
    else:
      first, middle = (s, (1, 1)) if self.variant == 'keras' else ((1, 1), s)
      y = nn.relu(norm(name='1_bn')(conv(self.width, (1, 1), first, padding='VALID',
                                         name='1_conv')(x)))
      y = nn.relu(norm(name='2_bn')(conv(self.width, (3, 3), middle, padding=_PAD1,
                                         name='2_conv')(y)))
      y = norm(name='3_bn')(conv(out_width, (1, 1), padding='VALID', name='3_conv')(y))
    return nn.relu(shortcut + y)


@registry.register('resnet18', depth=18)
@registry.register('resnet34', depth=34)
@registry.register('resnet50', depth=50)
@registry.register('resnet101', depth=101)
@registry.register('resnet152', depth=152)
class ResNet(Classifier):
  depth: int = 50
  variant: str = 'keras'  # keras | v1_5 (see the module docstring)

  default_image_shape = (224, 224, 3)
  normalization = 'caffe'  # keras.applications.resnet50.preprocess_input

  @property
  def kernel_init(self):  # the head's Dense layers start as the backbone's kernels do
    return LAYOUTS[self.variant].kernel_init

  @classmethod
  def family_problem(cls, values):
    if values['variant'] not in VARIANTS:
      return f'variant {values["variant"]!r} must be one of {", ".join(VARIANTS)}'
    if values['depth'] not in DEPTHS:
      return f'depth {values["depth"]!r} must be one of {", ".join(map(str, DEPTHS))}'
    return None

  def features(self, x, train):
    conv, norm = _conv_and_norm(self.variant, train, self.dtype)
    x = conv(64, (7, 7), (2, 2), padding=((3, 3), (3, 3)), name='conv1_conv')(x)
    x = norm(name='conv1_bn')(x)
    # Keras zero-pads before this pool, flax pads with -inf: equal after the ReLU.
    x = nn.max_pool(nn.relu(x), (3, 3), strides=(2, 2), padding=_PAD1)
    kind, blocks = DEPTHS[self.depth]
    for stage, (width, count) in enumerate(zip(_STAGE_WIDTHS, blocks)):
      for b in range(count):
        strides = 2 if stage > 0 and b == 0 else 1
        x = Block(kind, width, strides, self.variant, self.dtype,
                  name=f'conv{stage + 2}_block{b + 1}')(x, train)
    return x
