"""The embedded default: the seeds' question (reference experiment 1) on synthetic CIFAR-10.

docs/reference-experiments.md#1-mlp-versus-cnn

The seed MLP has twice the parameters of the seed CNN; is it slower? Train steps
of both at batch 32 and 256 on 32x32x3 inputs; report.md ends with the ratios.
One more case trains the CNN from real encoded images (the embedded `shapes`
dataset, generated on first use), letterboxed and augmented on the fly, and
reports how much of its step time went to waiting for data, then its exact
accuracy on a held-out fifth.
"""

from configs import base


def get_config():
  config = base.get_config()
  config.name = 'quickstart'
  # More warm-up than the base: the first case of a process also warms the
  # XLA CPU thread pool. About a minute in all on a 2-core CPU.
  config.warmup_steps = 10
  config.timed_steps = 50
  config.cases = base.cases(
      mlp_b32=dict(model='seed_mlp', batch_size=32),
      cnn_b32=dict(model='seed_cnn', batch_size=32),
      mlp_b256=dict(model='seed_mlp', batch_size=256),
      cnn_b256=dict(model='seed_cnn', batch_size=256),
      cnn_shapes_b32=dict(model='seed_cnn', batch_size=32, dataset='shapes', num_classes=0,
                          train_split='train[:80%]', eval_split='train[80%:]',
                          resize='letterbox', augment='crop_flip'),
  )
  config.ratios = (('cnn_b32', 'mlp_b32'), ('cnn_b256', 'mlp_b256'))
  return config
