"""Does parameter count predict runtime? Many models and sizes, one input and batch.

Every case is the Adam train step at the same input (32x32x3, 10 classes) and
batch (32), so the only thing that changes is the model: MLPs of several widths
and depths (all parameters, few FLOPs per parameter), the seeds' MLP and CNN
(reference experiment 1), the seed CIFAR family (3), the width-sweep nets with
their U-Net and residual variants (6; docs/reference-experiments.md), ResNet18/34/50,
MobileNetV2 and Xception. report.md's "Does parameter count predict step time?" section
correlates log step time with each proxy (parameters, XLA FLOPs, bytes
accessed, activation bytes, compiled temp bytes) and tests a roofline
predictor built on the device peaks measured in the same run; plots:
proxies.png and roofline.png. `python -m bench.analysis` redoes it on any report.

The ImageNet models run at 32x32, not at their reference 224x224 (299 for
Xception), so the study takes minutes on a CPU; `notes` says so in the report.
On a GPU, run them at their reference size with --config.image_shape='(224, 224, 3)'
(and a larger --config.batch_size).

  python -m bench.main --config=configs/param_vs_runtime.py --workdir=workdirs/pvr
"""

from configs import base
from configs import cifar_ablation
from configs import width_sweep

# (widths of the hidden layers): width at fixed depth, then depth at fixed width.
MLPS = {'mlp_64x2': (64, 64), 'mlp_1024x2': (1024, 1024), 'mlp_4096x2': (4096, 4096),
        'mlp_256x1': (256,), 'mlp_256x4': (256,) * 4, 'mlp_256x8': (256,) * 8}
SEED_CIFAR = ('base', 'conv3', 'conv4', 'kernel7', 'single_conv', 'batchnorm_first')
WIDTHS = (16, 32, 64)
IMAGENET_MODELS = ('resnet18', 'resnet34', 'resnet50', 'mobilenet_v2', 'xception')
# Cases whose steps take 0.25 s and more on a 2-core CPU: fewer of them are timed.
SLOW = ('width_nf32', 'width_nf64', 'width_unet_nf32', 'width_resnet_nf32') + IMAGENET_MODELS
SLOW_TIMED_STEPS = 10


def get_config():
  config = base.get_config()
  config.name = 'param_vs_runtime'
  config.notes = ('All cases: Adam train step, 32x32x3 input, batch 32, 10 classes. '
                  'ResNet18/34/50, MobileNetV2 and Xception run at 32x32 rather than their '
                  'reference 224x224 (Xception 299x299) so the study runs in minutes on a '
                  'CPU: their FLOPs and activations are those of the small input.')
  config.image_shape = (32, 32, 3)
  config.num_classes = 10
  config.batch_size = 32
  config.warmup_steps = 3
  config.timed_steps = 30
  ablation = cifar_ablation.get_config().cases
  named = {'seed_mlp': dict(model='seed_mlp'), 'seed_cnn': dict(model='seed_cnn')}
  named.update({name: dict(model='seed_mlp', model_kwargs={'features': widths})
                for name, widths in MLPS.items()})
  named.update({f'cifar_{name}': dict(model='seed_cifar', **ablation[name].to_dict())
                for name in SEED_CIFAR})
  sweep = width_sweep.get_config().cases
  named.update({f'width_nf{nf}': sweep[f'nf{nf}'].to_dict() for nf in WIDTHS})
  named.update({f'width_{name}': {k: v for k, v in sweep[name].items() if k != 'epochs'}
                for name in ('unet_nf32', 'resnet_nf32')})
  named.update({name: dict(model=name) for name in IMAGENET_MODELS})
  for name in SLOW:
    named[name]['timed_steps'] = SLOW_TIMED_STEPS
  config.cases = base.cases(**named)
  config.ratios = (('seed_mlp', 'seed_cnn'), ('mlp_4096x2', 'resnet18'),
                   ('resnet50', 'mobilenet_v2'))
  return config
