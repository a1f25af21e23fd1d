"""What checkpointing costs: ResNet50's whole train state saved during training.

The state is what a resumable checkpoint must hold: 25,636,712 parameters, the
Adam moments of each (twice as many again) and 53,120 BatchNorm statistics,
about 308 MB in float32. Its size does not depend on the input, so the images
are small (64x64, batch 4) and a step is short. The report's Checkpoints table
gives, per case, how long training was blocked by its saves against how long
they took in all:
  async  orbax writes in a background thread; training waits only for the copy
         of the state off the devices (the goal: at most 5% of the save's time)
  sync   training waits for the whole write
Each epoch is a few seconds of steps, longer than one save, so no save waits for
the one before it. The disk is the workdir's: put it where the real run's would be.
"""

from configs import base


def get_config():
  config = base.get_config()
  config.name = 'checkpoint_cost'
  config.model = 'resnet50'
  config.num_classes = 1000
  config.image_shape = (64, 64, 3)
  config.batch_size = 4
  config.benchmark = 'train'
  config.epochs = 4
  config.steps_per_epoch = 30
  config.checkpoint_every_epochs = 1
  config.checkpoint_keep = 1
  config.cases = base.cases(
      async_save=dict(checkpoint_async=True),
      sync_save=dict(checkpoint_async=False),
  )
  return config
