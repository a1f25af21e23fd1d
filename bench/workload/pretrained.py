"""Pretrained weights: Keras Applications `.h5` files and orbax checkpoints of ours.

`config.init_from` is 'keras:/path/weights.h5' or 'orbax:/path/checkpoint_dir'
(a checkpoint written by `python -m bench.convert_keras`). Both are merged into
a freshly initialised model layer by layer, by name, with one rule: every
backbone layer must come from the file with exactly the model's weights and
shapes, while the top (our `top/...` submodule; Keras's `predictions`) is taken
only where it fits, so ImageNet weights with or without their 1000-class top
initialise a model with any head. The first layer that is missing or
mis-shaped is a UserError naming it.

A layer of ours is a module that holds arrays itself; its Keras name is its
path joined by '_' (ResNet's conv2_block1/1_conv is Keras's conv2_block1_1_conv),
without the leading `top`. Keras stores BatchNorm as gamma, beta, moving_mean,
moving_variance: our scale, bias and batch_stats mean, var; a Keras 2
DepthwiseConv2D's depthwise_kernel is Keras 3's (and our) kernel. Keras names the
layers it was not given names for after their class (conv2d_3,
batch_normalization_7) with a counter that depends on what was built before, so
those carry no meaning: layers of ours that the file lacks by name are paired
with them in the order of the numbers in the names on both sides (Xception's
shortcut projections block2, 3, 4, 13 with conv2d, conv2d_1, ...). Dicts are
not trusted for order: any jax tree operation sorts their keys.
"""

import os
import re

from absl import logging
from flax import traverse_util
import h5py
import jax
import jax.numpy as jnp
import numpy as np

from bench.core.errors import UserError, first_line
import models

SCHEMES = ('keras', 'orbax')
_BATCH_NORM = {'gamma': ('params', 'scale'), 'beta': ('params', 'bias'),
               'moving_mean': ('batch_stats', 'mean'),
               'moving_variance': ('batch_stats', 'var')}
_KERAS_AUTO_NAME = re.compile(r'(conv2d|batch_normalization|dense|depthwise_conv2d|'
                              r'separable_conv2d)(_\d+)?')
# Top layers of a source that a model may leave unused (a model without its top,
# or with another head): Keras's classifier and our head's Dense layers.
_KERAS_TOP = re.compile(r'predictions|fc\d+')
_COLLECTIONS = ('params', 'batch_stats')


def parse(spec, exists=True):
  """(scheme, path) of an init_from spec; UserError if it is malformed or (`exists`)
  the path is absent."""
  scheme, sep, path = spec.partition(':')
  if not sep or scheme not in SCHEMES or not path:
    raise UserError(f'init_from {spec!r} must be keras:/path/weights.h5 or '
                    'orbax:/path/checkpoint_dir')
  if exists and not os.path.exists(path):
    raise UserError(f'init_from {spec!r}: {path} does not exist; Keras keeps the .h5 files '
                    'keras.applications downloads in ~/.keras/models/: give yours with '
                    '--config.init_from=keras:PATH (one case\'s: --config.cases.NAME.init_from), '
                    'or orbax:DIR converted by python -m bench.convert_keras, or '
                    "--config.init_from='' to start from random weights")
  return scheme, path


# ------------------------------------------------------------------ our layers

def layers(variables):
  """{path: {(collection, leaf): array}}; a layer is a module holding arrays
  itself (a Conv, a BatchNorm, a SeparableConv2D)."""
  out = {}
  for collection in _COLLECTIONS:
    flat = traverse_util.flatten_dict(variables.get(collection, {}))
    for key, value in flat.items():
      out.setdefault(key[:-1], {})[(collection, key[-1])] = value
  return out


def variable_shapes(model, image_shape):
  """The variables of `model` as jax.ShapeDtypeStructs, without running or allocating it."""
  return jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, *image_shape)))


def zeros_like_variables(model, image_shape):
  """Variables of `model` filled with zeros: a template for a load that replaces
  every layer."""
  return jax.tree_util.tree_map(lambda s: np.zeros(s.shape, s.dtype),
                                variable_shapes(model, image_shape))


def _is_top(path):
  return path[0] == 'top'


def keras_name(path):
  return '_'.join(path[1:] if _is_top(path) else path)


def _shapes(weights):
  return {f'{c}/{leaf}': tuple(v.shape) for (c, leaf), v in sorted(weights.items())}


def merge(variables, source, what, name_of):
  """`variables` with each layer replaced by its counterpart in `source`.

  `source` maps names (as `name_of(path)` makes them) to {(collection, leaf): array};
  `what` describes it for messages. `variables` may hold jax.ShapeDtypeStructs
  (only their shapes and dtypes are read). Returns (variables, names of the top
  layers kept as initialised).
  """
  ours = layers(variables)
  flat = {c: traverse_util.flatten_dict(variables.get(c, {})) for c in _COLLECTIONS}
  used, kept = set(), []
  for path, weights in sorted(ours.items(), key=lambda item: _natural_key(name_of(item[0]))):
    name = name_of(path)
    theirs = source.get(name)
    fits = (theirs is not None and set(theirs) == set(weights)
            and all(theirs[k].shape == v.shape for k, v in weights.items()))
    if theirs is not None:
      used.add(name)
    if not fits:
      if _is_top(path):
        kept.append(name)
        continue
      if theirs is None:
        first = ', '.join(list(source)[:3])
        raise UserError(f'{what} has no layer {name!r}, which the model needs (its first '
                        f'layers are {first}): is it the weights of another model or variant?')
      raise UserError(f'{what} layer {name!r} has weights {_shapes(theirs)}, the model '
                      f'expects {_shapes(weights)}: is it the weights of another model or size?')
    for (collection, leaf), value in weights.items():
      flat[collection][path + (leaf,)] = np.asarray(theirs[(collection, leaf)], dtype=value.dtype)
  extra = [name for name in source if name not in used and not _KERAS_TOP.fullmatch(name)
           and not name.startswith('top/')]
  if extra:
    raise UserError(f'{what} has layer {extra[0]!r}, which the model lacks: is it the '
                    'weights of a deeper or different model?')
  merged = {c: traverse_util.unflatten_dict(flat[c]) for c in _COLLECTIONS if flat[c]}
  merged.setdefault('batch_stats', {})
  return merged, kept


# ------------------------------------------------------------------ Keras .h5

def read_keras_h5(path):
  """{layer name: {(collection, leaf): array}} of the layers with weights, in file order.

  Reads the HDF5 layout Keras Applications weights are distributed in (a
  `layer_names` attribute, a group per layer with `weight_names`), also inside
  the `model_weights` group of a whole model saved as `.h5`.
  """
  try:
    with h5py.File(path, 'r') as f:
      group = f['model_weights'] if 'model_weights' in f else f
      if 'layer_names' not in group.attrs:
        if 'layers' in f:
          raise UserError(f'{path} is a Keras 3 `.weights.h5` file, whose layers are named '
                          'by class rather than by layer; save the model as legacy .h5 '
                          "(model.save('model.h5')) or use the Keras Applications file")
        raise UserError(f'{path} is HDF5 but not a Keras weights file (no layer_names '
                        'attribute); pass a Keras Applications weights .h5')
      out = {}
      for name in group.attrs['layer_names']:
        name = name.decode() if isinstance(name, bytes) else str(name)
        layer = group[name]
        weights = {}
        for weight in layer.attrs['weight_names']:
          weight = weight.decode() if isinstance(weight, bytes) else str(weight)
          weights[weight.split('/')[-1].split(':')[0]] = np.asarray(layer[weight])
        if 'depthwise_kernel' in weights and 'pointwise_kernel' not in weights:
          # A DepthwiseConv2D: Keras 2 called its kernel depthwise_kernel, Keras 3 kernel.
          weights['kernel'] = weights.pop('depthwise_kernel')
        if weights:
          batch_norm = 'moving_mean' in weights
          out[name] = {(_BATCH_NORM[k] if batch_norm else ('params', k)): v
                       for k, v in weights.items()}
      return out
  except (OSError, KeyError) as e:
    if os.path.isdir(path):
      raise UserError(f'{path} is a directory, not a Keras weights .h5 file; an orbax '
                      f'checkpoint directory is init_from=orbax:{path}') from None
    if os.path.getsize(path) == 0:
      raise UserError(f'Keras weights file {path} is empty (0 bytes); download it '
                      'again') from None
    raise UserError(f'cannot read Keras weights file {path} ({first_line(e)}); it is truncated '
                    'or not HDF5: download it again') from None


def _natural_key(name):
  """'block13' after 'block2', 'conv2d_10' after 'conv2d_2'."""
  return [int(part) if part.isdigit() else part for part in re.split(r'(\d+)', name)]


def _pair_auto_named(ours, source):
  """Renames the file's auto-named layers (conv2d_3, ...) to our layers that are
  absent by name, in natural order and by kind (the same weight names)."""
  missing = sorted(((keras_name(p), set(w)) for p, w in ours.items()
                    if not _is_top(p) and keras_name(p) not in source),
                   key=lambda item: _natural_key(item[0]))
  auto = sorted((name for name in source if _KERAS_AUTO_NAME.fullmatch(name)), key=_natural_key)
  renamed = dict(source)
  for name, keys in missing:
    match = next((a for a in auto if set(source[a]) == keys), None)
    if match is None:
      break  # merge() reports the missing layer
    auto.remove(match)
    renamed[name] = renamed.pop(match)
  return renamed


def load_keras_h5(path, variables):
  """(variables with the file's weights, top layers kept as initialised)."""
  source = _pair_auto_named(layers(variables), read_keras_h5(path))
  return merge(variables, source, f'Keras weights file {path}', keras_name)


# ------------------------------------------------------------------ orbax

def _slash_name(path):
  return '/'.join(path)


def save_orbax(directory, variables, metadata):
  """Writes `variables` ({'params', 'batch_stats'}) as an orbax checkpoint in `directory`
  (orbax writes to a temporary name and renames it when complete)."""
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top  (slow import, rarely needed)
  with ocp.StandardCheckpointer() as checkpointer:
    checkpointer.save(os.path.abspath(directory), variables, custom_metadata=metadata)


def restore_orbax(directory):
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
  try:
    with ocp.StandardCheckpointer() as checkpointer:
      return checkpointer.restore(os.path.abspath(directory))
  except (FileNotFoundError, ValueError) as e:
    raise UserError(f'cannot restore orbax checkpoint {directory} ({first_line(e)}); give '
                    "the directory of a training run's weights/CASE or of python -m "
                    'bench.convert_keras output') from None


def _merge_from(spec, variables):
  scheme, path = parse(spec)
  if scheme == 'keras':
    return load_keras_h5(path, variables)
  source = layers(restore_orbax(path))
  return merge(variables, {_slash_name(p): w for p, w in source.items()},
               f'orbax checkpoint {path}', _slash_name)


def read_every_value(directory):
  """Reads each value the orbax checkpoint (OCDBT) in `directory` stores, one after
  another; tensorstore's ValueError at the first that cannot be read (a truncated or
  damaged data file). Restoring would find it too, but orbax reads all arrays at once
  and, when one read fails, leaves the other reads' coroutines suspended: when they are
  garbage-collected, orbax's `except BaseException` turns their GeneratorExit into an
  Exception, which Python prints as "Exception ignored in: <coroutine object
  _read_array_index_and_device_put>" with a traceback, once per unfinished read."""
  import tensorstore as ts  # pylint: disable=g-import-not-at-top  (comes with orbax)
  store = ts.KvStore.open({'driver': 'ocdbt',
                           'base': f'file://{os.path.abspath(directory)}/'}).result()
  for key in store.list().result():
    store.read(key).result()


def _read_every_value(directory):
  """read_every_value, a damaged checkpoint as a UserError."""
  try:
    read_every_value(directory)
  except ValueError as e:
    raise UserError(f'orbax checkpoint {directory} is damaged ({first_line(e)}); write it '
                    'again (python -m bench.convert_keras, or the training run)') from None


def check(spec, variables):
  """Reads the weights `spec` names, all of them, and matches them against
  `variables` (arrays or jax.ShapeDtypeStructs) as `load` would: a UserError naming
  the file and its first problem (unreadable, truncated, empty, another model's,
  a layer missing or mis-shaped). Run before anything is written."""
  scheme, path = parse(spec)
  if scheme == 'orbax':
    _read_every_value(path)
  _merge_from(spec, variables)


def load(spec, variables):
  """`variables` initialised from `spec` (see the module docstring)."""
  merged, kept = _merge_from(spec, variables)
  logging.info('initialised from %s; %s', spec,
               f'top layers kept as initialised: {", ".join(kept)}' if kept else 'all layers')
  return merged


def convert_keras(model_name, weights, out, model_kwargs=None):
  """A Keras .h5 weights file of `model_name` written to `out` as an orbax checkpoint of
  ours (python -m bench.convert_keras); returns its metadata. UserError for anything
  the user can fix."""
  if model_name not in models.names():
    raise UserError(f'unknown model {model_name!r}; --model must be one of '
                    f'{", ".join(models.names())}')
  if os.path.exists(out):
    raise UserError(f'--out {out} already exists; give a new directory or remove it')
  source = read_keras_h5(weights)
  top = source.get('predictions')
  kwargs = dict(model_kwargs or {})
  kwargs.setdefault('include_top', top is not None)
  problem = models.kwarg_problem(model_name, kwargs)
  if problem:
    raise UserError(f'--model_kwargs for {model_name!r}: {problem}')
  num_classes = top[('params', 'bias')].shape[0] if top is not None else 1000
  model = models.create(model_name, num_classes=num_classes, dtype=jnp.float32, **kwargs)
  variables = zeros_like_variables(model, models.default_image_shape(model_name))
  variables, kept = load_keras_h5(weights, variables)
  if kept:
    raise UserError(f'{weights} has a top that does not fit {model_name}: {", ".join(kept)}')
  metadata = {'model': model_name, 'model_kwargs': kwargs, 'num_classes': num_classes,
              'source': os.path.abspath(weights)}
  save_orbax(out, variables, metadata)
  return metadata
