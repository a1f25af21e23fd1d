"""init_from problems are user errors found before the run writes anything: every
Keras .h5 and orbax source is read whole and matched against the case's model
first (bench/workload/pretrained.py check, called by bench/run/runner.py)."""

import os
import re
import shutil

import h5py
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bench.workload import pretrained
from bench.workload import steps
import models
from tests.conftest import call_cli

def _variables(name, **kwargs):
  model = models.create(name, num_classes=10, dtype=jnp.float32, **kwargs)
  return jax.device_get(steps.run_once(jax.jit(model.init), jax.random.key(0),
                                       jnp.zeros((1, 32, 32, 3))))


def write_keras_h5(path, variables):
  """`variables` as a Keras Applications weights file (legacy HDF5 layout), for
  models without BatchNorm (whose weights Keras names otherwise)."""
  with h5py.File(path, 'w') as f:
    names = []
    for layer, weights in sorted(pretrained.layers(variables).items()):
      name = pretrained.keras_name(layer)
      names.append(name.encode())
      group, weight_names = f.create_group(name), []
      for (_, leaf), value in weights.items():
        weight_names.append(f'{name}/{leaf}:0'.encode())
        group.create_dataset(weight_names[-1].decode(), data=np.asarray(value))
      group.attrs['weight_names'] = weight_names
    f.attrs['layer_names'] = names


@pytest.fixture(scope='module')
def sources(tmp_path_factory):
  """Weights for seed_cnn (10 classes, 32x32) that fit, and every kind that does not."""
  d = tmp_path_factory.mktemp('weights')
  cnn = _variables('seed_cnn')
  write_keras_h5(d / 'cnn.h5', cnn)
  write_keras_h5(d / 'mlp.h5', _variables('seed_mlp'))
  write_keras_h5(d / 'narrow.h5', _variables('seed_cnn', filters=(16, 64, 128)))
  without_conv2 = {**cnn, 'params': {k: v for k, v in cnn['params'].items() if k != 'conv2'}}
  write_keras_h5(d / 'missing.h5', without_conv2)
  (d / 'garbage.h5').write_text('not weights at all\n')
  (d / 'empty.h5').write_bytes(b'')
  data = (d / 'cnn.h5').read_bytes()
  (d / 'truncated.h5').write_bytes(data[:len(data) // 2])
  pretrained.save_orbax(d / 'cnn_orbax', cnn, {})
  pretrained.save_orbax(d / 'mlp_orbax', _variables('seed_mlp'), {})
  (d / 'empty_orbax').mkdir()
  (d / 'garbage_orbax').mkdir()
  (d / 'garbage_orbax' / 'weights').write_text('junk')
  shutil.copytree(d / 'cnn_orbax', d / 'truncated_orbax')
  # The largest value file of the checkpoint, cut in half.
  largest = max((p for p in (d / 'truncated_orbax').rglob('*') if p.is_file()),
                key=lambda p: p.stat().st_size)
  largest.write_bytes(largest.read_bytes()[:largest.stat().st_size // 2])
  return d


def _run(tmp_path, spec, *extra):
  return call_cli('--config=configs/base.py', '--config.model=seed_cnn',
                  f'--workdir={tmp_path / "wd"}', '--config.warmup_steps=1',
                  '--config.timed_steps=1', f'--config.init_from={spec}', *extra)


@pytest.mark.parametrize('spec, message', [
    ('keras:{d}/garbage.h5', r"cannot read Keras weights file .*/garbage.h5 \(Unable to "
     r"synchronously open file \(file signature not found\)\); it is truncated or not HDF5"),
    ('keras:{d}/truncated.h5', r"cannot read Keras weights file .*/truncated.h5 \(.*truncated "
     r"file: eof = \d+.*\); it is truncated or not HDF5: download it again"),
    ('keras:{d}/empty.h5', r"Keras weights file .*/empty.h5 is empty \(0 bytes\)"),
    ('keras:{d}/mlp.h5', r"Keras weights file .*/mlp.h5 has no layer 'conv1', which the model "
     r"needs \(its first layers are Dense_0, Dense_1, Dense_2\)"),
    ('keras:{d}/narrow.h5', r"Keras weights file .*/narrow.h5 layer 'conv1' has weights "
     r"\{'params/bias': \(16,\), 'params/kernel': \(3, 3, 3, 16\)\}, the model expects "
     r"\{'params/bias': \(32,\), 'params/kernel': \(3, 3, 3, 32\)\}"),
    ('keras:{d}/missing.h5', r"Keras weights file .*/missing.h5 has no layer 'conv2', which "
     r"the model needs \(its first layers are conv1, conv3, fc1\)"),
    ('keras:{d}/cnn_orbax', r".*/cnn_orbax is a directory, not a Keras weights .h5 file; an "
     r"orbax checkpoint directory is init_from=orbax:.*/cnn_orbax"),
    ('orbax:{d}/mlp_orbax', r"orbax checkpoint .*/mlp_orbax has no layer 'conv1', which the "
     r"model needs"),
    ('orbax:{d}/empty_orbax', r"cannot restore orbax checkpoint .*/empty_orbax \(Metadata file "
     r"\(named _METADATA\) does not exist"),
    ('orbax:{d}/garbage_orbax', r"cannot restore orbax checkpoint .*/garbage_orbax \("),
    ('orbax:{d}/truncated_orbax', r"orbax checkpoint .*/truncated_orbax is damaged "
     r"\(OUT_OF_RANGE: .*\); write it again"),
    ('orbax:{d}/cnn.h5', r"cannot restore orbax checkpoint .*/cnn.h5 \("),
])
def test_weights_that_do_not_fit_are_one_error_line_and_nothing_written(
    sources, tmp_path, spec, message):
  result = _run(tmp_path, spec.format(d=sources))
  assert result.returncode == 2, result.stderr
  line, = result.stderr.splitlines()
  assert re.fullmatch(r"error: case 'default': " + message + '.*', line), line
  assert os.listdir(tmp_path) == []


@pytest.mark.parametrize('spec', ['keras:{d}/cnn.h5', 'orbax:{d}/cnn_orbax'])
def test_weights_that_fit_start_the_run(sources, tmp_path, spec):
  result = _run(tmp_path, spec.format(d=sources), '--config.benchmark=compile')
  assert result.returncode == 0, result.stderr
  assert sorted(os.listdir(tmp_path / 'wd')) == ['report.csv', 'report.json', 'report.md',
                                                 'run.json']
