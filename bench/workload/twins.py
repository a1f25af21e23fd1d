"""Which cases have a Keras twin (bench/workload/keras_twin.py) and why the others do
not: plain Python, for the JAX process that decides what to send to the Keras one
(bench/run/peer.py) and for that Keras process itself.
"""

# keras.applications' backbone of each zoo family.
APPLICATIONS = {'resnet50': 'ResNet50', 'resnet101': 'ResNet101', 'resnet152': 'ResNet152',
                'mobilenet_v2': 'MobileNetV2', 'xception': 'Xception'}
FAMILIES = ('seed_mlp', 'seed_cnn', 'seed_cifar', *APPLICATIONS)
# The optimizers the twin has (keras_twin.OPTIMIZERS builds them).
OPTIMIZERS = ('adam', 'sgd', 'rmsprop')
# The case fields of the step the twin times, at the values it times them: a case
# with another value has a step the twin does not take.
# (Synthetic data: ours then reads no input pipeline either, as the twin reads one
# batch in memory.)
PLAIN_STEP = {'dataset': 'synthetic', 'benchmark': 'train_step', 'loss': 'cross_entropy',
              'transfer': 'scratch', 'weight_decay': 0.0, 'grad_clip_norm': 0.0,
              'schedule': 'constant'}


class NoTwin(Exception):
  """The case's model has no Keras twin here; the message says why."""


def missing(spec):
  """Why the spec's case (bench/run/peer.py spec) has no Keras twin; '' when it has."""
  fields = spec['fields']
  if spec['model'] not in FAMILIES:
    return f'{spec["model"]} has no Keras twin (those with one: {", ".join(FAMILIES)})'
  if fields.get('variant', 'keras') != 'keras':
    return f'{spec["model"]} variant {fields["variant"]} has no Keras twin (keras only)'
  if not fields.get('include_top', True):
    return f'{spec["model"]} without its top has no train step to time'
  if spec['optimizer'] not in OPTIMIZERS:
    return f'optimizer {spec["optimizer"]} has no Keras twin ({", ".join(OPTIMIZERS)})'
  if spec['dtype'] != 'float32':
    return f'dtype {spec["dtype"]}: the Keras twin runs float32 only'
  differs = [f'{key} {spec[key]}' for key, plain in PLAIN_STEP.items() if spec[key] != plain]
  if differs:
    return (f'{", ".join(differs)}: the Keras twin times the plain step ('
            + ', '.join(f'{key} {value}' for key, value in PLAIN_STEP.items()) + ')')
  return ''
