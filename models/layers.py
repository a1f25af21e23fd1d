"""What the image families share: the backbone-plus-top contract, head specs, and
the Keras layers flax lacks (depthwise and separable convolutions).

Every image model is a `Classifier`: a backbone (`features`) followed by a top
in a submodule named `top`. The top pools the feature map, applies the layers of
the `head` spec and ends in a Dense of `num_classes` named `predictions`, as
Keras Applications name theirs. With `include_top=False` the model returns the
pooled features (or, with `pooling='none'`, the feature map itself), which is
what transfer learning and feature caching consume. Keeping the top in its own
submodule lets callers tell backbone parameters from head parameters by path.

Kernels start from glorot_uniform and biases from zeros, as in Keras, because
most families here reproduce Keras models whose training runs we compare with.
"""

import contextlib
import contextvars
import dataclasses
import functools
from typing import Any

import flax.linen as nn
import jax.numpy as jnp
from jax import lax

POOLINGS = ('avg', 'max', 'flatten', 'none')

ACTIVATIONS = {
    'relu': nn.relu,
    'relu6': nn.relu6,
    'sigmoid': nn.sigmoid,
    'tanh': jnp.tanh,
    # Keras's LeakyReLU layer slope (the seeds' leaky ReLU), not flax's 0.01.
    'leaky_relu': functools.partial(nn.leaky_relu, negative_slope=0.3),
    'gelu': nn.gelu,
    'swish': nn.swish,
    'linear': lambda x: x,
}

KERAS_KERNEL_INIT = nn.initializers.glorot_uniform()

# How a model's non-overlapping max pools run (the case field `pool_impl`): 'reshape'
# folds each window into two axes of its own and takes their max; 'flax' is
# nn.max_pool. Their values are equal, and so are their gradients wherever a window's
# maximum is unique (at a tie 'flax' gives the gradient to one element, 'reshape'
# shares it: after a ReLU the common tie is zeros, whose gradient the ReLU stops).
# XLA:CPU expands reduce-window max's gradient into iotas, a variadic reduce-window
# and a scatter; the reshape's gradient is a compare and a select. Tried and not kept:
# the max of each window's strided slices, rows then columns (any window, overlapping
# too). Its relu -> pool -> loss gradient alone was 2-4x the reshape's speed, yet in the
# seed CNN's step it was 1.17x slower at b256 and no faster at b32, and ResNet-18's 3x3/2
# stem pool gained nothing (bench.ab, fresh processes).
POOL_IMPLS = ('reshape', 'flax')


def max_pool(x, size, impl='reshape'):
  """Max pooling of NHWC `x` over size x size windows at stride `size`, VALID (a
  remainder row or column dropped), as nn.max_pool, by `impl` (POOL_IMPLS)."""
  if impl == 'flax':
    return nn.max_pool(x, (size, size), strides=(size, size))
  n, h, w, c = x.shape
  rows, cols = h // size, w // size
  x = x[:, :rows * size, :cols * size]
  return jnp.max(x.reshape(n, rows, size, cols, size, c), axis=(2, 4))


def parse_head(spec):
  """[('dropout', rate) | ('dense', units, activation)] from a spec such as
  'dropout:0.5,dense:512:relu' (the classifier Dense is not part of the spec).

  Raises ValueError naming the item that cannot be read.
  """
  layers = []
  for item in (part.strip() for part in spec.split(',')):
    if not item:
      continue
    kind, *args = item.split(':')
    try:
      if kind == 'dropout' and len(args) == 1 and 0 <= float(args[0]) < 1:
        layers.append(('dropout', float(args[0])))
        continue
      if (kind == 'dense' and len(args) in (1, 2) and int(args[0]) > 0
          and (len(args) == 1 or args[1] in ACTIVATIONS)):
        layers.append(('dense', int(args[0]), args[1] if len(args) == 2 else 'linear'))
        continue
    except ValueError:
      pass
    raise ValueError(f'head item {item!r} is not dropout:RATE (0 <= RATE < 1) or '
                     f'dense:UNITS[:ACTIVATION] with ACTIVATION one of {", ".join(ACTIVATIONS)}')
  return layers


def pool(x, pooling):
  if pooling == 'avg':
    return x.mean(axis=(1, 2))
  if pooling == 'max':
    return x.max(axis=(1, 2))
  if pooling == 'flatten':
    return x.reshape((x.shape[0], -1))
  return x


class Top(nn.Module):
  """Pooling, the head spec's layers (Dense layers named fc1, fc2, ...), predictions."""
  num_classes: int
  pooling: str
  head: str
  dtype: Any
  kernel_init: Any

  @nn.compact
  def __call__(self, x, train):
    x = pool(x, self.pooling)
    dense = 0
    for layer in parse_head(self.head):
      if layer[0] == 'dropout':
        x = nn.Dropout(layer[1], deterministic=not train)(x)
      else:
        dense += 1
        x = nn.Dense(layer[1], dtype=self.dtype, kernel_init=self.kernel_init,
                     name=f'fc{dense}')(x)
        x = ACTIVATIONS[layer[2]](x)
    return nn.Dense(self.num_classes, dtype=self.dtype, kernel_init=self.kernel_init,
                    name='predictions')(x)


class FeatureHead(nn.Module):
  """A Classifier's top alone, on its backbone's output: pooled features (pooling
  'flatten' keeps them as they are) or the feature map (the model's own pooling)."""
  num_classes: int
  head: str = ''
  dtype: Any = jnp.float32
  kernel_init: Any = KERAS_KERNEL_INIT
  pooling: str = 'flatten'

  @nn.compact
  def __call__(self, x, train: bool = False):
    return Top(self.num_classes, self.pooling, self.head, self.dtype, self.kernel_init,
               name='top')(x, train)


def without_top(variables):
  """`variables` less the top's parameters: what a Classifier's backbone reads."""
  return {**variables, 'params': {k: v for k, v in variables['params'].items() if k != 'top'}}


class Classifier(nn.Module):
  """Base of the image families: subclasses define `features(x, train)`."""
  num_classes: int = 1000
  dtype: Any = jnp.float32
  include_top: bool = True
  pooling: str = 'avg'  # avg | max | flatten | none (no top only: the feature map)
  head: str = ''  # layers between pooling and predictions, e.g. 'dropout:0.5,dense:512:relu'

  # Not fields: what the family was designed for, and how its kernels start.
  default_image_shape = (224, 224, 3)
  kernel_init = staticmethod(KERAS_KERNEL_INIT)

  def features(self, x, train):
    raise NotImplementedError

  @nn.compact
  def __call__(self, x, train: bool = False):
    x = self.features(x.astype(self.dtype), train)
    if not self.include_top:
      return pool(x, self.pooling)
    return Top(self.num_classes, self.pooling, self.head, self.dtype, self.kernel_init,
               name='top')(x, train)

  def backbone_and_head(self, pooled=True):
    """(the backbone alone; the top alone, on the backbone's output).

    The backbone returns pooled features, or with `pooled=False` the feature map,
    which the head then pools. Both take the full model's variables without
    renaming: the backbone `without_top(variables)`, the head {'params': {'top':
    ...}}. Feature caching runs the first once and trains the second; Grad-CAM
    differentiates the head at the feature map.
    """
    backbone = self.clone(include_top=False, pooling=self.pooling if pooled else 'none')
    head = FeatureHead(self.num_classes, self.head, self.dtype, self.kernel_init,
                       pooling='flatten' if pooled else self.pooling, parent=None)
    return backbone, head

  @classmethod
  def kwarg_problem(cls, kwargs):
    """The first invalid value among `kwargs` (over the field defaults), or None."""
    values = {f.name: f.default for f in dataclasses.fields(cls)
              if f.default is not dataclasses.MISSING}
    values.update(kwargs)
    if not isinstance(values['include_top'], bool):
      return f'include_top must be True or False, got {values["include_top"]!r}'
    if values['pooling'] not in POOLINGS:
      return f'pooling {values["pooling"]!r} must be one of {", ".join(POOLINGS)}'
    if not isinstance(values['head'], str):
      return f'head must be a string such as "dropout:0.5,dense:512:relu", got {values["head"]!r}'
    try:
      parse_head(values['head'])
    except ValueError as e:
      return str(e)
    if values['include_top'] and values['pooling'] == 'none':
      return "pooling 'none' keeps the feature map, which the top cannot classify; use avg, max or flatten"
    if not values['include_top'] and values['head']:
      return 'a head needs include_top=True (without a top the model returns features)'
    return cls.family_problem(values)

  @classmethod
  def family_problem(cls, values):
    """Subclasses check their own fields in `values` (all fields, defaults filled in)."""
    del values
    return None


class BatchNorm(nn.BatchNorm):
  """nn.BatchNorm whose mode is `not train` unless the call says otherwise.

  Left in the constructor, `use_running_average` could not be overridden per
  call; here it can, which is how a frozen layer is put in inference mode while
  the rest of the model trains (bench/workload/transfer.py).
  """
  train: bool = False

  def __call__(self, x, use_running_average=None, *, mask=None):
    return super().__call__(x, use_running_average=(
        not self.train if use_running_average is None else use_running_average), mask=mask)


# The mapped axis BatchNorm layers average their batch moments over (see
# `cross_device_batch_norm`); None normalises over the batch the layer sees.
_BATCH_AXIS = contextvars.ContextVar('batch_axis', default=None)


@contextlib.contextmanager
def cross_device_batch_norm(axis_name):
  """Within this block, BatchNorm layers created by `batch_norm` (every model's)
  compute their moments over all devices of `axis_name`: a pmap step then
  normalises, and updates its statistics, with the global batch's moments, as a
  jit step over the sharded batch does. Layers are created while `apply` traces,
  so the block must enclose the `apply` call. None changes nothing."""
  token = _BATCH_AXIS.set(axis_name)
  try:
    yield
  finally:
    _BATCH_AXIS.reset(token)


def batch_norm(train, *, momentum, epsilon, dtype, name):
  return BatchNorm(train=train, momentum=momentum, epsilon=epsilon, dtype=dtype, name=name,
                   axis_name=_BATCH_AXIS.get())


def _conv(x, kernel, strides, padding, groups):
  return lax.conv_general_dilated(x, kernel, (strides, strides), padding,
                                  dimension_numbers=('NHWC', 'HWIO', 'NHWC'),
                                  feature_group_count=groups)


class DepthwiseConv2D(nn.Module):
  """Keras DepthwiseConv2D: a k x k filter per input channel (times depth_multiplier).

  The kernel is kept in Keras's layout (k, k, channels, multiplier), under
  Keras 3's name 'kernel', so imported weights need no reshaping; output channel c * multiplier + m is filter m of
  channel c, which is the order a grouped convolution produces.
  """
  kernel_size: int
  strides: int = 1
  padding: Any = 'SAME'
  depth_multiplier: int = 1
  use_bias: bool = False
  dtype: Any = jnp.float32
  kernel_init: Any = KERAS_KERNEL_INIT

  @nn.compact
  def __call__(self, x):
    k, c, m = self.kernel_size, x.shape[-1], self.depth_multiplier
    kernel = self.param('kernel', self.kernel_init, (k, k, c, m))
    y = _conv(x, kernel.reshape(k, k, 1, c * m).astype(self.dtype), self.strides, self.padding, c)
    if self.use_bias:
      y = y + self.param('bias', nn.initializers.zeros, (c * m,)).astype(self.dtype)
    return y


class SeparableConv2D(nn.Module):
  """Keras SeparableConv2D: depthwise k x k, then a pointwise 1x1 to `features`.

  One module (one Keras layer) holding 'depthwise_kernel' (k, k, C, 1) and
  'pointwise_kernel' (1, 1, C, features), as Keras stores them.
  """
  features: int
  kernel_size: int = 3
  strides: int = 1
  padding: Any = 'SAME'
  use_bias: bool = False
  dtype: Any = jnp.float32
  kernel_init: Any = KERAS_KERNEL_INIT

  @nn.compact
  def __call__(self, x):
    k, c = self.kernel_size, x.shape[-1]
    depthwise = self.param('depthwise_kernel', self.kernel_init, (k, k, c, 1))
    pointwise = self.param('pointwise_kernel', self.kernel_init, (1, 1, c, self.features))
    y = _conv(x, depthwise.reshape(k, k, 1, c).astype(self.dtype), self.strides, self.padding, c)
    y = _conv(y, pointwise.astype(self.dtype), 1, 'VALID', 1)
    if self.use_bias:
      y = y + self.param('bias', nn.initializers.zeros, (self.features,)).astype(self.dtype)
    return y
