"""Every config field with its default: one case, the seed MLP's train step.

Other configs start from `get_config()` here and override a few fields; a suite
adds named cases with `cases(...)`. docs/configuration.md documents each field.
"""

import ml_collections


def get_config():
  config = ml_collections.ConfigDict()
  config.name = 'default'
  config.notes = ''  # shown under report.md's title: what a reader must know

  # What is measured.
  config.model = 'seed_mlp'
  config.model_kwargs = ml_collections.ConfigDict()
  config.benchmark = 'train_step'  # train_step | eval_step | forward | compile | input | train
  config.dtype = 'float32'  # computation dtype; parameters stay float32
  # Non-overlapping max pools (seed CNN, CIFAR nets, width nets): 'reshape' (a max over
  # the window's axes) or 'flax' (nn.max_pool); models/layers.py POOL_IMPLS says why.
  config.pool_impl = 'reshape'
  # Initial weights: '' (random), 'keras:/path/weights.h5' or 'orbax:/path/dir' (see
  # bench/workload/pretrained.py); the top is taken from them only where it fits.
  config.init_from = ''

  # Input (input_pipeline/): 'synthetic' (random batches already on device), cifar10,
  # cars196, shapes (generated on first use) or image_folder:/path (a subfolder per class).
  config.dataset = 'synthetic'
  config.data_dir = ''  # tfds data dir; '' = $TFDS_DATA_DIR or ~/tensorflow_datasets
  config.download = False  # let tfds download a missing dataset (needs internet)
  config.train_split = 'train'  # tfds split spec: 'train', 'train[:85%]', 'train[100:200]'
  config.eval_split = ''  # after timing, exact metrics over this split; '' = none
  config.image_shape = (32, 32, 3)  # synthetic shape, or the size images are preprocessed to
  config.num_classes = 10  # 0 = the dataset's number of classes
  config.batch_size = 32  # global: split over the devices (and processes)
  # Data parallelism (bench/core/parallel.py): jit over a device mesh, or the classic pmap.
  config.parallel = 'jit'  # jit | pmap
  config.num_devices = 0  # devices the batch is split over; 0 = all
  config.num_batches = 4  # synthetic: distinct batches rotated through the timed steps
  # Preprocessing of real images (input_pipeline/preprocess.py).
  config.resize = 'resize'  # resize | letterbox | center_crop
  config.augment = 'none'  # none | flip | crop_flip (train_step and input cases)
  config.normalization = 'auto'  # auto (the model's) | caffe | tf | torch | unit
  config.shuffle_buffer = 1024  # examples
  config.prefetch = 2  # batches transferred to the devices ahead of the step
  config.data_threads = 0  # tf.data's private thread pool; 0 = one per host core
  # uint8 images to the device, normalised inside the step: a quarter of the bytes
  # a float32 batch copies (the normalisation's FLOPs are reported apart).
  config.device_normalize = False

  # Optimizer of the train step (bench/workload/optimizers.py).
  config.optimizer = 'adam'  # sgd | adam | adamw | rmsprop
  config.learning_rate = 1e-3
  config.momentum = 0.9  # sgd and rmsprop; 0 disables
  config.nesterov = False  # sgd
  # Kernels only (not biases or norms): decoupled for adamw, an L2 term otherwise.
  config.weight_decay = 0.0
  config.schedule = 'constant'  # constant | step | cosine | warmup_cosine
  config.lr_warmup_steps = 0  # warmup_cosine: linear from 0 over these steps
  config.lr_step_every = 1000  # step: multiply by lr_step_factor every this many steps
  config.lr_step_factor = 0.1
  config.grad_clip_norm = 0.0  # clip gradients to this global norm; 0 disables
  config.loss = 'cross_entropy'  # cross_entropy | hinge (multiclass, a linear SVM's)

  # Transfer learning (bench/workload/transfer.py): which layers train.
  config.transfer = 'scratch'  # scratch | feature_extract | finetune
  config.finetune_blocks = 0  # finetune: train the last N backbone blocks ...
  config.finetune_from = ''  # ... or every layer from this one on
  # feature_extract without augmentation: backbone features computed once and kept
  # in host memory or in WORKDIR/feature_cache/; the head trains on them.
  config.cache_features = 'none'  # none | memory | disk

  # Training runs (benchmark='train', bench/train/training.py).
  config.epochs = 1
  config.steps_per_epoch = 0  # 0 = one pass over train_split
  # An epoch's last, smaller batch (what the full ones leave): kept, as Keras does (8,144
  # images at batch 32: 255 steps), or dropped (254). Timed train steps always drop it.
  config.drop_remainder = False
  # Early stopping on a per-epoch metric ('' = off), as Keras's EarlyStopping.
  config.early_stop_metric = ''  # train_loss | train_accuracy | eval_loss | eval_accuracy
  config.early_stop_mode = 'auto'  # auto (min for losses, max for accuracies) | min | max
  config.early_stop_patience = 3  # epochs without improvement before stopping
  config.early_stop_min_delta = 0.0  # smaller changes are no improvement
  config.restore_best = False  # end with the weights of the best monitored epoch
  # Checkpoints (bench/train/checkpoints.py) in WORKDIR/checkpoints/CASE/STEP: a rerun of
  # the same command resumes exactly; final weights exported to WORKDIR/weights/CASE.
  config.checkpoint = True
  config.checkpoint_every_epochs = 1  # 0 = only at the end, on improvements and on SIGTERM
  config.checkpoint_every_steps = 0  # also every N steps (0 = off)
  config.checkpoint_keep = 2  # the last N, plus the best epoch's (early_stop_metric)
  config.checkpoint_async = True  # write in the background while training goes on

  # The timer.
  config.warmup_steps = 5
  config.timed_steps = 50
  config.sync = 'pipelined'  # pipelined | every_step (see bench/measure/timer.py)
  # After the timed steps, trace profile_steps more under jax.profiler and attribute
  # their time to HLO ops and layers (bench/profile/trace.py); the trace is kept in
  # WORKDIR/profiles/CASE/.
  config.profile = False
  config.profile_steps = 5
  config.seed = 0

  # The suite: named cases over this base, a subset to run, ratios to report.
  config.cases = cases()
  config.select = ''  # comma-separated case names; empty runs all
  config.ratios = ()  # (numerator, denominator) case-name pairs for report.md
  # Compiled programs kept across runs (bench/measure/compile_cache.py): 'auto' (.jax_cache/
  # beside the workdir, or $JAX_COMPILATION_CACHE_DIR), a directory, or '' (off).
  config.compile_cache = 'auto'
  # A scaling study: each case run on every device count (default 1, 2, 4, ... and
  # all), with the batch per device fixed ('weak': batch_size is the 1-device batch)
  # or the global batch fixed ('strong'). No modes: no study.
  config.scaling = ml_collections.ConfigDict({'modes': (), 'device_counts': ()})
  return config


def cases(**named):
  """Named cases, each a dict of the fields it sets, kept in the order given."""
  return ml_collections.ConfigDict(
      {name: ml_collections.ConfigDict(fields) for name, fields in named.items()},
      sort_keys=False)
