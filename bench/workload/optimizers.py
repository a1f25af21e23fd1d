"""Optimizers and learning-rate schedules by name, built from a case config with optax.

Weight decay never touches biases or normalisation scales and offsets: the mask
keeps it to parameters of rank >= 2 (kernels). With adamw it is decoupled from
the gradient (Loshchilov & Hutter); with sgd, adam and rmsprop it is the classic
L2 term added to the gradient before the optimizer sees it, as Keras's
`kernel_regularizer` and PyTorch's `weight_decay` do.
"""

import jax
import optax

SCHEDULES = ('constant', 'step', 'cosine', 'warmup_cosine')


def decay_mask(params):
  """True for the leaves weight decay applies to: kernels, not biases or norms."""
  return jax.tree.map(lambda p: p.ndim >= 2, params)


def schedule(cfg, total_steps):
  """The learning rate as a function of the step, over a run of `total_steps` steps."""
  lr = cfg.learning_rate
  if cfg.schedule == 'constant':
    return optax.constant_schedule(lr)
  if cfg.schedule == 'step':
    # Multiplied by lr_step_factor after every lr_step_every steps.
    return optax.exponential_decay(lr, transition_steps=cfg.lr_step_every,
                                   decay_rate=cfg.lr_step_factor, staircase=True)
  if cfg.schedule == 'cosine':
    return optax.cosine_decay_schedule(lr, decay_steps=max(total_steps, 1))
  return optax.warmup_cosine_decay_schedule(
      0.0, lr, warmup_steps=cfg.lr_warmup_steps,
      decay_steps=max(total_steps, cfg.lr_warmup_steps + 1))


def _sgd(cfg, lr):
  return optax.sgd(lr, momentum=cfg.momentum or None, nesterov=cfg.nesterov)


def _adam(cfg, lr):
  del cfg
  return optax.adam(lr)


def _adamw(cfg, lr):
  return optax.adamw(lr, weight_decay=cfg.weight_decay, mask=decay_mask)


def _rmsprop(cfg, lr):
  return optax.rmsprop(lr, momentum=cfg.momentum or None)


OPTIMIZERS = {'sgd': _sgd, 'adam': _adam, 'adamw': _adamw, 'rmsprop': _rmsprop}


def create(cfg, total_steps):
  """The optax GradientTransformation of `cfg`: [clip] -> [L2 decay] -> optimizer(schedule).

  `total_steps` is the length of the run, over which the cosine schedules decay.
  """
  parts = []
  if cfg.grad_clip_norm:
    parts.append(optax.clip_by_global_norm(cfg.grad_clip_norm))
  if cfg.weight_decay and cfg.optimizer != 'adamw':
    parts.append(optax.add_decayed_weights(cfg.weight_decay, mask=decay_mask))
  parts.append(OPTIMIZERS[cfg.optimizer](cfg, schedule(cfg, total_steps)))
  return optax.chain(*parts) if len(parts) > 1 else parts[0]
