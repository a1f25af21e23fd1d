"""Grad-CAM, first-layer filters and activation maps of a trained case: what
`visualize` writes and how is in bench/visualize.py, its command line."""

import collections
import io
import json
import math
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
import numpy as np

from bench.core import fileio
from bench.core.errors import UserError
from bench.workload import pretrained
import models
from models.layers import Classifier, DepthwiseConv2D, without_top

# Module call order, first convolution and its output, from one forward pass.
Trace = collections.namedtuple('Trace', 'layers conv_name kernel activations')
# What Grad-CAM needs for one image: the target layer's output A (H, W, K), d logit / dA,
# the logits, and the class explained.
Target = collections.namedtuple('Target', 'feature_map grads logits class_index')


def grad_cam(feature_map, grads):
  """The Grad-CAM map (H, W) of a layer output `feature_map` (H, W, K) and the gradient
  `grads` of the class logit with respect to it.

  Channel k weighs alpha_k = mean over positions of its gradient; the map is
  relu(sum_k alpha_k A_k), divided by its maximum so that 1 is the strongest
  evidence and 0 stays "none" (a map with no positive evidence stays all zero).
  """
  a = np.asarray(feature_map, np.float32)
  alpha = np.asarray(grads, np.float32).mean(axis=(0, 1))
  cam = np.maximum((a * alpha).sum(axis=-1), 0)
  peak = cam.max()
  return cam / peak if peak > 0 else cam


# ------------------------------------------------------------------ the run's files

def read_case_config(workdir, case):
  """The config dict of `case` in WORKDIR/report.json."""
  path = os.path.join(workdir, 'report.json')
  if not os.path.isfile(path):
    raise UserError(f'{path} does not exist: --workdir must be the workdir of a training run')
  try:
    with open(path, encoding='utf-8') as f:
      cases = {c['name']: c['config'] for c in json.load(f)['cases']}
  except (ValueError, KeyError, TypeError) as e:
    raise UserError(f'{path} is not a benchmark report ({e!r}); give the workdir of a '
                    'training run') from None
  if case not in cases:
    raise UserError(f'no case {case!r} in {path}; its cases are {", ".join(cases) or "none"}')
  return cases[case]


def create_model(config):
  """The case's model; UserError unless it is a Classifier (backbone + top)."""
  name = config['model']
  if name not in models.names():
    raise UserError(f'unknown model {name!r} in the report; registered models: '
                    f'{", ".join(models.names())}')
  model = models.create(name, num_classes=config['num_classes'],
                        dtype=jnp.dtype(config['dtype']), **config['model_kwargs'])
  if not isinstance(model, Classifier):
    raise UserError(f'model {name!r} is not built on models.layers.Classifier: it has no '
                    'convolutional backbone and top, which Grad-CAM, filters and activation '
                    'maps need')
  return model


def load_variables(checkpoint):
  """{'params', 'batch_stats'} of an orbax checkpoint; no batch_stats for models without
  BatchNorm (flax rejects an empty collection the model does not use)."""
  restored = pretrained.restore_orbax(checkpoint)
  variables = {'params': restored['params']}
  if restored.get('batch_stats'):
    variables['batch_stats'] = restored['batch_stats']
  return variables


def read_images(paths, config):
  """[(model input, display image)] per path: float32 (h, w, c) arrays preprocessed as the
  case's evaluation does, the display one with pixels in [0, 1]."""
  # Imported here: TensorFlow takes seconds to import, and user errors found
  # before this point need not wait for it.
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  from input_pipeline import preprocess  # pylint: disable=import-outside-toplevel
  if tf.config.get_visible_devices('GPU'):  # not hidden yet (input_pipeline.pipeline hides them)
    tf.config.set_visible_devices([], 'GPU')  # TF must leave the accelerators to JAX
  shape = tuple(config['image_shape'])
  common = {'resize': config['resize'], 'augment': 'none', 'training': False}
  to_input = preprocess.make(shape, normalization=config['normalization'], **common)
  to_display = preprocess.make(shape, normalization='unit', **common)
  seed = tf.constant([0, 0], tf.int64)  # unused without augmentation
  images = []
  for path in paths:
    encoded = tf.io.read_file(path)
    try:
      images.append((to_input(encoded, seed).numpy(), to_display(encoded, seed).numpy()))
    except tf.errors.OpError as e:
      raise UserError(f'cannot decode image {path} ({e.message.splitlines()[0]}); give a '
                      'JPEG, PNG, GIF or BMP file') from None
  return images


# ------------------------------------------------------------------ the model's parts

def trace(model, variables, x):
  """One forward pass of `x` (a batch of one) recording, in call order, the backbone's
  top-level layers (keys of params) and the first convolution: the first module call
  whose own params hold a 4-D 'kernel' or 'depthwise_kernel'.

  The kernel comes back as (kh, kw, in, out) filters; a depthwise kernel (kh, kw, C, m)
  filters each input channel alone, so it becomes C * m single-channel filters. The
  activations are that layer's output (h, w, channels), before any normalisation or
  activation that follows it.
  """
  layers, convs = [], []

  def record(next_fun, args, kwargs, context):
    out = next_fun(*args, **kwargs)
    if context.method_name != '__call__':
      return out
    path = context.module.path
    if (len(path) == 1 and path[0] in variables['params'] and path[0] != 'top'
        and path[0] not in layers):
      layers.append(path[0])
    params = context.module.variables.get('params', {})
    kernel = params.get('depthwise_kernel', params.get('kernel'))
    if not convs and kernel is not None and kernel.ndim == 4:
      if 'depthwise_kernel' in params or isinstance(context.module, DepthwiseConv2D):
        kh, kw, c, m = kernel.shape
        kernel = kernel.reshape(kh, kw, 1, c * m)
      convs.append(('/'.join(path), np.asarray(kernel, np.float32),
                    np.asarray(out[0], np.float32)))
    return out

  with nn.intercept_methods(record):
    model.apply(variables, x, train=False)
  if not convs:
    raise UserError(f'model {type(model).__name__} has no convolution to show')
  return Trace(layers, *convs[0])


def _target(logits_and_map, a, class_index):
  """Target at the map that `logits_and_map(a) -> (logits, map)` exposes; the gradient
  with respect to `a` is the gradient with respect to that map."""
  logits, vjp, feature_map = jax.vjp(logits_and_map, a, has_aux=True)
  target = class_index if class_index >= 0 else int(jnp.argmax(logits[0]))
  grads, = vjp(jnp.zeros_like(logits).at[0, target].set(1))
  return Target(feature_map[0], grads[0], np.asarray(logits[0], np.float32), target)


def target_at_features(model, variables, x, class_index):
  """Target at the backbone output: the feature map the top pools."""
  backbone, head = model.backbone_and_head(pooled=False)
  feature_map = backbone.apply(without_top(variables), x, train=False)
  head_params = {'params': {'top': variables['params']['top']}}
  return _target(lambda a: (head.apply(head_params, a, train=False), a), feature_map,
                 class_index)


def target_at_layer(model, variables, x, layer, class_index):
  """Target at the output of the top-level layer `layer` (its first call).

  flax gives no gradient with respect to an intermediate value, so an interceptor
  adds a `delta` of zeros to the layer's output: the value is unchanged, and the
  gradient with respect to delta is the gradient with respect to that output.
  """
  def logits_and_map(delta):
    outputs = []

    def add_delta(next_fun, args, kwargs, context):
      out = next_fun(*args, **kwargs)
      if not outputs and context.method_name == '__call__' and context.module.path == (layer,):
        out = out + delta.astype(out.dtype)
        outputs.append(out)
      return out

    with nn.intercept_methods(add_delta):
      logits = model.apply(variables, x, train=False)
    return logits, outputs[0]

  shape = jax.eval_shape(lambda d: logits_and_map(d)[1], jnp.zeros((), jnp.float32))
  if len(shape.shape) != 4:
    raise UserError(f'layer {layer!r} outputs shape {shape.shape[1:]}, not a feature map '
                    '(height, width, channels) for Grad-CAM')
  return _target(logits_and_map, jnp.zeros(shape.shape, shape.dtype), class_index)


# ------------------------------------------------------------------ figures

def _png(fig):
  buffer = io.BytesIO()
  FigureCanvasAgg(fig).print_png(buffer)
  return buffer.getvalue()


def _grid(images, title, cmap):
  """PNG of `images` in a near-square grid under `title`."""
  cols = math.ceil(math.sqrt(len(images)))
  rows = math.ceil(len(images) / cols)
  fig = Figure(figsize=(max(cols, 4), rows + 0.5), layout='compressed')
  fig.suptitle(title, fontsize=9)
  for i, image in enumerate(images):
    ax = fig.add_subplot(rows, cols, i + 1)
    ax.imshow(image, cmap=cmap, interpolation='nearest')
    ax.axis('off')
  return _png(fig)


def _unit(x):
  """`x` min-max scaled to [0, 1] (a constant array becomes zeros)."""
  span = x.max() - x.min()
  return (x - x.min()) / span if span > 0 else np.zeros_like(x)


def filters_png(kernel, conv_name, bgr):
  """The (kh, kw, in, out) kernel's filters, each min-max scaled: RGB with 3 input
  channels (`bgr`: channels in the caffe order, reversed for display), else their mean."""
  kh, kw, channels, count = kernel.shape
  if channels == 3:
    rgb = kernel[:, :, ::-1] if bgr else kernel
    images = [_unit(rgb[:, :, :, i]) for i in range(count)]
    how = 'as RGB'
  else:
    images = [_unit(kernel[:, :, :, i].mean(axis=-1)) for i in range(count)]
    how = f'mean over {channels} input channel{"s" if channels > 1 else ""}'
  return _grid(images, f'{conv_name}: {count} filters {kh}x{kw}, each min-max scaled, {how}',
               'gray')


def activations_png(activations, conv_name, stem):
  maps = [activations[:, :, i] for i in range(activations.shape[-1])]
  return _grid(maps, f'{stem}: {conv_name} output, before activation '
               f'({len(maps)} channels, each on its own scale)', 'viridis')


def gradcam_png(display, target, where, stem):
  """The display image with the upsampled Grad-CAM map over it (jet, alpha 0.4)."""
  cam = grad_cam(target.feature_map, target.grads)
  heat = np.asarray(jax.image.resize(cam, display.shape[:2], 'bilinear'))
  probs = np.asarray(jax.nn.softmax(target.logits))
  predicted = int(probs.argmax())
  c = target.class_index
  title = f'{stem}: class {c} (p={probs[c]:.3f})' + (
      ', predicted' if c == predicted else f'; predicted {predicted} (p={probs[predicted]:.3f})')
  fig = Figure(figsize=(4.5, 4.5))
  ax = fig.add_subplot()
  if display.shape[-1] == 1:
    ax.imshow(display[:, :, 0], cmap='gray', vmin=0, vmax=1)
  else:
    ax.imshow(np.clip(display, 0, 1))
  shown = ax.imshow(heat, cmap='jet', alpha=0.4, vmin=0, vmax=1)
  fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.04)
  ax.set_title(f'{title}\nGrad-CAM at {where} {"x".join(map(str, cam.shape))}', fontsize=9)
  ax.axis('off')
  return _png(fig)


# ------------------------------------------------------------------ the command

def visualize(workdir, case, images, out, layer='', class_index=-1):
  """Writes the figures of the module docstring into `out`; returns their paths.

  UserError, with nothing written, for a missing report, case, checkpoint or image,
  an unknown layer or class, or a model that is not a Classifier.
  """
  config = read_case_config(workdir, case)
  checkpoint = os.path.join(workdir, 'weights', case)
  if not os.path.isdir(checkpoint):
    raise UserError(f'no weights for case {case!r} at {checkpoint}: they are written at the '
                    "end of runs of benchmark 'train' with checkpoint=True")
  stems = {}
  for path in images:
    if os.path.isdir(path):
      raise UserError(f'image {path} is a directory, not a file; --images takes image files, '
                      'comma-separated')
    if not os.path.isfile(path):
      raise UserError(f'image {path} does not exist')
    stem = os.path.splitext(os.path.basename(path))[0]
    if stem in stems:
      raise UserError(f'images {stems[stem]} and {path} have the same name {stem!r}, so '
                      'their figures would overwrite each other; rename one')
    stems[stem] = path
  if os.path.exists(out) and not os.path.isdir(out):
    raise UserError(f'--out {out} is a file; give a directory')
  model = create_model(config)
  if class_index >= model.num_classes:
    raise UserError(f'--class_index {class_index} is out of range: case {case!r} has '
                    f'{model.num_classes} classes (0 to {model.num_classes - 1})')
  variables = load_variables(checkpoint)
  pngs = {}
  for stem, (x, display) in zip(stems, read_images(images, config)):
    x = jnp.asarray(x)[None]
    traced = trace(model, variables, x)
    if layer and layer not in traced.layers:
      raise UserError(f'unknown --layer {layer!r} for {config["model"]}; its backbone layers '
                      f'are {", ".join(traced.layers)}')
    if layer:
      target, where = target_at_layer(model, variables, x, layer, class_index), layer
    else:
      target, where = target_at_features(model, variables, x, class_index), 'the backbone output'
    pngs[f'{stem}_gradcam.png'] = gradcam_png(display, target, where, stem)
    pngs[f'{stem}_activations.png'] = activations_png(traced.activations, traced.conv_name, stem)
    if 'filters.png' not in pngs:
      pngs['filters.png'] = filters_png(traced.kernel, traced.conv_name,
                                        bgr=config['normalization'] == 'caffe')
  try:
    os.makedirs(out, exist_ok=True)
  except OSError as e:
    raise UserError(f'cannot create --out {out} ({e.strerror})') from None
  paths = [os.path.join(out, name) for name in pngs]
  for path, data in zip(paths, pngs.values()):
    with fileio.atomic_open(path, 'wb') as f:
      f.write(data)
  return paths
