"""Every reference experiment's config (docs/reference-experiments.md) runs offline at a
tiny size through bench.main, with the trainable parameter counts its models must have."""

import pytest

from bench.results import schema as report_lib
from tests.conftest import call_cli


_SHAPES = ['--config.dataset=shapes', '--config.num_classes=0']
# Small splits of the 360 generated images: a seed config's run reads every example
# of them (feature caching runs the backbone over all of the train split).
_SPLITS = ["--config.train_split=train[:40]", "--config.eval_split=train[340:]"]
_TINY = ['--config.epochs=1', '--config.steps_per_epoch=1']

SEED_CONFIGS = {
    'mlp_vs_cnn': _SHAPES + _SPLITS + _TINY,
    # The frozen case only (the scratch composite's count is pinned by the zoo tests).
    'resnet50_transfer': _SHAPES + _TINY + [
        "--config.image_shape=(32, 32, 3)", '--config.batch_size=4',
        "--config.cases.frozen.init_from=", '--config.select=frozen'],
    # Five of its 17 cases (every case is still expanded and checked): the base,
    # two other models, another batch, and the transfer baseline. No checkpoints.
    'cifar_ablation': _SHAPES + ['--config.epochs=1', '--config.steps_per_epoch=2',
                                 '--config.checkpoint=False',
                                 "--config.cases.mobilenet_v2.init_from=",
                                 '--config.select=base,single_conv,batchnorm_first,batch4,'
                                 'mobilenet_v2'],
    # Xception's train state is 250 MB: its checkpoints are left to test_checkpoints.py.
    'cars_scratch': _SHAPES + _SPLITS + _TINY + [
        "--config.image_shape=(71, 71, 3)", '--config.batch_size=4', '--config.checkpoint=False'],
    # The cached case (recomputing the features is checked against caching them,
    # in memory and on disk, by test_feature_cache_trains_the_same_head_as_recomputing).
    'cars_feature_extract': _SHAPES + _SPLITS + _TINY + [
        "--config.image_shape=(71, 71, 3)", '--config.batch_size=4', '--config.init_from=',
        '--config.checkpoint=False', '--config.select=cached'],
    'cars_finetune': _SHAPES + _SPLITS + _TINY + [
        "--config.image_shape=(71, 71, 3)", '--config.batch_size=4', '--config.init_from=',
        '--config.checkpoint=False'],
    # The linear SVM on cached features (its other two cases are ResNet50 feature
    # extraction and fine-tuning, which resnet50_transfer and the zoo cover).
    'cars_resnet50': _SHAPES + _SPLITS + _TINY + [
        "--config.image_shape=(32, 32, 3)", '--config.batch_size=4', '--config.init_from=',
        '--config.select=linear_svm'],
    # One of its nine cases (all are expanded and checked; the zoo tests train each
    # of the three families at a tiny shape).
    # The case sets its epochs itself: a base --config.epochs would reach no selected case.
    'width_sweep': _SHAPES + _SPLITS + ['--config.steps_per_epoch=1', '--config.batch_size=4',
                                        '--config.select=resnet_nf32',
                                        '--config.cases.resnet_nf32.epochs=1'],
}

# What each seed config must show when run at tiny size: cases, and trainable counts.
EXPECTED = {
    'mlp_vs_cnn': {'mlp': 445_450 - 4 * 257, 'cnn': 227_146 - 4 * 257},
    'resnet50_transfer': {'frozen': 1_061_400 - 18 * 513},
    'cars_scratch': {'cars_scratch': 21_208_556 - 190 * 2049},
    'cars_feature_extract': {'cached': 401_604 - 190 * 2049},
    'cars_finetune': {'finetune': 5_150_404 - 190 * 2049},
}


@pytest.mark.parametrize('name', sorted(SEED_CONFIGS))
def test_seed_config_runs_offline_at_tiny_size(name, tmp_path, data_dir):
  workdir = tmp_path / 'work'
  result = call_cli(f'--config=configs/{name}.py', f'--workdir={workdir}',
                    f'--config.data_dir={data_dir}', *SEED_CONFIGS[name])
  assert result.returncode == 0, result.stderr[-3000:]
  report = report_lib.load(workdir / 'report.json')
  cases = {c['name']: c for c in report['cases']}
  assert report['suite']['status'] == 'complete'
  for case in cases.values():
    assert case['status'] in ('ok', 'diverged'), (case['name'], case['error'])
    assert case['training']['epochs_run'] >= 1 and case['dataset']['name'] == 'shapes'
  for case_name, trainable in EXPECTED.get(name, {}).items():
    # shapes has 6 classes, not the seeds' 10, 24 or 196: the top shrinks accordingly.
    assert cases[case_name]['params']['trainable'] == trainable, case_name
  if name == 'cifar_ablation':
    assert len(cases) == 5 and cases['base']['params']['total'] == 21_032 - 4 * 2026
    assert '## Training' in (workdir / 'report.md').read_text()
  if name == 'cars_feature_extract':
    assert cases['cached']['training']['feature_cache_s'] > 0
