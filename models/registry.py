"""Models by name: the one registry every config refers to.

A registered model is a flax linen Module class whose constructor takes
`num_classes` and `dtype` (the computation dtype; parameters stay float32), and
whose `__call__(x, train)` maps an NHWC float batch to logits. Further
constructor fields are the model's kwargs, settable from a config's
`model_kwargs`. One class may be registered under several names with some
fields fixed (`resnet50` is ResNet with depth 50); fixed fields are not kwargs.

A class may define `default_image_shape` (the input the reference model was
designed for, used by the zoo suite), `normalization` (the pixel range it was
trained on, one of input_pipeline/options.py NORMALIZATIONS; 'unit' if absent) and a classmethod `kwarg_problem(kwargs)`
returning a sentence about the first invalid kwarg value, or None.
"""

import dataclasses

_MODELS = {}

# Fields every model has that the harness sets itself, not the config's model_kwargs.
_HARNESS_FIELDS = ('num_classes', 'dtype', 'parent', 'name')


def register(name, **fixed):
  """Class decorator that adds a Module class to the registry under `name`.

  `fixed` fields are set on every instance created by that name.
  """
  def wrap(cls):
    if name in _MODELS:
      raise ValueError(f'model {name!r} is registered twice')
    _MODELS[name] = (cls, fixed)
    return cls
  return wrap


def names():
  return sorted(_MODELS)


def _entry(name):
  try:
    return _MODELS[name]
  except KeyError:
    raise KeyError(f'unknown model {name!r}; registered models: {", ".join(names())}') from None


def get(name):
  """The Module class registered as `name`; KeyError naming the choices if none is."""
  return _entry(name)[0]


def kwarg_names(name):
  """The constructor fields a config may set through `model_kwargs`."""
  cls, fixed = _entry(name)
  return [f.name for f in dataclasses.fields(cls)
          if f.init and f.name not in _HARNESS_FIELDS and f.name not in fixed]


def kwarg_problem(name, kwargs):
  """A sentence about the first invalid value in `kwargs` for model `name`, or None."""
  cls, fixed = _entry(name)
  check = getattr(cls, 'kwarg_problem', None)
  return check({**fixed, **kwargs}) if check else None


def default_image_shape(name):
  """The (height, width, channels) input the model was designed for."""
  return tuple(getattr(get(name), 'default_image_shape', (32, 32, 3)))


def normalization(name):
  """How the model's input pixels are normalised unless the config says otherwise."""
  return getattr(get(name), 'normalization', 'unit')


def default_num_classes(name):
  """The class count of the reference model (1000 for the ImageNet families)."""
  field = {f.name: f for f in dataclasses.fields(get(name))}['num_classes']
  return 10 if field.default is dataclasses.MISSING else field.default


def create(name, *, num_classes, dtype, **kwargs):
  cls, fixed = _entry(name)
  return cls(num_classes=num_classes, dtype=dtype, **fixed, **kwargs)
