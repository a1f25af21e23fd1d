"""Reference experiment 1: parameter count versus epoch time on CIFAR-10.

docs/reference-experiments.md#1-mlp-versus-cnn

The seed MLP (445,450 parameters) against the seed CNN (227,146): trained for
10 epochs each with Adam at Keras's defaults, batch 32, exact accuracy on the
test split after every epoch. The seeds saw ~5 s per epoch for the MLP and 6-7 s
for the CNN, and the CNN about 28 points more accurate; report.md's ratios set
parameters, FLOPs, step time and epoch time side by side.

Needs cifar10 prepared in data_dir (--config.download=True fetches it once).
Offline at tiny size: --config.dataset=shapes --config.num_classes=0
--config.train_split='train[:80%]' --config.eval_split='train[80%:]'
--config.epochs=1 --config.steps_per_epoch=2
"""

from configs import base


def get_config():
  config = base.get_config()
  config.name = 'mlp_vs_cnn'
  config.benchmark = 'train'
  config.dataset = 'cifar10'
  config.num_classes = 0
  config.train_split = 'train'
  config.eval_split = 'test'
  config.normalization = 'unit'  # the seeds divided pixels by 255
  config.batch_size = 32
  config.epochs = 10
  config.cases = base.cases(
      mlp=dict(model='seed_mlp'),
      cnn=dict(model='seed_cnn'),
  )
  config.ratios = (('cnn', 'mlp'),)
  return config
