"""bench.visualize: the Grad-CAM math, the backbone/top split, and the CLI end to end."""

import json
import os
import re

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image
import pytest

from bench.core.errors import UserError
from bench.train import visualize
from bench.workload import pretrained
import models
from models.layers import without_top
from tests.conftest import call_cli, run_cli

CNN_CONFIG = {'model': 'seed_cnn', 'model_kwargs': {}, 'num_classes': 10,
              'image_shape': [32, 32, 3], 'resize': 'letterbox', 'normalization': 'unit',
              'dtype': 'float32'}


def _init(name, **kwargs):
  """(model, variables, x) at 32x32x3; random variables drawn by numpy in the shapes
  model.init gives, because compiling jax.random's ops for init takes seconds on a CPU."""
  model = models.create(name, num_classes=10, dtype=jnp.float32, **kwargs)
  rng = np.random.default_rng(0)
  x = rng.uniform(size=(1, 32, 32, 3)).astype(np.float32)
  shapes = jax.eval_shape(model.init, jax.random.key(0), x)
  variables = {'params': jax.tree.map(lambda s: rng.normal(0, 0.1, s.shape).astype(s.dtype),
                                      shapes['params'])}
  if 'batch_stats' in shapes:  # positive variances
    variables['batch_stats'] = jax.tree.map(
        lambda s: rng.uniform(0.5, 1.5, s.shape).astype(s.dtype), shapes['batch_stats'])
  return model, variables, x


def test_grad_cam_by_hand():
  # A_0 = [[1, 2], [3, 4]], A_1 = [[4, 0], [0, 0]] (channels last).
  feature_map = np.array([[[1, 4], [2, 0]],
                          [[3, 0], [4, 0]]], np.float32)
  grads = np.array([[[1, -1], [0, 0]],
                    [[0.5, 0], [0.5, 0]]], np.float32)  # alpha = (0.5, -0.25)
  # 0.5 A_0 - 0.25 A_1 = [[-0.5, 1], [1.5, 2]]; relu, then / 2.
  np.testing.assert_array_equal(visualize.grad_cam(feature_map, grads), [[0, 0.5], [0.75, 1]])
  # No positive evidence anywhere stays all zero (no division by zero).
  np.testing.assert_array_equal(visualize.grad_cam(feature_map, -np.abs(grads) - 1),
                                np.zeros((2, 2)))


@pytest.mark.parametrize('name, kwargs', [('seed_cnn', {}),
                                          ('seed_cifar', {'batchnorm_first': True})])
def test_backbone_then_top_is_the_model(name, kwargs):
  model, variables, x = _init(name, **kwargs)
  backbone, head = model.backbone_and_head(pooled=False)
  feature_map = backbone.apply(without_top(variables), x, train=False)
  assert feature_map.ndim == 4
  logits = head.apply({'params': {'top': variables['params']['top']}}, feature_map, train=False)
  np.testing.assert_allclose(logits, model.apply(variables, x, train=False), rtol=1e-6, atol=1e-6)


def test_layer_target_matches_features_target_where_they_are_the_same_tensor():
  # Linear activation and no pooling: the feature map is conv2's output, so the
  # interceptor's gradient must equal the split model's.
  model, variables, x = _init('seed_cifar', activation='linear', pools=())
  at_features = visualize.target_at_features(model, variables, x, class_index=-1)
  at_layer = visualize.target_at_layer(model, variables, x, 'conv2', class_index=-1)
  assert at_features.class_index == at_layer.class_index == int(np.argmax(at_features.logits))
  np.testing.assert_allclose(at_layer.feature_map, at_features.feature_map, rtol=1e-6)
  np.testing.assert_allclose(at_layer.grads, at_features.grads, rtol=1e-5, atol=1e-7)
  assert np.abs(at_layer.grads).max() > 0
  explicit = visualize.target_at_layer(model, variables, x, 'conv2', class_index=3)
  assert explicit.class_index == 3


def test_a_model_without_backbone_is_refused():
  with pytest.raises(UserError, match="model 'seed_mlp' is not built on models.layers.Classifier"):
    visualize.create_model({**CNN_CONFIG, 'model': 'seed_mlp'})


def test_trace_finds_the_layers_and_the_first_convolution():
  model, variables, x = _init('seed_cifar', batchnorm_first=True)
  traced = visualize.trace(model, variables, x)
  assert traced.layers == ['input_bn', 'conv1', 'conv2']
  assert traced.conv_name == 'conv1' and traced.kernel.shape == (3, 3, 3, 7)
  np.testing.assert_array_equal(traced.kernel, variables['params']['conv1']['kernel'])
  assert traced.activations.shape == (32, 32, 7)


@pytest.fixture(scope='module')
def run(tmp_path_factory):
  """A training run's workdir (report.json, a seed_cnn checkpoint), two images and a file
  named like one."""
  root = tmp_path_factory.mktemp('run')
  workdir = root / 'wd'
  _, variables, _ = _init('seed_cnn')
  pretrained.save_orbax(str(workdir / 'weights' / 'cnn'),
                        {'params': variables['params'], 'batch_stats': {}}, {'model': 'seed_cnn'})
  report = {'cases': [{'name': 'cnn', 'config': CNN_CONFIG}]}  # all the command reads
  (workdir / 'report.json').write_text(json.dumps(report))
  pixels = np.random.default_rng(0).integers(0, 256, (40, 64, 3), np.uint8)
  Image.fromarray(pixels).save(root / 'wide.png')
  Image.fromarray(pixels[:, :40]).save(root / 'square.jpg')
  (root / 'notes.png').write_text('not an image')
  return root


def test_cli_writes_the_figures(run, tmp_path):
  out = tmp_path / 'out'
  result = run_cli(f'--workdir={run / "wd"}', '--case=cnn',
                   f'--images={run / "wide.png"},{run / "square.jpg"}', f'--out={out}',
                   module='bench.visualize')
  assert result.returncode == 0, result.stderr[-3000:]
  assert sorted(os.listdir(out)) == ['filters.png', 'square_activations.png',
                                     'square_gradcam.png', 'wide_activations.png',
                                     'wide_gradcam.png']
  for name in os.listdir(out):
    with Image.open(out / name) as image:
      assert image.format == 'PNG'
      width, height = image.size
      assert 200 <= width <= 2000 and 200 <= height <= 2000, (name, image.size)


@pytest.mark.parametrize('image, kwargs, message', [
    ('wide.png', {'layer': 'conv9'},
     "unknown --layer 'conv9' for seed_cnn; its backbone layers are conv1, conv2, conv3$"),
    ('wide.png', {'class_index': 10},
     r"--class_index 10 is out of range: case 'cnn' has 10 classes \(0 to 9\)"),
    ('notes.png', {}, r'cannot decode image .*/notes.png \(.*\); give a JPEG, PNG, GIF or BMP'),
])
def test_user_errors_found_before_writing(run, tmp_path, image, kwargs, message):
  with pytest.raises(UserError, match=message):
    visualize.visualize(str(run / 'wd'), 'cnn', [str(run / 'square.jpg'), str(run / image)],
                        str(tmp_path / 'out'), **kwargs)
  assert not (tmp_path / 'out').exists()


@pytest.mark.parametrize('case, image, message', [
    ('rnn', 'wide.png', "no case 'rnn' in .*/wd/report.json; its cases are cnn"),
    ('cnn', 'tall.png', r'image .*/tall.png does not exist'),
    ('cnn', '', r'image .* is a directory, not a file; --images takes image files'),
])
def test_user_errors_exit_2_with_one_line_and_write_nothing(run, tmp_path, case, image, message):
  out = tmp_path / 'out'
  result = call_cli(f'--workdir={run / "wd"}', f'--case={case}', f'--images={run / image}',
                    f'--out={out}', module='bench.visualize')
  assert result.returncode == 2, result.stderr
  errors = [line for line in result.stderr.splitlines() if line.startswith('error: ')]
  assert len(errors) == 1 and 'Traceback' not in result.stderr, result.stderr
  assert re.search(message, errors[0]), errors[0]
  assert not out.exists()


def test_missing_checkpoint_says_who_writes_it(run, tmp_path):
  workdir = tmp_path / 'wd'
  workdir.mkdir()
  (workdir / 'report.json').write_text((run / 'wd' / 'report.json').read_text())
  result = call_cli(f'--workdir={workdir}', '--case=cnn', f'--images={run / "wide.png"}',
                    f'--out={tmp_path / "out"}', module='bench.visualize')
  assert result.returncode == 2, result.stderr
  assert (f"error: no weights for case 'cnn' at {workdir}/weights/cnn: they are written at the "
          "end of runs of benchmark 'train' with checkpoint=True") in result.stderr.splitlines()
  assert sorted(os.listdir(tmp_path)) == ['wd']
