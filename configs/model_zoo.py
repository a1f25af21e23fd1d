"""The model zoo: every registered model at its reference input, compile-only.

Each case lowers and compiles the train step and the forward pass without
running them (benchmark 'compile'), so even ResNet152 and Xception cost seconds
on a CPU: the report has parameters (total, trainable, non-trainable), forward
and train-step XLA FLOPs per example, bytes accessed and memory analysis.
Besides the registered names at their defaults: ResNet50 in the torchvision
v1.5 layout, and the seeds' two transfer composites (reference experiments 2 and 4,
docs/reference-experiments.md).

  python -m bench.main --config=configs/model_zoo.py --workdir=workdirs/zoo
  python -m bench.main --config=configs/model_zoo.py --workdir=/tmp/z --config.select=resnet50,xception
"""

import models
from configs import base


def _case(name, **fields):
  return {'model': name, 'image_shape': models.default_image_shape(name),
          'num_classes': models.default_num_classes(name), **fields}


def get_config():
  config = base.get_config()
  config.name = 'model_zoo'
  config.benchmark = 'compile'
  config.batch_size = 8
  config.num_batches = 1
  zoo = {name: _case(name) for name in models.names() if not name.startswith('test_')}
  zoo.update(
      resnet50_v1_5=_case('resnet50', model_kwargs={'variant': 'v1_5'}),
      # Reference experiment 2: ResNet50 backbone -> Dense 512 -> Dense 24 (24,649,112 parameters).
      resnet50_dense512_24=_case('resnet50', num_classes=24,
                                 model_kwargs={'head': 'dropout:0.5,dense:512:relu'}),
      # Reference experiment 4: Xception backbone -> Dense 196 (21,263,084 parameters).
      xception_196=_case('xception', num_classes=196),
  )
  config.cases = base.cases(**zoo)
  return config
