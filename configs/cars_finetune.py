"""Reference experiment 4c: Xception fine-tuned on Stanford Cars from ImageNet weights.

docs/reference-experiments.md#4-xception-on-stanford-cars

The top and the backbone's last block (block14: two separable convolutions and
their BatchNorms) train, 5,150,404 parameters as in the seeds; the rest is
frozen, its BatchNorm in inference mode. The seeds: ~210 s per epoch, 53-57%.
A lower learning rate than from scratch keeps the pretrained block from being
wrecked in the first steps. The final weights (WORKDIR/weights/finetune)
are what section 4d's Grad-CAM maps read:
  python -m bench.visualize --workdir=DIR --case=finetune --images=a.jpg,b.jpg --out=DIR/cam

Offline at tiny size: the overrides of cars_scratch.py plus --config.init_from=''.
"""

from configs import cars_scratch


def get_config():
  config = cars_scratch.get_config()
  config.name = 'finetune'
  config.transfer = 'finetune'
  config.finetune_blocks = 1
  config.init_from = 'keras:' + cars_scratch.KERAS_XCEPTION_NOTOP
  config.learning_rate = 1e-4
  return config
