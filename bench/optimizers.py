"""Optimizers by name, built from a case config with optax."""

import optax


def _sgd(cfg):
  return optax.sgd(cfg.learning_rate, momentum=cfg.momentum or None)


def _adam(cfg):
  return optax.adam(cfg.learning_rate)


def _adamw(cfg):
  return optax.adamw(cfg.learning_rate, weight_decay=cfg.weight_decay)


def _rmsprop(cfg):
  return optax.rmsprop(cfg.learning_rate, momentum=cfg.momentum or None)


OPTIMIZERS = {'sgd': _sgd, 'adam': _adam, 'adamw': _adamw, 'rmsprop': _rmsprop}


def create(cfg):
  """The optax GradientTransformation named by `cfg.optimizer`."""
  return OPTIMIZERS[cfg.optimizer](cfg)
