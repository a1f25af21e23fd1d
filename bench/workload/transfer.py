"""Transfer-learning modes: which layers train, and frozen layers kept exactly as loaded.

  scratch          every layer trains
  feature_extract  only the classifier top trains; the backbone is frozen
  finetune         the top and the backbone's last `finetune_blocks` blocks train, or
                   every layer from `finetune_from` (a layer name) on

Layers are the top-level entries of a model's variables (Keras layer names, or
whole residual blocks for ResNet), in the order the forward pass calls them. A
block groups consecutive layers by their name's prefix: Xception's block14_*,
ResNet's conv5_block3, MobileNetV2's block_16.

Frozen means three things, as in Keras with `trainable=False`:
- no gradient is taken for a frozen parameter, and none flows back through the
  frozen layers before the first trainable one, so XLA compiles no backward pass
  for them (the train step's FLOPs drop, and the report shows by how much);
- the optimizer holds no state for frozen parameters and never updates them;
- a frozen BatchNorm normalises with its moving statistics and leaves them as
  they are. The train step copies frozen parameters and statistics through, so
  they stay bitwise equal to what was loaded.
"""

import re

import flax.linen as nn
import jax
import jax.numpy as jnp

from bench.core.errors import UserError

MODES = ('scratch', 'feature_extract', 'finetune')

_BLOCK = re.compile(r'(conv\d+_block\d+|block_?\d+|conv\d+)(?=_|$)', re.IGNORECASE)


def block_of(layer):
  """The block a top-level layer belongs to: 'block14_sepconv1_bn' -> 'block14'."""
  name = re.sub(r'^bn_|_bn$', '', layer)
  found = _BLOCK.match(name)
  return found.group(1) if found else name


def layer_order(model, image_shape):
  """Top-level layer names holding variables, in the order the forward pass calls them."""
  order = []

  def record(next_fun, args, kwargs, context):
    path = context.module.path
    if path and path[0] not in order:
      order.append(path[0])
    return next_fun(*args, **kwargs)

  with nn.intercept_methods(record):
    variables = jax.eval_shape(lambda: model.init(
        jax.random.key(0), jnp.zeros((1, *image_shape), jnp.float32), train=False))
  held = set(variables['params']) | set(variables.get('batch_stats', {}))
  return [name for name in order if name in held]


def frozen_layers(case, model, image_shape):
  """The frozenset of top-level layer names that do not train in `case`.

  Raises UserError when the mode does not fit the model or names no layer.
  """
  if case.transfer == 'scratch':
    return frozenset()
  order = layer_order(model, image_shape)
  if 'top' not in order:
    raise UserError(f'transfer {case.transfer!r} needs a model with a classifier top to train '
                    f'on a frozen backbone; {case.model!r} has none (use transfer=scratch)')
  backbone = [name for name in order if name != 'top']
  if case.transfer == 'feature_extract':
    return frozenset(backbone)
  if case.finetune_from:
    if case.finetune_from not in backbone:
      raise UserError(f'finetune_from={case.finetune_from!r} is not a layer of '
                      f'{case.model!r}; its layers, in order: {", ".join(backbone)}')
    return frozenset(backbone[:backbone.index(case.finetune_from)])
  blocks = []
  for name in backbone:
    if not blocks or blocks[-1] != block_of(name):
      blocks.append(block_of(name))
  if not 1 <= case.finetune_blocks <= len(blocks):
    raise UserError(f'finetune_blocks={case.finetune_blocks} must be between 1 and the '
                    f'{len(blocks)} blocks of {case.model!r} ({blocks[0]} ... {blocks[-1]}); '
                    'or name the first layer to train with finetune_from')
  trainable = set(blocks[-case.finetune_blocks:])
  return frozenset(name for name in backbone if block_of(name) not in trainable)


def split(tree, frozen):
  """(trainable part, frozen part) of a dict of top-level layers."""
  return ({k: v for k, v in tree.items() if k not in frozen},
          {k: v for k, v in tree.items() if k in frozen})


def frozen_batchnorm(frozen):
  """An interceptor context: BatchNorm layers under `frozen` use their moving statistics."""
  def intercept(next_fun, args, kwargs, context):
    module = context.module
    if (isinstance(module, nn.BatchNorm) and context.method_name == '__call__'
        and module.path and module.path[0] in frozen):
      kwargs = {**kwargs, 'use_running_average': True}
    return next_fun(*args, **kwargs)
  return nn.intercept_methods(intercept)
