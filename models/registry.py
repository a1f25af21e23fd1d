"""Models by name: the one registry every config refers to.

A registered model is a flax linen Module class whose constructor takes
`num_classes` and `dtype` (the computation dtype; parameters stay float32), and
whose `__call__(x, train)` maps an NHWC float batch to logits. Further
constructor fields are the model's kwargs, settable from a config's
`model_kwargs`.
"""

import dataclasses

_MODELS = {}

# Fields every model has that the harness sets itself, not the config's model_kwargs.
_HARNESS_FIELDS = ('num_classes', 'dtype', 'parent', 'name')


def register(name):
  """Class decorator that adds a Module class to the registry under `name`."""
  def wrap(cls):
    if name in _MODELS:
      raise ValueError(f'model {name!r} is registered twice')
    _MODELS[name] = cls
    return cls
  return wrap


def names():
  return sorted(_MODELS)


def get(name):
  """The Module class registered as `name`; KeyError naming the choices if none is."""
  try:
    return _MODELS[name]
  except KeyError:
    raise KeyError(f'unknown model {name!r}; registered models: {", ".join(names())}') from None


def kwarg_names(name):
  """The constructor fields a config may set through `model_kwargs`."""
  return [f.name for f in dataclasses.fields(get(name))
          if f.init and f.name not in _HARNESS_FIELDS]


def create(name, *, num_classes, dtype, **kwargs):
  return get(name)(num_classes=num_classes, dtype=dtype, **kwargs)
