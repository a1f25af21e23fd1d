"""How long do steps wait for data? The input pipeline alone, then train steps fed by it.

  python -m bench.main --config=configs/input_pipeline.py --workdir=workdirs/input_pipeline

Reads the embedded `shapes` dataset (generated under data_dir on first use);
point it at your own images with --config.dataset=image_folder:/path or at
--config.dataset=cars196. The `input` cases time the pipeline with no model
(read, decode, crop, letterbox, flip, normalise, batch, transfer): the most
examples/s any model can be fed. The train cases show the data-wait share of
their step time: large for a tiny CNN whose steps outrun the pipeline, near
zero for a model whose steps take longer than a batch takes to prepare.
"""

from configs import base


def get_config():
  config = base.get_config()
  config.name = 'input_pipeline'
  config.dataset = 'shapes'
  config.num_classes = 0  # the dataset's
  config.train_split = 'train[:80%]'
  config.batch_size = 32
  config.warmup_steps = 5
  config.timed_steps = 50
  cars_like = dict(image_shape=(224, 224, 3), resize='letterbox', augment='crop_flip')
  config.cases = base.cases(
      letterbox224_augment=dict(benchmark='input', **cars_like),
      letterbox224=dict(benchmark='input', image_shape=(224, 224, 3), resize='letterbox'),
      resize32_augment=dict(benchmark='input', image_shape=(32, 32, 3), augment='crop_flip'),
      seed_cnn32=dict(model='seed_cnn', image_shape=(32, 32, 3), resize='letterbox',
                      augment='crop_flip', eval_split='train[80%:]'),
      # A model whose step outlasts the pipeline (96x96: 224 takes ~8 s a step on 2 cores).
      mobilenet_v2_96=dict(model='mobilenet_v2', batch_size=16, timed_steps=10,
                           eval_split='train[80%:]', image_shape=(96, 96, 3),
                           resize='letterbox', augment='crop_flip'),
  )
  return config
