"""Reference experiment 4a: Xception on Stanford Cars (196 classes), random weights, all
trained (docs/reference-experiments.md#4-xception-on-stanford-cars).

Xception without its top, average-pooled 2048 features -> Dense 196: 21,263,084
parameters, 21,208,556 trainable. Batch 32 at 299x299 (255 steps per epoch over
the 8,144 training images), 30 epochs, exact accuracy on the 8,041 test images
after each. The seeds: ~227 s per epoch (~890 ms per step) on a Colab GPU, 57.9%
after 30 epochs, heavily overfitted.

This is the base of cars_feature_extract.py and cars_finetune.py. cars196 is
prepared from the original Stanford Cars files in DATA_DIR/downloads/manual/
(see README). Offline at tiny size: --config.dataset=shapes
--config.num_classes=0 --config.train_split='train[:80%]'
--config.eval_split='train[80%:]' --config.image_shape='(71, 71, 3)'
--config.batch_size=4 --config.epochs=1 --config.steps_per_epoch=1
"""

import os

from configs import base

KERAS_XCEPTION_NOTOP = os.path.expanduser(
    '~/.keras/models/xception_weights_tf_dim_ordering_tf_kernels_notop.h5')


def get_config():
  config = base.get_config()
  config.name = 'cars_scratch'
  config.benchmark = 'train'
  config.model = 'xception'
  config.model_kwargs = {'pooling': 'avg'}
  config.dataset = 'cars196'
  config.num_classes = 196
  config.train_split = 'train'
  config.eval_split = 'test'
  config.image_shape = (299, 299, 3)
  config.batch_size = 32
  config.epochs = 30
  config.transfer = 'scratch'
  return config
