"""The Keras twins `flax-bench peer` times (bench/workload/keras_twin.py): each has
exactly the parameters of the model this harness builds for the case, cases without
one say why, and the command line times a case in a Keras process of its own."""

import json
import os

import jax
import jax.numpy as jnp
import keras
import numpy as np
import pytest

from bench.run import peer
from bench.workload import build
from bench.workload import keras_twin
from bench.workload import twins
from tests.conftest import call_cli, case_config


@pytest.fixture(autouse=True)
def _fresh_keras():
  """Keras's global state (the counters that name unnamed layers) as this module found
  it: another module's Keras files are named by them."""
  yield
  keras.backend.clear_session()


def _flax_counts(case):
  """(trainable, all) of our model's variables: params, and params with batch_stats."""
  shapes = jax.eval_shape(build.model_of(case).init, jax.random.key(0),
                          jnp.zeros((1, *case.image_shape), jnp.float32))
  count = lambda tree: sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(tree))  # noqa: E731
  return count(shapes['params']), count(shapes)


def _keras_counts(model):
  return sum(int(np.prod(w.shape)) for w in model.trainable_weights), model.count_params()


@pytest.mark.parametrize('fields', [
    {'model': 'seed_mlp'},
    {'model': 'seed_cnn'},
    {'model': 'seed_cnn', 'num_classes': 3, 'model_kwargs': {'filters': (8, 16)}},
    {'model': 'seed_cifar'},
    {'model': 'seed_cifar', 'model_kwargs': {'batchnorm_first': True, 'activation': 'leaky_relu'}},
    {'model': 'seed_cifar', 'model_kwargs': {'filters': (7,), 'kernel_sizes': (5,),
                                             'pools': (5, 2)}},
    {'model': 'seed_cnn', 'model_kwargs': {'head': 'dropout:0.5,dense:64:gelu'}},
    {'model': 'resnet50', 'image_shape': (32, 32, 3)},
    {'model': 'mobilenet_v2', 'image_shape': (32, 32, 3), 'model_kwargs': {'alpha': 0.35}},
    {'model': 'xception', 'image_shape': (71, 71, 3), 'num_classes': 5},
])
def test_each_twin_has_the_parameters_of_our_model(fields):
  case = case_config(**{'num_classes': 10, **fields})
  spec = peer.spec(case)
  assert twins.missing(spec) == ''
  assert _keras_counts(keras_twin.build(spec)) == _flax_counts(case)


@pytest.mark.parametrize('fields, why', [
    ({'model': 'resnet18'}, 'resnet18 has no Keras twin (those with one: seed_mlp, seed_cnn, '
     'seed_cifar, resnet50, resnet101, resnet152, mobilenet_v2, xception)'),
    ({'model': 'resnet50', 'model_kwargs': {'variant': 'v1_5'}},
     'resnet50 variant v1_5 has no Keras twin (keras only)'),
    ({'model': 'seed_cnn', 'optimizer': 'adamw'},
     'optimizer adamw has no Keras twin (adam, sgd, rmsprop)'),
    ({'model': 'seed_cnn', 'weight_decay': 1e-4}, 'weight_decay 0.0001: the Keras twin times '
     'the plain step (dataset synthetic, benchmark train_step, loss cross_entropy, transfer '
     'scratch, weight_decay 0.0, grad_clip_norm 0.0, schedule constant)'),
])
def test_a_case_without_a_twin_says_why(fields, why):
  spec = peer.spec(case_config(**fields))
  assert twins.missing(spec) == why
  with pytest.raises(twins.NoTwin, match='has no Keras twin|the plain step'):
    keras_twin.build(spec)


def test_the_twins_optimizers_are_the_ones_it_names():
  assert tuple(keras_twin.OPTIMIZERS) == twins.OPTIMIZERS


def test_peer_interleaves_our_step_and_keras_in_rounds(tmp_path):
  out = tmp_path / 'peer.json'
  result = call_cli('--config=quickstart', '--config.select=mlp_b32,cnn_shapes_b32',
                    '--config.warmup_steps=2', '--config.timed_steps=3', '--rounds=2',
                    f'--workdir={tmp_path / "wd"}', f'--out={out}', module='bench.peer')
  assert result.returncode == 0, result.stderr
  rows = {row['name']: row for row in json.loads(out.read_text())}
  mlp = rows['mlp_b32']
  assert (mlp['why'], mlp['params'], mlp['rounds'], mlp['ci_low']) == ('', 445_450, 2, None)
  assert mlp['ours_s'] > 0 and mlp['keras_s'] > 0
  assert rows['cnn_shapes_b32']['why'].startswith('dataset shapes: the Keras twin times the '
                                                  'plain step (dataset synthetic, ')
  lines = result.stdout.splitlines()
  assert lines[0].startswith('round 1: ') and lines[1].startswith('round 2: ')
  assert sorted(os.listdir(tmp_path / 'wd' / 'runs')) == ['001-jax.json', '002-jax.json']


def test_peer_needs_an_even_number_of_rounds(tmp_path):
  result = call_cli('--config=quickstart', '--rounds=3', f'--workdir={tmp_path}',
                    module='bench.peer')
  assert (result.returncode, result.stderr.strip()) == (2, (
      'error: --rounds=3: give an even number of rounds, at least 2 (the sides run in '
      'ABBA/BAAB pairs)'))
