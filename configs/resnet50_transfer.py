"""Reference experiment 2: ResNet50 transfer learning on a 24-class image folder.

docs/reference-experiments.md#2-resnet50-transfer

Images letterboxed to 224x224 (longer side scaled, shorter side padded), then
ResNet50 without its top, global-average-pooled 2048 features -> Dropout 0.5 ->
Dense 512 -> Dense 24: 24,649,112 parameters, 53,120 of them non-trainable.
  scratch  random initialisation, everything trained (24,595,992 trainable);
           the seeds saw 98% train / 58% test accuracy: overfitting.
  frozen   ImageNet weights, backbone frozen (1,061,400 trainable); 80% / 86%.

The images: --config.dataset=image_folder:/path/to/images (one subfolder per
class); a fifth of them held out for evaluation. The ImageNet weights: Keras's
own file, where keras.applications.ResNet50(include_top=False) downloads it.
Offline at tiny size: --config.dataset=shapes --config.num_classes=0
--config.image_shape='(32, 32, 3)' --config.batch_size=4 --config.epochs=1
--config.steps_per_epoch=1 --config.cases.frozen.init_from=''
"""

import os

from configs import base

KERAS_RESNET50_NOTOP = os.path.expanduser(
    '~/.keras/models/resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5')


def get_config():
  config = base.get_config()
  config.name = 'resnet50_transfer'
  config.benchmark = 'train'
  config.model = 'resnet50'
  config.model_kwargs = {'pooling': 'avg', 'head': 'dropout:0.5,dense:512:relu'}
  config.dataset = 'image_folder:' + os.path.expanduser('~/data/images24')
  config.num_classes = 24
  config.train_split = 'train[:80%]'
  config.eval_split = 'train[80%:]'
  config.image_shape = (224, 224, 3)
  config.resize = 'letterbox'
  config.batch_size = 32
  config.epochs = 10
  config.cases = base.cases(
      scratch=dict(transfer='scratch'),
      frozen=dict(transfer='feature_extract', init_from='keras:' + KERAS_RESNET50_NOTOP),
  )
  config.ratios = (('scratch', 'frozen'),)
  return config
