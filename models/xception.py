"""Xception exactly as Keras Applications builds it (keras/src/applications/xception.py).

Entry flow: two plain 3x3 convolutions (32 stride 2, 64, both valid), then
blocks 2-4 of two separable 3x3 convolutions (128, 256, 728) and a 3x3 stride-2
max pool, each added to a 1x1 stride-2 projection of its input. Middle flow:
blocks 5-12, three ReLU-separable-BatchNorm units of 728 added to the identity.
Exit flow: block 13 (728, 1024, pool, projected shortcut) and block 14
(separable 1536 and 2048 with ReLU). No convolution has a bias; BatchNorm has
Keras's defaults (epsilon 1e-3, momentum 0.99). 22,910,480 parameters with the
1000-class top, 20,861,480 without (54,528 of them BatchNorm statistics).

Layers are named as Keras names them. The four shortcut projections are unnamed
in Keras (conv2d, batch_normalization, ... in a file); here they are
`blockN_shortcut` and `blockN_shortcut_bn`, and the weight import pairs them
with Keras's auto-named layers in order.
"""

import functools

import flax.linen as nn

from models import registry
from models.layers import Classifier, SeparableConv2D, batch_norm


@registry.register('xception')
class Xception(Classifier):
  default_image_shape = (299, 299, 3)
  normalization = 'tf'  # keras.applications.xception.preprocess_input: [-1, 1]

  def features(self, x, train):
    norm = functools.partial(batch_norm, train, momentum=0.99, epsilon=1e-3, dtype=self.dtype)
    conv = functools.partial(nn.Conv, use_bias=False, dtype=self.dtype,
                             kernel_init=self.kernel_init)
    sep = functools.partial(SeparableConv2D, dtype=self.dtype, kernel_init=self.kernel_init)

    x = nn.relu(norm(name='block1_conv1_bn')(
        conv(32, (3, 3), (2, 2), padding='VALID', name='block1_conv1')(x)))
    x = nn.relu(norm(name='block1_conv2_bn')(
        conv(64, (3, 3), padding='VALID', name='block1_conv2')(x)))

    def downsampling_block(x, block, widths, relu_first):
      shortcut = conv(widths[-1], (1, 1), (2, 2), padding='SAME', name=f'block{block}_shortcut')(x)
      shortcut = norm(name=f'block{block}_shortcut_bn')(shortcut)
      for unit, width in enumerate(widths, 1):
        if unit > 1 or relu_first:
          x = nn.relu(x)
        x = norm(name=f'block{block}_sepconv{unit}_bn')(
            sep(width, name=f'block{block}_sepconv{unit}')(x))
      x = nn.max_pool(x, (3, 3), strides=(2, 2), padding='SAME')
      return x + shortcut

    x = downsampling_block(x, 2, (128, 128), relu_first=False)
    x = downsampling_block(x, 3, (256, 256), relu_first=True)
    x = downsampling_block(x, 4, (728, 728), relu_first=True)
    for block in range(5, 13):
      shortcut = x
      for unit in range(1, 4):
        x = norm(name=f'block{block}_sepconv{unit}_bn')(
            sep(728, name=f'block{block}_sepconv{unit}')(nn.relu(x)))
      x = x + shortcut
    x = downsampling_block(x, 13, (728, 1024), relu_first=True)
    for unit, width in enumerate((1536, 2048), 1):
      x = nn.relu(norm(name=f'block14_sepconv{unit}_bn')(
          sep(width, name=f'block14_sepconv{unit}')(x)))
    return x
