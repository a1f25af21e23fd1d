"""A case's model in Keras (TensorFlow backend), and its train step timed: the peer a
JAX step is compared with. Imported only in a process of its own (bench/keras_peer.py),
never beside JAX: the two frameworks' thread pools would share the cores and each
time the other.

A twin is built from a spec (bench/run/peer.py `spec`: the case's model fields, as
its flax module holds them, defaults included, and the case's batch, shape, classes
and optimizer), so this module knows no JAX model and uses no JAX. (TensorFlow's
lite utilities import the jax package where it is installed; no JAX backend, so no
JAX thread pool, is started in the Keras process: checked, `xla_bridge._backends`
empty after a timed step.) The families (bench/workload/twins.py says which cases
have none, and why):

  seed_mlp     Flatten, Dense `features` with ReLU, Dense num_classes
  seed_cnn     (Conv 3x3 valid, ReLU, MaxPool 2) per filter, then the top
  seed_cifar   [BatchNorm], Conv ('same' first, then 'valid'), MaxPools, then the top
  resnet50/101/152, mobilenet_v2, xception
               keras.applications' backbone (include_top=False, weights=None),
               then the top

and the top as the flax Classifier's: pooling (avg, max, flatten), the head's
dropout and dense layers, Dense num_classes. Each twin has the flax model's
parameter counts, trainable and with its normalisation statistics
(tests/test_keras_twin.py).

The step: `model.train_on_batch` with the case's optimizer and sparse categorical
cross-entropy from logits, on one fixed synthetic batch, as Keras users run it
(`jit_compile` left to Keras: its value is reported). `train_on_batch` returns
its loss as a host value, so each call is one whole step.
"""

import time

import keras
import numpy as np

from bench.workload.twins import APPLICATIONS, NoTwin, missing

# The flax activations' Keras twins (models/layers.py ACTIVATIONS): the seeds' leaky
# ReLU has Keras's slope 0.3; flax's gelu is the tanh approximation.
ACTIVATIONS = {'relu': 'relu', 'relu6': 'relu6', 'sigmoid': 'sigmoid', 'tanh': 'tanh',
               'leaky_relu': lambda x: keras.activations.leaky_relu(x, negative_slope=0.3),
               'gelu': lambda x: keras.activations.gelu(x, approximate=True),
               'swish': 'silu', 'linear': 'linear'}


def build(spec):
  """The Keras twin of the spec's model, uncompiled; NoTwin where `missing` says."""
  why = missing(spec)
  if why:
    raise NoTwin(why)
  fields, model = spec['fields'], spec['model']
  inputs = keras.Input(tuple(spec['image_shape']))
  if model == 'seed_mlp':
    x = keras.layers.Flatten()(inputs)
    for width in fields['features']:
      x = keras.layers.Dense(width, activation='relu')(x)
    return keras.Model(inputs, keras.layers.Dense(spec['num_classes'])(x))
  if model == 'seed_cnn':
    x = inputs
    for width in fields['filters']:
      x = keras.layers.Conv2D(width, 3, padding='valid', activation='relu')(x)
      x = keras.layers.MaxPooling2D(2)(x)
  elif model == 'seed_cifar':
    x = inputs
    if fields['batchnorm_first']:
      x = keras.layers.BatchNormalization(momentum=0.99, epsilon=1e-3)(x)
    for i, (width, size) in enumerate(zip(fields['filters'], fields['kernel_sizes'])):
      x = keras.layers.Conv2D(width, size, padding='same' if i == 0 else 'valid',
                              activation=ACTIVATIONS[fields['activation']])(x)
    for size in fields['pools']:
      x = keras.layers.MaxPooling2D(size)(x)
  else:
    kwargs = {'alpha': fields['alpha']} if model == 'mobilenet_v2' else {}
    x = getattr(keras.applications, APPLICATIONS[model])(
        include_top=False, weights=None, input_tensor=inputs, **kwargs).output
  return keras.Model(inputs, _top(x, fields['pooling'], spec['head'], spec['num_classes']))


def _top(x, pooling, head, num_classes):
  """The flax Classifier's top (models/layers.py Top): pooling, the parsed head's
  [('dropout', rate) | ('dense', units, activation)], the predictions."""
  x = {'avg': keras.layers.GlobalAveragePooling2D, 'max': keras.layers.GlobalMaxPooling2D,
       'flatten': keras.layers.Flatten}[pooling]()(x)
  for layer in head:
    if layer[0] == 'dropout':
      x = keras.layers.Dropout(layer[1])(x)
    else:
      x = keras.layers.Dense(layer[1], activation=ACTIVATIONS[layer[2]])(x)
  return keras.layers.Dense(num_classes)(x)


OPTIMIZERS = {
    'adam': lambda spec: keras.optimizers.Adam(spec['learning_rate']),
    'sgd': lambda spec: keras.optimizers.SGD(spec['learning_rate'],
                                             momentum=spec['momentum'] or 0.0,
                                             nesterov=spec['nesterov']),
    'rmsprop': lambda spec: keras.optimizers.RMSprop(spec['learning_rate'],
                                                     momentum=spec['momentum'] or 0.0)}


def time_train_steps(spec, warmup_steps, timed_steps, seed=0):
  """{'samples': seconds of each timed step, 'params', 'jit_compile', 'keras', 'backend'}
  of the twin's train step on one synthetic batch (uniform pixels in [0, 1), uniform
  labels), after `warmup_steps` untimed ones (the first traces and compiles)."""
  keras.utils.set_random_seed(seed)
  model = build(spec)
  model.compile(optimizer=OPTIMIZERS[spec['optimizer']](spec),
                loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
  rng = np.random.default_rng(seed)
  x = rng.random((spec['batch_size'], *spec['image_shape']), dtype=np.float32)
  y = rng.integers(0, spec['num_classes'], spec['batch_size'])
  for _ in range(warmup_steps):
    model.train_on_batch(x, y)
  samples = []
  for _ in range(timed_steps):
    start = time.perf_counter()
    model.train_on_batch(x, y)
    samples.append(time.perf_counter() - start)
  return {'samples': samples, 'params': model.count_params(),
          'jit_compile': bool(model.jit_compile), 'keras': keras.__version__,
          'backend': keras.backend.backend()}
