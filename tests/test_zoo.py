"""The model zoo equals its references: exact parameter counts, Keras outputs for
the same weights, XLA FLOPs, a train step per family, and the weight import."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bench.core.errors import UserError
from bench.measure import costs
from bench.results import schema as report_lib
from bench.workload import pretrained
from bench.workload import steps
import models
from models.layers import parse_head
from tests.conftest import build_case, call_cli, run_cli


def _counts(name, num_classes, shape=(32, 32, 3), **kwargs):
  model = models.create(name, num_classes=num_classes, dtype=jnp.float32, **kwargs)
  variables = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, *shape))))
  return costs.param_counts(variables['params'], variables.get('batch_stats', {}))


@pytest.mark.parametrize('name, kwargs, num_classes, total, non_trainable', [
    # Keras Applications model.count_params(), with and without the top.
    ('resnet50', {}, 1000, 25_636_712, 53_120),
    ('resnet50', {'include_top': False}, 1000, 23_587_712, 53_120),
    ('xception', {}, 1000, 22_910_480, 54_528),
    ('xception', {'include_top': False}, 1000, 20_861_480, 54_528),
    ('mobilenet_v2', {}, 1000, 3_538_984, 34_112),
    ('mobilenet_v2', {'include_top': False}, 1000, 2_257_984, 34_112),
    # The seeds' composites (docs/reference-experiments.md, experiments 2 and 4).
    ('resnet50', {'head': 'dropout:0.5,dense:512:relu'}, 24, 24_649_112, 53_120),
    ('xception', {}, 196, 21_263_084, 54_528),
    # torchvision's trainable counts (it does not count BatchNorm statistics).
    ('resnet18', {'variant': 'v1_5'}, 1000, 11_689_512 + 9_600, 9_600),
    ('resnet34', {'variant': 'v1_5'}, 1000, 21_797_672 + 17_024, 17_024),
    ('resnet50', {'variant': 'v1_5'}, 1000, 25_557_032 + 53_120, 53_120),
    ('resnet101', {'variant': 'v1_5'}, 1000, 44_549_160 + 105_344, 105_344),
    ('resnet152', {'variant': 'v1_5'}, 1000, 60_192_808 + 151_424, 151_424),
])
def test_reference_parameter_counts(name, kwargs, num_classes, total, non_trainable):
  counts = _counts(name, num_classes, **kwargs)
  assert counts == {'total': total, 'trainable': total - non_trainable,
                    'non_trainable': non_trainable}


def test_seed_composites_trainable_counts():
  # Reference experiments 2(a): everything trained; 4(a) likewise.
  assert _counts('resnet50', 24, head='dense:512:relu')['trainable'] == 24_595_992
  assert _counts('xception', 196)['trainable'] == 21_208_556
  # The frozen-backbone heads: 2(b) trains 1,061,400, 4(b) 401,604.
  head = 2048 * 512 + 512 + 512 * 24 + 24
  assert head == 1_061_400 and 2048 * 196 + 196 == 401_604


def _conv(k, cin, cout):
  return k * k * cin * cout + cout


@pytest.mark.parametrize('kwargs, total', [
    ({}, _conv(3, 3, 7) + _conv(3, 7, 9) + 15 * 15 * 9 * 10 + 10),  # 32 same, 30, pool 15
    ({'filters': (7, 7, 9), 'kernel_sizes': (3, 3, 3)},
     _conv(3, 3, 7) + _conv(3, 7, 7) + _conv(3, 7, 9) + 14 * 14 * 9 * 10 + 10),
    ({'filters': (7, 7, 7, 9), 'kernel_sizes': (3, 3, 3, 3)},
     _conv(3, 3, 7) + 2 * _conv(3, 7, 7) + _conv(3, 7, 9) + 13 * 13 * 9 * 10 + 10),
    ({'kernel_sizes': (5, 3)}, _conv(5, 3, 7) + _conv(3, 7, 9) + 15 * 15 * 9 * 10 + 10),
    ({'filters': (7,), 'kernel_sizes': (5,), 'pools': (5, 2)},
     _conv(5, 3, 7) + 3 * 3 * 7 * 10 + 10),  # 32 same, pool 5 -> 6, pool 2 -> 3
    ({'batchnorm_first': True}, 21_032 + 4 * 3),
])
def test_seed_cifar_family_counts(kwargs, total):
  assert _counts('seed_cifar', 10, **kwargs)['total'] == total
  if not kwargs:
    assert total == 21_032


def _width_net_params(nf, k, skip, classes=10):
  """The layer list of models/width.py, counted by hand (BatchNorm: 4 per channel)."""
  def unit(cin, w):
    n = _conv(k, cin, w) + 4 * w + _conv(k, w, w) + 4 * w
    if skip == 'residual' and cin != w:
      n += _conv(1, cin, w) + 4 * w
    return n
  cat = 2 if skip == 'unet' else 1
  return (unit(3, nf) + unit(nf, 2 * nf) + unit(2 * nf, 4 * nf)
          + _conv(2, 4 * nf, 2 * nf) + unit(cat * 2 * nf, 2 * nf)
          + _conv(2, 2 * nf, nf) + unit(cat * nf, nf) + nf * classes + classes)


@pytest.mark.parametrize('name, skip', [('width_net', 'none'), ('width_unet', 'unet'),
                                        ('width_resnet', 'residual')])
@pytest.mark.parametrize('nf, k', [(16, 3), (48, 5)])
def test_width_nets_follow_their_layer_list(name, skip, nf, k):
  assert _counts(name, 10, nf=nf, kernel_size=k)['total'] == _width_net_params(nf, k, skip)


def test_resnet50_v1_5_forward_flops_are_4_1_gmacs_per_image():
  model = models.create('resnet50', num_classes=1000, dtype=jnp.float32, variant='v1_5')
  x = jax.ShapeDtypeStruct((2, 224, 224, 3), jnp.float32)
  variables = jax.eval_shape(model.init, jax.random.key(0), x)
  compiled = jax.jit(model.apply).lower(variables, x).compile()
  macs_per_image = costs.xla_costs(compiled)['flops'] / 2 / 2
  assert macs_per_image == pytest.approx(4.1e9, rel=0.05)


@pytest.mark.parametrize('name, kwargs', [
    ('seed_cifar', {}), ('seed_cifar', {'activation': 'leaky_relu', 'batchnorm_first': True}),
    ('width_net', {'nf': 8}), ('width_unet', {'nf': 8}), ('width_resnet', {'nf': 8}),
    ('resnet18', {'variant': 'v1_5'}), ('resnet50', {'head': 'dropout:0.5,dense:16:relu'}),
    ('xception', {}), ('mobilenet_v2', {'alpha': 0.35}),
])
def test_each_family_trains_at_a_tiny_shape(name, kwargs):
  record, step, state, batches = build_case(
      model=name, model_kwargs=kwargs, image_shape=(32, 32, 3), batch_size=4, num_batches=1)
  before = jax.device_get(state)
  for _ in range(2):
    state, metrics = step(state, batches[0])
  after = jax.device_get(state)
  assert np.isfinite(float(metrics['loss'])) and int(after.step) == 2
  assert record['params']['total'] == costs.param_counts(after.params, after.batch_stats)['total']
  changed = jax.tree_util.tree_map(lambda a, b: bool(np.any(a != b)), before.params, after.params)
  assert all(jax.tree_util.tree_leaves(changed))  # every parameter got a gradient
  if before.batch_stats:
    assert not np.array_equal(*(jax.tree_util.tree_leaves(s.batch_stats)[0]
                                for s in (before, after)))


# ------------------------------------------------------------- Keras equivalence

# (Keras Applications name, ours, input side: small, but what the architecture allows).
KERAS_MODELS = [('ResNet50', 'resnet50', 64), ('Xception', 'xception', 71),
                ('MobileNetV2', 'mobilenet_v2', 64)]


@pytest.fixture(scope='module')
def keras_refs(tmp_path_factory):
  """Per model: its random Keras weights as a legacy .h5, an input batch, and
  Keras's logits and pooled features for it (inference mode)."""
  keras = pytest.importorskip('keras')
  from keras.src.legacy.saving import legacy_h5_format  # pylint: disable=g-import-not-at-top
  import h5py  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  refs = {}
  for keras_name, ours, side in KERAS_MODELS:
    net = getattr(keras.applications, keras_name)(weights=None, input_shape=(side, side, 3),
                                                   classifier_activation=None)
    for layer in net.layers:
      # Statistics away from 0/1, so inference-mode BatchNorm is really compared.
      if isinstance(layer, keras.layers.BatchNormalization):
        gamma, beta, mean, var = layer.get_weights()
        layer.set_weights([rng.uniform(0.5, 1.5, gamma.shape), rng.normal(0, 0.1, beta.shape),
                           rng.normal(0, 0.1, mean.shape), rng.uniform(0.5, 1.5, var.shape)])
    path = tmp_path_factory.mktemp(ours) / f'{ours}.h5'
    with h5py.File(path, 'w') as f:
      legacy_h5_format.save_weights_to_hdf5_group(f, net)
    x = rng.normal(size=(2, side, side, 3)).astype(np.float32)
    features = keras.Model(net.input, net.layers[-2].output)  # the global average pool
    refs[ours] = dict(path=str(path), x=x, logits=np.asarray(net(x, training=False)),
                      features=np.asarray(features(x, training=False)))
    if ours == 'mobilenet_v2':  # Keras 3's own format, which names layers by class
      refs[ours]['native'] = str(path.parent / 'native.weights.h5')
      net.save_weights(refs[ours]['native'])
  return refs


def _variables(name, side, **kwargs):
  model = models.create(name, num_classes=1000, dtype=jnp.float32, **kwargs)
  return model, pretrained.zeros_like_variables(model, (side, side, 3))


@pytest.mark.parametrize('keras_name, name, side', KERAS_MODELS)
def test_keras_weights_give_keras_outputs(keras_refs, keras_name, name, side):
  del keras_name
  ref = keras_refs[name]
  for kwargs, expected in (({}, ref['logits']), ({'include_top': False}, ref['features'])):
    model, variables = _variables(name, side, **kwargs)
    variables, kept = pretrained.load_keras_h5(ref['path'], variables)
    assert kept == []
    out = np.asarray(steps.run_once(jax.jit(model.apply), variables, ref['x']))
    assert out.shape == expected.shape
    assert np.abs(out - expected).max() <= 1e-4


def test_top_that_does_not_fit_is_kept_and_backbone_is_exact(keras_refs):
  ref = keras_refs['resnet50']
  model = models.create('resnet50', num_classes=24, dtype=jnp.float32, head='dense:16:relu')
  init = jax.device_get(steps.run_once(jax.jit(model.init), jax.random.key(1),
                                       jnp.zeros((1, 64, 64, 3))))
  variables, kept = pretrained.load_keras_h5(ref['path'], init)
  assert kept == ['fc1', 'predictions']
  np.testing.assert_array_equal(variables['params']['top']['predictions']['kernel'],
                                init['params']['top']['predictions']['kernel'])
  source = pretrained.read_keras_h5(ref['path'])
  np.testing.assert_array_equal(variables['batch_stats']['conv4_block6']['3_bn']['var'],
                                source['conv4_block6_3_bn'][('batch_stats', 'var')])


def test_init_from_keras_in_a_case(keras_refs):
  ref = keras_refs['xception']
  _, _, state, _ = build_case(model='xception', image_shape=(71, 71, 3), batch_size=2,
                              num_classes=5, init_from=f'keras:{ref["path"]}',
                              benchmark='forward', num_batches=1)
  source = pretrained.read_keras_h5(ref['path'])
  # An unnamed Keras shortcut projection, paired in order: block 13's is the fourth.
  # Keras numbers unnamed layers per process (conv2d, conv2d_1, ... here conv2d_3 when
  # no other Keras model was built before the file's): by order, not by number.
  unnamed = sorted((name for name in source if re.fullmatch(r'conv2d(_\d+)?', name)),
                   key=lambda name: int(name.rpartition('_')[2]) if '_' in name else 0)
  np.testing.assert_array_equal(np.asarray(state.params['block13_shortcut']['kernel']),
                                source[unnamed[3]][('params', 'kernel')])
  assert state.params['top']['predictions']['kernel'].shape == (2048, 5)


def _one_line_error(fn, *args):
  with pytest.raises(UserError) as info:
    fn(*args)
  message = str(info.value)
  assert '\n' not in message
  return message


def test_weight_import_errors_are_one_clear_line(keras_refs, tmp_path):
  ref = keras_refs['mobilenet_v2']
  _, mobilenet = _variables('mobilenet_v2', 64)
  text = tmp_path / 'notes.h5'
  text.write_text('not weights')
  assert 'cannot read Keras weights file' in _one_line_error(
      pretrained.load_keras_h5, str(text), mobilenet)
  truncated = tmp_path / 'truncated.h5'
  with open(ref['path'], 'rb') as f:
    data = f.read()
  truncated.write_bytes(data[:len(data) // 2])
  assert 'it is truncated or not HDF5: download it again' in _one_line_error(
      pretrained.load_keras_h5, str(truncated), mobilenet)
  _, resnet = _variables('resnet50', 64)
  assert ("has no layer 'conv1_bn', which the model needs (its first layers are Conv1, "
          'bn_Conv1, expanded_conv_depthwise): is it the weights of another model'
          in _one_line_error(pretrained.load_keras_h5, ref['path'], resnet))
  _, narrow = _variables('mobilenet_v2', 64, alpha=0.5)
  assert ("layer 'Conv1' has weights {'params/kernel': (3, 3, 3, 32)}, the model expects "
          "{'params/kernel': (3, 3, 3, 16)}"
          in _one_line_error(pretrained.load_keras_h5, ref['path'], narrow))
  assert 'is a Keras 3 `.weights.h5` file' in _one_line_error(
      pretrained.load_keras_h5, ref['native'], mobilenet)


def test_a_source_layer_the_model_lacks_is_an_error():
  _, variables = _variables('seed_cnn', 32)
  source = {'/'.join(p): w for p, w in pretrained.layers(variables).items()}
  source['conv9'] = source['conv3']
  with pytest.raises(UserError, match="has layer 'conv9', which the model lacks"):
    pretrained.merge(variables, source, 'test source', '/'.join)


def test_convert_keras_to_orbax_and_init_from_it(keras_refs, tmp_path):
  ref = keras_refs['mobilenet_v2']
  out = tmp_path / 'mobilenet_ckpt'
  result = run_cli('--model=mobilenet_v2', f'--weights={ref["path"]}', f'--out={out}',
                   module='bench.convert_keras')
  assert result.returncode == 0, result.stderr
  source = pretrained.read_keras_h5(ref['path'])
  restored = pretrained.restore_orbax(str(out))
  np.testing.assert_array_equal(restored['params']['block_16']['project']['kernel'],
                                source['block_16_project'][('params', 'kernel')])
  np.testing.assert_array_equal(restored['params']['top']['predictions']['kernel'],
                                source['predictions'][('params', 'kernel')])
  # Into a 10-class model: the backbone comes from the checkpoint, the top does not fit.
  _, _, state, _ = build_case(model='mobilenet_v2', image_shape=(32, 32, 3), batch_size=2,
                              init_from=f'orbax:{out}', benchmark='forward', num_batches=1)
  np.testing.assert_array_equal(np.asarray(state.batch_stats['Conv_1_bn']['mean']),
                                source['Conv_1_bn'][('batch_stats', 'mean')])
  assert state.params['top']['predictions']['kernel'].shape == (1280, 10)


@pytest.mark.parametrize('args, message', [
    (('--model=mobilenet_v2', '--weights={truncated}', '--out={out}'),
     r'cannot read Keras weights file .*truncated.h5 \(.*\); it is truncated or not HDF5'),
    (('--model=resnet50', '--weights={weights}', '--out={out}'),
     "has no layer 'conv1_bn', which the model needs"),
    (('--model=resnet9', '--weights={weights}', '--out={out}'), "unknown model 'resnet9'"),
    (('--model=mobilenet_v2', '--weights={weights}', '--out={tmp}'), 'already exists'),
    (('--model=mobilenet_v2', '--out={out}'), 'missing --weights'),
])
def test_convert_keras_user_errors(keras_refs, tmp_path, args, message):
  weights = keras_refs['mobilenet_v2']['path']
  truncated = tmp_path / 'truncated.h5'
  with open(weights, 'rb') as f:
    truncated.write_bytes(f.read(4096))
  args = [a.format(weights=weights, truncated=truncated, out=tmp_path / 'out', tmp=tmp_path)
          for a in args]
  result = call_cli(*args, module='bench.convert_keras')
  assert result.returncode == 2, result.stderr
  errors = [line for line in result.stderr.splitlines() if line.startswith('error: ')]
  assert len(errors) == 1 and 'Traceback' not in result.stderr, result.stderr
  assert re.search(message, errors[0]), errors[0]
  assert not (tmp_path / 'out').exists()


def test_model_zoo_config_is_compile_only(tmp_path):
  result = call_cli('--config=configs/model_zoo.py', f'--workdir={tmp_path}',
                    '--config.select=seed_cifar,width_unet,resnet50_dense512_24')
  assert result.returncode == 0, result.stderr
  report = report_lib.load(str(tmp_path / 'report.json'))
  cases = {case['name']: case for case in report['cases']}
  assert list(cases) == ['seed_cifar', 'width_unet', 'resnet50_dense512_24']
  for case in cases.values():
    assert case['status'] == 'ok', case['error']
    assert case['step_time_s']['median'] is None and case['timing']['total_s'] is None
    fwd, train = case['xla_forward']['flops_per_example'], case['xla']['flops_per_example']
    assert 2.5 < train / fwd < 3.5  # backward is about twice the forward
    assert case['memory']['temp_bytes'] > 0
  assert cases['resnet50_dense512_24']['params'] == {
      'total': 24_649_112, 'trainable': 24_595_992, 'non_trainable': 53_120}
  assert cases['seed_cifar']['config']['image_shape'] == [32, 32, 3]
  assert cases['resnet50_dense512_24']['config']['image_shape'] == [224, 224, 3]
  md = (tmp_path / 'report.md').read_text()
  assert '## Compile-only cases' in md
  assert '| resnet50_dense512_24 | ok | resnet50 | 224x224x3 | 8 | 24649112 | 24595992 | 53120 |' in md


@pytest.mark.parametrize('name, kwargs, problem', [
    ('resnet50', {'include_top': 'no'}, "include_top must be True or False, got 'no'"),
    ('resnet50', {'depth': 19}, 'depth 19 must be one of 18, 34, 50, 101, 152'),
    ('seed_cifar', {'filters': (7,), 'kernel_sizes': (3, 3)},
     'filters (7,) and kernel_sizes (3, 3) must have one entry per conv layer'),
    ('seed_cifar', {'activation': 'elu'}, "activation 'elu' must be one of relu, relu6"),
    ('width_unet', {'nf': 0}, 'nf 0 must be a positive integer'),
    ('mobilenet_v2', {'alpha': -1}, 'alpha -1 must be a number > 0'),
    ('xception', {'pooling': 'none'}, "pooling 'none' keeps the feature map"),
    ('xception', {'include_top': False, 'head': 'dense:3'}, 'a head needs include_top=True'),
    ('xception', {'head': 'dropout:1.5'}, "head item 'dropout:1.5' is not dropout:RATE"),
    ('xception', {'head': 'dense:8:elu'}, "head item 'dense:8:elu' is not"),
])
def test_invalid_model_kwargs_are_named(name, kwargs, problem):
  assert models.kwarg_problem(name, kwargs).startswith(problem)


def test_head_spec_layers():
  assert parse_head(' dropout:0.5, dense:512:relu ,dense:24') == [
      ('dropout', 0.5), ('dense', 512, 'relu'), ('dense', 24, 'linear')]
  assert parse_head('') == []
