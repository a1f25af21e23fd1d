"""Reference experiment 3: the CIFAR-10 CNN ablations, the base and every variant as a suite.

docs/reference-experiments.md#3-cifar-10-cnn-ablations

Base: Conv 7 (3x3 same, ReLU) -> Conv 9 (3x3 valid, ReLU) -> MaxPool 2 ->
Flatten -> Dropout 0.3 -> Dense 10 (21,032 parameters); Adam, lr 0.01, batch 32,
up to 50 epochs, early stopping on the training loss with patience 3, 15% of the
training set held out for validation. Each variant changes one thing. The
seeds saw some diverge (lr 0.1, 4 conv layers): a non-finite loss marks a case
`diverged` at its step and the suite goes on.

report.md's Training table is the seeds' table: min train loss, min validation
loss, epochs run, training time, best accuracy, with each case's status.

Needs cifar10 prepared in data_dir (--config.download=True fetches it once); the
MobileNetV2 baseline needs Keras's ImageNet weights file (or
--config.cases.mobilenet_v2.init_from='' to train it from random weights).
Offline at tiny size: --config.dataset=shapes --config.num_classes=0
--config.epochs=2 --config.steps_per_epoch=2 --config.cases.mobilenet_v2.init_from=''
"""

import os

from configs import base

KERAS_MOBILENET_V2_NOTOP = os.path.expanduser(
    '~/.keras/models/mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5')


def get_config():
  config = base.get_config()
  config.name = 'cifar_ablation'
  config.benchmark = 'train'
  config.model = 'seed_cifar'
  config.dataset = 'cifar10'
  config.num_classes = 10
  config.train_split = 'train[:85%]'
  config.eval_split = 'train[85%:]'
  config.normalization = 'unit'
  config.optimizer = 'adam'
  config.learning_rate = 0.01
  config.batch_size = 32
  config.epochs = 50
  config.early_stop_metric = 'train_loss'
  config.early_stop_patience = 3

  def seed_cifar(**kwargs):
    return dict(model_kwargs=kwargs)

  config.cases = base.cases(
      base=dict(),
      conv3=seed_cifar(filters=(7, 7, 9), kernel_sizes=(3, 3, 3)),
      conv4=seed_cifar(filters=(7, 7, 7, 9), kernel_sizes=(3, 3, 3, 3)),
      kernel5=seed_cifar(kernel_sizes=(5, 3)),
      kernel7=seed_cifar(kernel_sizes=(7, 3)),
      single_conv=seed_cifar(filters=(7,), kernel_sizes=(5,), pools=(5, 2)),
      lr_0_1=dict(learning_rate=0.1),
      lr_0_001=dict(learning_rate=0.001),
      lr_0_0001=dict(learning_rate=0.0001),
      sigmoid=seed_cifar(activation='sigmoid'),
      tanh=seed_cifar(activation='tanh'),
      leaky_relu=seed_cifar(activation='leaky_relu'),
      sgd=dict(optimizer='sgd', momentum=0.0),  # Keras's SGD: no momentum
      batchnorm_first=seed_cifar(batchnorm_first=True),
      batch4=dict(batch_size=4),
      batch128=dict(batch_size=128),
      # The transfer baseline: MobileNetV2's ImageNet features at 32x32, a Dense 10 on them.
      mobilenet_v2=dict(model='mobilenet_v2', model_kwargs={'pooling': 'avg'},
                        transfer='feature_extract', normalization='tf',
                        init_from='keras:' + KERAS_MOBILENET_V2_NOTOP),
  )
  return config
