"""The seed models are exactly reference experiment 1's, and the registry names them.

docs/reference-experiments.md#1-mlp-versus-cnn
"""

import jax
import jax.numpy as jnp
import pytest

from bench.core.errors import UserError
from bench.measure import costs
from bench.workload import build
import models
from tests.conftest import case_config


def _init(name, **kwargs):
  model = models.create(name, num_classes=10, dtype=jnp.float32, **kwargs)
  variables = model.init(jax.random.key(0), jnp.zeros((2, 32, 32, 3)), train=False)
  return model, variables


@pytest.mark.parametrize('name, total', [('seed_mlp', 445_450), ('seed_cnn', 227_146)])
def test_seed_parameter_counts(name, total):
  _, variables = _init(name)
  counts = costs.param_counts(variables['params'], variables.get('batch_stats', {}))
  assert counts == {'total': total, 'trainable': total, 'non_trainable': 0}


def test_seed_cnn_flattens_512_features():
  _, variables = _init('seed_cnn')
  assert variables['params']['top']['fc1']['kernel'].shape == (512, 256)
  assert [variables['params'][f'conv{i}']['kernel'].shape for i in (1, 2, 3)] == [
      (3, 3, 3, 32), (3, 3, 32, 64), (3, 3, 64, 128)]


def test_seed_mlp_layer_shapes():
  _, variables = _init('seed_mlp')
  shapes = [variables['params'][f'Dense_{i}']['kernel'].shape for i in range(4)]
  assert shapes == [(3072, 128), (128, 128), (128, 256), (256, 10)]


@pytest.mark.parametrize('name', ['seed_mlp', 'seed_cnn'])
def test_logits_shape_and_bfloat16_compute(name):
  model, variables = _init(name, **({'features': (16,)} if name == 'seed_mlp' else {}))
  bf16 = models.create(name, num_classes=10, dtype=jnp.bfloat16,
                       **({'features': (16,)} if name == 'seed_mlp' else {}))
  x = jnp.ones((4, 32, 32, 3))
  assert model.apply(variables, x).shape == (4, 10)
  assert bf16.apply(variables, x).dtype == jnp.bfloat16
  assert {leaf.dtype for leaf in jax.tree_util.tree_leaves(variables)} == {jnp.dtype('float32')}


def test_registry_rejects_unknown_and_duplicate_names():
  with pytest.raises(KeyError, match="unknown model 'resnet9'; registered models: .*seed_cnn"):
    models.get('resnet9')
  with pytest.raises(ValueError, match='registered twice'):
    models.register('seed_mlp')(object)


def test_kwarg_names_exclude_harness_fields():
  assert models.kwarg_names('seed_cnn') == ['include_top', 'pooling', 'head', 'filters',
                                            'pool_impl']
  # Fixed by the registered name, so not a kwarg: resnet50 is depth 50.
  assert models.kwarg_names('resnet50') == ['include_top', 'pooling', 'head', 'variant']
  assert models.kwarg_names('seed_mlp') == ['features']


@pytest.mark.parametrize('name, kwargs, shape', [
    ('seed_cnn', {}, (4, 32, 32, 3)),
    ('seed_cifar', {'filters': (7,), 'kernel_sizes': (5,), 'pools': (5, 2)}, (4, 32, 32, 3)),
    ('width_unet', {'nf': 8}, (2, 32, 32, 3)),
    ('seed_cnn', {}, (2, 33, 33, 3)),  # odd sizes: a remainder row and column dropped
])
def test_pool_impls_give_equal_outputs_and_gradients(name, kwargs, shape):
  """The reshape max pool against flax's nn.max_pool, through the whole model and its
  gradient: bit for bit (random inputs: no tie within a window but the ReLU's zeros,
  whose gradient the ReLU stops)."""
  x = jax.random.normal(jax.random.key(1), shape)
  outputs = {}
  for impl in models.POOL_IMPLS:
    model = models.create(name, num_classes=10, dtype=jnp.float32, pool_impl=impl, **kwargs)
    variables = model.init(jax.random.key(0), x)
    loss = lambda params, v=variables, m=model: jnp.sum(  # noqa: E731
        m.apply({**v, 'params': params}, x) ** 2)
    outputs[impl] = (model.apply(variables, x), jax.grad(loss)(variables['params']))
  (logits_a, grads_a), (logits_b, grads_b) = outputs.values()
  assert jnp.array_equal(logits_a, logits_b)
  assert all(jax.tree.leaves(jax.tree.map(jnp.array_equal, grads_a, grads_b)))


def test_the_pool_impl_field_reaches_the_models_that_pool():
  assert build.model_of(case_config(model='seed_cnn')).pool_impl == 'reshape'
  assert build.model_of(case_config(model='seed_cnn', pool_impl='flax')).pool_impl == 'flax'
  assert not hasattr(build.model_of(case_config(model='resnet18')), 'pool_impl')
  with pytest.raises(UserError, match="pool_impl.*must be one of reshape, flax"):
    case_config(model='seed_cnn', pool_impl='fast')
