"""Training runs: optimizers and schedules, transfer modes, feature caching, early
stopping, divergence, and every seed experiment's config end to end at tiny size."""

import dataclasses
import json
import os

import jax
import jax.numpy as jnp
import keras
import numpy as np
import optax
import pytest

from bench.core import parallel
from bench.core.errors import UserError
from bench.results import schema as report_lib
from bench.run import runner
from bench.train import training
from bench.workload import build
from bench.workload import optimizers
from bench.workload import pretrained
from bench.workload import steps
from bench.workload import transfer
from configs import base
import models
from tests.conftest import build_case, case_config


def _optimizer_case(**fields):
  config = base.get_config()
  config.update(fields)
  return config


def test_initial_state_compiled_for_one_run_is_bitwise_the_optimised_programs():
  model = models.create('seed_cifar', num_classes=10, dtype=jnp.float32, batchnorm_first=True)
  tx, rng, replicated = optax.adam(1e-3), jax.random.key(3), parallel.replicated(parallel.mesh())
  state = steps.run_once(steps.train_state_init(model, tx, (32, 32, 3), replicated), rng)
  init_rng, _ = jax.random.split(rng)
  variables = jax.jit(model.init, static_argnames='train')(  # XLA's default optimisations
      init_rng, jnp.zeros((1, 32, 32, 3)), train=False)
  assert jax.tree.leaves(state.batch_stats)
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(variables),
               jax.device_get({'params': state.params, 'batch_stats': state.batch_stats}))


# ----------------------------------------------------------------- optimizers

def test_schedules_give_exact_learning_rates():
  step = optimizers.schedule(_optimizer_case(schedule='step', learning_rate=0.1,
                                             lr_step_every=10, lr_step_factor=0.5), 100)
  assert [float(step(k)) for k in (0, 9, 10, 19, 20)] == pytest.approx(
      [0.1, 0.1, 0.05, 0.05, 0.025])
  cosine = optimizers.schedule(_optimizer_case(schedule='cosine', learning_rate=0.1), 100)
  assert [float(cosine(k)) for k in (0, 50, 100)] == pytest.approx([0.1, 0.05, 0.0], abs=1e-7)
  warm = optimizers.schedule(_optimizer_case(schedule='warmup_cosine', learning_rate=0.1,
                                             lr_warmup_steps=10), 110)
  assert [float(warm(k)) for k in (0, 5, 10, 60, 110)] == pytest.approx(
      [0.0, 0.05, 0.1, 0.05, 0.0], abs=1e-7)


def test_weight_decay_spares_biases_and_clipping_bounds_the_update():
  params = {'kernel': jnp.ones((2, 2)), 'bias': jnp.ones((2,))}
  grads = {'kernel': jnp.zeros((2, 2)), 'bias': jnp.zeros((2,))}
  for optimizer in ('sgd', 'adamw'):
    tx = optimizers.create(_optimizer_case(optimizer=optimizer, momentum=0.0, learning_rate=0.1,
                                           weight_decay=0.5), 10)
    updates, _ = tx.update(grads, tx.init(params), params)
    # Zero gradients: only the decay moves anything, and only the kernel.
    np.testing.assert_allclose(updates['kernel'], -0.1 * 0.5 * np.ones((2, 2)), rtol=1e-6)
    np.testing.assert_array_equal(updates['bias'], np.zeros(2))
  tx = optimizers.create(_optimizer_case(optimizer='sgd', momentum=0.0, learning_rate=1.0,
                                         grad_clip_norm=1.0), 10)
  big = {'kernel': jnp.full((2, 2), 3.0), 'bias': jnp.full((2,), 4.0)}  # global norm sqrt(68)
  updates, _ = tx.update(big, tx.init(params), params)
  norm = float(optax.tree.norm(updates))
  assert norm == pytest.approx(1.0, rel=1e-6)


def test_nesterov_differs_from_plain_momentum_after_two_steps():
  params, grads = {'w': jnp.ones((2, 2))}, {'w': jnp.ones((2, 2))}
  out = []
  for nesterov in (False, True):
    tx = optimizers.create(_optimizer_case(optimizer='sgd', momentum=0.9, nesterov=nesterov,
                                           learning_rate=1.0), 10)
    state = tx.init(params)
    _, state = tx.update(grads, state, params)
    updates, _ = tx.update(grads, state, params)
    out.append(float(updates['w'][0, 0]))
  # Momentum 0.9: the second update is -(1 + 0.9) = -1.9; Nesterov looks ahead: -(1 + 0.9 * 1.9).
  assert out == pytest.approx([-1.9, -2.71])


def test_bfloat16_computes_in_bf16_and_keeps_float32_parameters():
  record, step, state, batches = build_case(model='seed_cnn', dtype='bfloat16', batch_size=8)
  model = models.create('seed_cnn', num_classes=10, dtype=jnp.bfloat16)
  logits = model.apply({'params': state.params}, batches[0]['image'])
  assert logits.dtype == jnp.bfloat16
  state, metrics = step(state, batches[0])
  assert {leaf.dtype for leaf in jax.tree.leaves(state.params)} == {jnp.dtype('float32')}
  assert np.isfinite(float(metrics['loss'])) and record['params']['trainable'] == 227_146


# ----------------------------------------------------------------- transfer

@pytest.mark.parametrize('model, image_shape, kwargs, fields, trainable', [
    # Reference experiment 2b: ResNet50 -> Dense 512 -> Dense 24, backbone frozen.
    ('resnet50', (32, 32, 3), {'head': 'dropout:0.5,dense:512:relu'}, {}, 1_061_400),
    # Reference experiment 4b and 4c: Xception -> Dense 196; frozen, then block14 unfrozen.
    ('xception', (71, 71, 3), {}, {}, 401_604),
    ('xception', (71, 71, 3), {}, {'transfer': 'finetune', 'finetune_blocks': 1}, 5_150_404),
])
def test_trainable_counts_of_the_seed_composites(model, image_shape, kwargs, fields, trainable):
  num_classes = 24 if model == 'resnet50' else 196
  fields = {'transfer': 'feature_extract', **fields}
  case = case_config(model=model, model_kwargs=kwargs, num_classes=num_classes,
                     image_shape=image_shape, **fields)
  net = models.create(model, num_classes=num_classes, dtype=jnp.float32, **kwargs)
  frozen = transfer.frozen_layers(case, net, image_shape)
  variables = jax.eval_shape(lambda: net.init(jax.random.key(0), jnp.zeros((1, *image_shape)),
                                              train=False))
  trained, _ = transfer.split(variables['params'], frozen)
  assert sum(int(np.prod(x.shape)) for x in jax.tree.leaves(trained)) == trainable


def test_blocks_and_layer_order():
  assert [transfer.block_of(n) for n in ('block14_sepconv1_bn', 'block13_shortcut', 'conv1_bn',
                                         'conv5_block3', 'bn_Conv1', 'Conv_1_bn', 'block_16',
                                         'expanded_conv', 'input_bn')] == [
      'block14', 'block13', 'conv1', 'conv5_block3', 'Conv1', 'Conv_1', 'block_16',
      'expanded_conv', 'input']
  net = models.create('seed_cifar', num_classes=10, dtype=jnp.float32, batchnorm_first=True)
  assert transfer.layer_order(net, (32, 32, 3)) == ['input_bn', 'conv1', 'conv2', 'top']


def test_transfer_problems_are_user_errors():
  with pytest.raises(UserError, match='needs exactly one of finetune_blocks'):
    case_config(model='seed_cifar', transfer='finetune')
  case = case_config(model='seed_cifar', transfer='finetune', finetune_from='conv9')
  net = models.create('seed_cifar', num_classes=10, dtype=jnp.float32)
  with pytest.raises(UserError, match=r"finetune_from='conv9' is not a layer of 'seed_cifar'; "
                                      r'its layers, in order: conv1, conv2'):
    transfer.frozen_layers(case, net, (32, 32, 3))
  case = case_config(model='seed_mlp', transfer='feature_extract')
  with pytest.raises(UserError, match='needs a model with a classifier top'):
    transfer.frozen_layers(case, models.create('seed_mlp', num_classes=10, dtype=jnp.float32),
                           (32, 32, 3))
  with pytest.raises(UserError, match="needs benchmark='train' and transfer='feature_extract'"):
    case_config(model='seed_cnn', cache_features='memory')


def _snapshot(state):
  return jax.tree.map(np.array, jax.device_get({'params': state.params,
                                                'batch_stats': state.batch_stats}))


@pytest.mark.parametrize('fields, frozen', [
    ({'transfer': 'feature_extract'}, ('input_bn', 'conv1', 'conv2')),
    ({'transfer': 'finetune', 'finetune_from': 'conv2'}, ('input_bn', 'conv1')),
    ({'transfer': 'finetune', 'finetune_blocks': 1}, ('input_bn', 'conv1')),
])
def test_frozen_layers_stay_bitwise_unchanged_batchnorm_included(fields, frozen):
  # BatchNorm first: its statistics would move with every training batch if it trained.
  _, step, state, batches = build_case(model='seed_cifar', model_kwargs={'batchnorm_first': True},
                                       batch_size=8, learning_rate=0.05, num_batches=3, **fields)
  before = _snapshot(state)
  for batch in batches * 2:
    state, _ = step(state, batch)
  after = _snapshot(state)
  for collection in ('params', 'batch_stats'):
    for layer in before[collection]:
      same = jax.tree.all(jax.tree.map(np.array_equal, before[collection][layer],
                                       after[collection][layer]))
      assert same == (layer in frozen), (collection, layer)


def test_feature_extract_train_step_costs_less_than_scratch():
  flops = {}
  for mode in ('scratch', 'feature_extract', 'finetune'):
    record, _, _, _ = build_case(model='width_net', batch_size=8, benchmark='compile',
                                 transfer=mode, finetune_blocks=1 if mode == 'finetune' else 0)
    flops[mode] = record['xla']['flops']
    forward = record['xla_forward']['flops']
  # Frozen: the forward pass plus the head's backward; fine-tuning one block sits between.
  assert forward < flops['feature_extract'] < 1.05 * forward
  assert flops['feature_extract'] < flops['finetune'] < flops['scratch']


# ----------------------------------------------------------------- early stopping

class _Model:
  stop_training = False


@pytest.mark.parametrize('values, mode, patience, min_delta', [
    ([1.0, 0.9, 0.95, 0.91, 0.92, 0.5, 0.4], 'min', 3, 0.0),
    ([1.0, 0.9, 0.95, 0.91, 0.92, 0.5, 0.4], 'min', 2, 0.0),
    ([1.0, 0.99, 0.98, 0.97, 0.5, 0.4], 'min', 2, 0.05),
    ([0.1, 0.2, 0.2, 0.3, 0.25, 0.25, 0.2, 0.1], 'max', 3, 0.0),
    ([0.5, 0.4, 0.3], 'min', 0, 0.0),
    ([0.5, 0.6, 0.7], 'min', 0, 0.0),
])
def test_early_stopping_matches_keras(values, mode, patience, min_delta):
  ours = training.EarlyStopping('train_loss', mode, patience, min_delta)
  reference = keras.callbacks.EarlyStopping(monitor='loss', mode=mode, patience=patience,
                                            min_delta=min_delta)
  reference.set_model(_Model())
  reference.on_train_begin()
  stopped = None
  for epoch, value in enumerate(values):
    _, stop = ours.update(value)
    reference.on_epoch_end(epoch, {'loss': value})
    assert stop == reference.model.stop_training, epoch
    if stop:
      stopped = epoch + 1
      break
  assert ours.best_epoch == reference.best_epoch + 1
  assert stopped == (reference.stopped_epoch + 1 if reference.stopped_epoch else None)


def test_early_stopping_stops_at_the_scripted_epoch():
  stopper = training.EarlyStopping('eval_accuracy', 'auto', 2, 0.01)  # auto: max for accuracy
  decisions = [stopper.update(v) for v in (0.50, 0.60, 0.605, 0.59)]
  assert decisions == [(True, False), (True, False), (False, False), (False, True)]
  assert stopper.best_epoch == 2


# ----------------------------------------------------------------- runs

def _suite(**cases):
  config = base.get_config()
  config.benchmark = 'train'
  config.batch_size = 8
  config.cases = base.cases(**cases)
  return config


def test_divergence_is_reported_and_the_suite_goes_on(tmp_path):
  config = _suite(
      exploding=dict(model='seed_mlp', optimizer='sgd', momentum=0.0, learning_rate=1e3),
      next=dict(model='seed_mlp'))
  config.epochs, config.steps_per_epoch = 3, 20
  report = runner.run_suite(config, str(tmp_path))
  exploding, following = report['cases']
  assert exploding['status'] == 'diverged' and exploding['error'] is None
  training = exploding['training']
  assert training['stop_reason'] == 'diverged'
  assert 1 <= training['diverged_at_step'] <= 20 and training['epochs_run'] == 1
  assert not os.path.exists(tmp_path / 'weights' / 'exploding')
  assert following['status'] == 'ok' and following['training']['epochs_run'] == 3
  assert report['suite']['status'] == 'complete'
  report_lib.load(tmp_path / 'report.json')
  text = (tmp_path / 'report.md').read_text()
  assert f'diverged at step {training["diverged_at_step"]}' in text


def test_training_run_writes_metrics_checkpoint_and_curves(tmp_path):
  config = _suite(cnn=dict(model='seed_cnn', schedule='warmup_cosine', lr_warmup_steps=2))
  config.epochs, config.steps_per_epoch = 2, 4
  report = runner.run_suite(config, str(tmp_path))
  case = report['cases'][0]
  training = case['training']
  assert case['status'] == 'ok' and training['epochs_run'] == 2 and training['steps_run'] == 8
  assert case['step_time_s']['n'] == 8 and len(training['history']) == 2
  assert training['stop_reason'] == 'completed'
  assert training['min_train_loss'] == min(r['train_loss'] for r in training['history'])
  # Cosine over 8 steps: the last step's learning rate is close to 0.
  assert training['history'][-1]['learning_rate'] < 0.1 * config.learning_rate
  lines = (tmp_path / 'metrics' / 'cnn.jsonl').read_text().splitlines()
  assert json.loads(lines[0])['hparams']['model'] == 'seed_cnn'
  assert [json.loads(line)['step'] for line in lines[1:]] == [1, 2]
  assert os.listdir(tmp_path / 'metrics' / 'cnn')  # TensorBoard event file
  assert (tmp_path / 'training_curves.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
  restored = pretrained.restore_orbax(tmp_path / 'weights' / 'cnn')
  assert restored['params']['top']['predictions']['kernel'].shape == (256, 10)


def test_restore_best_ends_with_the_best_epoch(tmp_path):
  # lr 1e-6: training barely moves, so the monitored training loss fluctuates; the
  # reported eval and checkpoint must be those of the best epoch, not the last.
  config = _suite(cnn=dict(model='seed_cnn', learning_rate=1e-6, early_stop_metric='train_loss',
                           early_stop_patience=1, restore_best=True))
  config.epochs, config.steps_per_epoch, config.num_batches = 6, 1, 5
  report = runner.run_suite(config, str(tmp_path))
  training = report['cases'][0]['training']
  best = min(training['history'], key=lambda r: r['train_loss'])
  assert training['best_epoch'] == best['epoch']
  assert report['cases'][0]['final_metrics']['loss'] == best['train_loss']


def test_feature_cache_trains_the_same_head_as_recomputing(tmp_path, data_dir):
  config = _suite(
      recompute=dict(cache_features='none'),
      memory=dict(cache_features='memory'),
      disk=dict(cache_features='disk'))
  config.update(model='width_net', model_kwargs={'nf': 8, 'head': 'dropout:0.5,dense:16:relu'},
                transfer='feature_extract', dataset='shapes', data_dir=data_dir, num_classes=0,
                train_split='train[:60]', eval_split='train[300:]', shuffle_buffer=16,
                epochs=2, learning_rate=0.01)
  report = runner.run_suite(config, str(tmp_path))
  cases = {c['name']: c for c in report['cases']}
  assert all(c['status'] == 'ok' for c in cases.values()), [c['error'] for c in cases.values()]
  heads = {name: pretrained.restore_orbax(tmp_path / 'weights' / name)['params']['top']
           for name in cases}
  for cached in ('memory', 'disk'):
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5),
                 heads['recompute'], heads[cached])
    assert cases[cached]['training']['feature_cache_s'] > 0
    for key in ('train_loss', 'eval_loss', 'eval_accuracy'):
      np.testing.assert_allclose([r[key] for r in cases[cached]['training']['history']],
                                 [r[key] for r in cases['recompute']['training']['history']],
                                 rtol=1e-4)
  # Every example of the split (not only full batches), 8 pooled features each.
  assert cases['disk']['training']['feature_cache_bytes'] == 60 * 8 * 4
  assert np.load(tmp_path / 'feature_cache' / 'disk.npy').shape == (60, 8)
  # The head's step skips the backbone: far fewer FLOPs than the frozen full step.
  assert cases['disk']['xla']['flops'] < 0.1 * cases['recompute']['xla']['flops']


# ----------------------------------------------------------------- epochs

@pytest.mark.parametrize('drop, steps, last', [(False, 4, 5), (True, 3, 0)])
def test_an_epoch_covers_every_example_unless_the_remainder_is_dropped(tmp_path, data_dir, drop,
                                                                      steps, last):
  """29 examples at batch 8: Keras runs 4 steps an epoch, the last of 5 examples (the
  seeds' 255 steps over 8,144 Stanford Cars images); drop_remainder runs 3."""
  config = _suite(epoch=dict())
  config.update(model='seed_cnn', dataset='shapes', data_dir=data_dir, num_classes=0,
                image_shape=(32, 32, 3), train_split='train[:29]', epochs=2,
                drop_remainder=drop, checkpoint=False)
  report = runner.run_suite(config, str(tmp_path))
  case, = report['cases']
  assert case['status'] == 'ok', case['error']
  training = case['training']
  assert (training['steps_per_epoch'], training['steps_run'], training['last_batch'],
          training['examples_per_epoch']) == (steps, 2 * steps, last, 8 * 3 + last)
  assert [row['steps'] for row in training['history']] == [steps, steps]
  assert case['step_time_s']['n'] == 2 * steps
  assert f'| {steps} ({last}) |' in (tmp_path / 'report.md').read_text()


def test_a_run_resumed_before_an_epochs_last_batch_runs_both_shapes(data_dir, monkeypatch):
  """A checkpoint of step 3 of 29 examples at batch 8: the resumed run's first batch is
  the epoch's last, of 5. The main program is still compiled for a full batch (its
  costs are a full batch's), and each batch runs on the program of its shape."""
  case = case_config(benchmark='train', model='seed_cnn', dataset='shapes', data_dir=data_dir,
                     num_classes=0, train_split='train[:29]', batch_size=8, epochs=2)
  mesh = parallel.mesh()
  data = runner.open_input('t', case, mesh)
  epoch = data.epoch(case.train_split)
  *_, fresh = build.build(case, mesh, data, 4, epoch=epoch)
  initial = build.initial_state
  monkeypatch.setattr(build, 'initial_state', lambda *args, **kwargs: initial(
      *args, **kwargs).replace(step=jax.device_put(jnp.int32(3), parallel.replicated(mesh))))
  step, state, batches, _, resumed = build.build(case, mesh, data, 4, epoch=epoch)
  compiled = [dataclasses.replace(b.step, lower_s=0, compile_s=0, cache='')  # all but times
              for b in (fresh, resumed)]
  assert compiled[0] == compiled[1] and fresh.params == resumed.params
  sizes = []
  for _ in range(3):
    batch = next(batches)
    state, metrics = step(state, batch)
    sizes.append(len(batch['label']))
  assert sizes == [5, 8, 8] and int(state.step) == 6 and np.isfinite(float(metrics['loss']))
