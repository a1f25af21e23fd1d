"""Reference experiment 5: Stanford Cars with ResNet50, the seeds' PyTorch workflow.

docs/reference-experiments.md#5-resnet50-on-stanford-cars

  feature_extract  frozen ImageNet ResNet50 -> Dense 1024 ReLU -> Dense 196, 5 epochs
                   (the seeds: 43 min for 5 epochs)
  linear_svm       a linear SVM on the frozen features: one Dense 196 trained with the
                   multiclass hinge loss and L2 weight decay, on features computed once
  finetune         every layer trains from the ImageNet weights (better than feature
                   extraction after 5 epochs, in the seeds)
Images resized to 224x224. The seeds' PyTorch loaders normalised them as torchvision
does, for torchvision's weights; the weights here are Keras's ResNet50 ImageNet file
(the suite imports Keras .h5 weights, not torch state dicts), trained on caffe-style
input (BGR, ImageNet mean subtracted, no scaling), so the images are normalised the
way those weights expect (normalization 'auto': the model's, caffe). Torchvision's
normalisation would feed these weights inputs about 60x smaller than they saw. The seeds
saved model and optimizer every 5 epochs and resumed by hand: here every case
checkpoints every 5 epochs (checkpoint_every_epochs), and rerunning the same
command on the same workdir resumes it exactly (bench/train/checkpoints.py).

Offline at tiny size: --config.dataset=shapes --config.num_classes=0
--config.train_split='train[:80%]' --config.eval_split='train[80%:]'
--config.image_shape='(32, 32, 3)' --config.batch_size=4 --config.epochs=1
--config.steps_per_epoch=1 --config.init_from=''
"""

from configs import base
from configs import resnet50_transfer


def get_config():
  config = base.get_config()
  config.name = 'cars_resnet50'
  config.benchmark = 'train'
  config.model = 'resnet50'
  config.dataset = 'cars196'
  config.num_classes = 196
  config.train_split = 'train'
  config.eval_split = 'test'
  config.image_shape = (224, 224, 3)
  config.normalization = 'auto'  # the Keras weights' own: caffe (see above)
  config.batch_size = 32
  config.epochs = 5
  config.checkpoint_every_epochs = 5
  config.init_from = 'keras:' + resnet50_transfer.KERAS_RESNET50_NOTOP
  config.cases = base.cases(
      feature_extract=dict(transfer='feature_extract',
                           model_kwargs={'pooling': 'avg', 'head': 'dense:1024:relu'}),
      linear_svm=dict(transfer='feature_extract', model_kwargs={'pooling': 'avg'},
                      cache_features='memory', loss='hinge', weight_decay=1e-4),
      finetune=dict(transfer='finetune', finetune_from='conv1_conv',
                    model_kwargs={'pooling': 'avg', 'head': 'dense:1024:relu'},
                    learning_rate=1e-4),
  )
  return config
