"""The pure functions that are timed: train step, eval step, forward pass.

Each is `fn(state, batch) -> output`, jitted once by the runner. The train step
returns `(new_state, metrics)` and is compiled with the state donated, so the
update happens in place; metrics stay on device and are read after timing.
"""

import flax
import flax.struct
import jax
import jax.numpy as jnp
import optax


@flax.struct.dataclass
class TrainState:
  """Everything a train step reads and writes, as a plain pytree (orbax-friendly)."""
  step: jax.Array
  params: dict
  batch_stats: dict  # empty for models without BatchNorm
  opt_state: optax.OptState
  rng: jax.Array  # base key; step k uses fold_in(rng, k) for dropout


def create_train_state(model, tx, rng, image_shape, sharding):
  """Initialises parameters and optimizer state directly with `sharding` (no host copy)."""
  def init(rng):
    init_rng, state_rng = jax.random.split(rng)
    variables = model.init(init_rng, jnp.zeros((1, *image_shape), jnp.float32), train=False)
    params = variables['params']
    return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                      batch_stats=variables.get('batch_stats', {}),
                      opt_state=tx.init(params), rng=state_rng)
  return jax.jit(init, out_shardings=sharding)(rng)


def with_variables(state, tx, variables, sharding):
  """`state` with `variables` ({'params', 'batch_stats'}, host arrays) placed with
  `sharding`, and optimizer state initialised for them."""
  def replace(state, variables):
    return state.replace(params=variables['params'], batch_stats=variables['batch_stats'],
                         opt_state=tx.init(variables['params']))
  return jax.jit(replace, out_shardings=sharding)(state, variables)


def _apply(model, state, params, images, train, rng=None):
  """Logits, plus the updated batch_stats when training a model that has them."""
  variables = {'params': params}
  if state.batch_stats:
    variables['batch_stats'] = state.batch_stats
  if train and state.batch_stats:
    logits, updates = model.apply(variables, images, train=True, mutable=['batch_stats'],
                                  rngs={'dropout': rng})
    return logits, updates['batch_stats']
  rngs = {'dropout': rng} if train else {}
  return model.apply(variables, images, train=train, rngs=rngs), state.batch_stats


def _per_example(logits, labels):
  """Loss and correctness (float32) per example."""
  logits = logits.astype(jnp.float32)  # the loss is always reduced in float32
  return (optax.softmax_cross_entropy_with_integer_labels(logits, labels),
          (jnp.argmax(logits, -1) == labels).astype(jnp.float32))


def _metrics(logits, labels):
  loss, correct = _per_example(logits, labels)
  return {'loss': loss.mean(), 'accuracy': correct.mean()}


def make_train_step(model, tx):
  def train_step(state, batch):
    rng = jax.random.fold_in(state.rng, state.step)

    def loss_fn(params):
      logits, batch_stats = _apply(model, state, params, batch['image'], True, rng)
      metrics = _metrics(logits, batch['label'])
      return metrics['loss'], (metrics, batch_stats)

    grads, (metrics, batch_stats) = jax.grad(loss_fn, has_aux=True)(state.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    new_state = state.replace(step=state.step + 1, params=optax.apply_updates(state.params, updates),
                              batch_stats=batch_stats, opt_state=opt_state)
    return new_state, metrics
  return train_step


def make_eval_step(model):
  def eval_step(state, batch):
    logits, _ = _apply(model, state, state.params, batch['image'], False)
    return _metrics(logits, batch['label'])
  return eval_step


def make_forward(model):
  def forward(state, batch):
    logits, _ = _apply(model, state, state.params, batch['image'], False)
    return logits
  return forward


def make_eval_sums(model):
  """Sums of loss and correct predictions over the examples of a batch whose 'mask' is
  set, and their count: padded examples count for nothing."""
  def eval_sums(state, batch):
    logits, _ = _apply(model, state, state.params, batch['image'], False)
    loss, correct = _per_example(logits, batch['label'])
    mask = batch['mask'].astype(jnp.float32)
    return {'loss': (loss * mask).sum(), 'correct': (correct * mask).sum(), 'count': mask.sum()}
  return eval_sums


def evaluate(eval_sums, state, batches):
  """Exact metrics over every masked-in example of `batches`: {'loss', 'accuracy',
  'num_examples'}. The per-batch sums stay on device until the end (no sync per
  batch) and are added on the host in float64."""
  sums = [eval_sums(state, batch) for batch in batches]
  totals = {key: sum(float(s[key]) for s in jax.device_get(sums)) for key in sums[0]}
  return {'loss': totals['loss'] / totals['count'],
          'accuracy': totals['correct'] / totals['count'],
          'num_examples': int(totals['count'])}
