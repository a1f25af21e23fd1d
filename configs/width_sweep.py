"""Reference experiment 6: width sweep and skip connections on a 10-class image task.

docs/reference-experiments.md#6-width-sweep-and-skip-connections

The encoder-decoder of models/width.py at NF = 16, 32, 48, 64, 80, 96, 128
filters (kernel 3), trained 30 epochs each; then NF 32 with U-Net skip
connections (30 epochs) and with residual blocks (25 epochs, as the seeds). The seeds' 30
epochs took 457 s at NF 16 up to 2,373 s at NF 128, while validation accuracy
saturated at 45-46%; the U-Net variant took 692 s for 56.4%, the residual one
4,349 s for 70.5%.

Needs cifar10 prepared in data_dir. Offline at tiny size: --config.dataset=shapes
--config.num_classes=0 --config.train_split='train[:80%]'
--config.eval_split='train[80%:]' --config.epochs=1 --config.steps_per_epoch=1
--config.batch_size=4 --config.cases.resnet_nf32.epochs=1 (a case's own field
is overridden through its path) and --config.select to run a few cases
"""

from configs import base

WIDTHS = (16, 32, 48, 64, 80, 96, 128)


def get_config():
  config = base.get_config()
  config.name = 'width_sweep'
  config.benchmark = 'train'
  config.dataset = 'cifar10'
  config.num_classes = 10
  config.train_split = 'train'
  config.eval_split = 'test'
  config.batch_size = 32
  config.epochs = 30
  named = {f'nf{width}': dict(model='width_net', model_kwargs={'nf': width, 'kernel_size': 3})
           for width in WIDTHS}
  named['unet_nf32'] = dict(model='width_unet', model_kwargs={'nf': 32, 'kernel_size': 3})
  named['resnet_nf32'] = dict(model='width_resnet', epochs=25,
                              model_kwargs={'nf': 32, 'kernel_size': 3})
  config.cases = base.cases(**named)
  config.ratios = (('nf128', 'nf16'),)
  return config
