"""ResNet-50 v1.5 training throughput on GPUs, against MLPerf's figures.

The anchors (issue: "Ready for the GPU"): MLPerf Training v4.0, NVIDIA 8x H200
(MXNet + DALI, FP16, batch 400 per GPU): about 7,950 images/s per GPU; v3.0 on
H100: about 7,000; flax's imagenet example: about 1,030 per V100. The best
ResNet-50 runs reach about 20% MFU.

Every case: ResNet-50 v1.5 (stride in the bottleneck's 3x3, as MLPerf and
torchvision), bfloat16 compute with float32 parameters, 224x224x3, 1000 classes,
SGD with Nesterov momentum, uint8 images normalised inside the step (a quarter of
a float32 batch's host-to-device bytes). One device unless a case says otherwise,
so images/s is per GPU as MLPerf quotes it.

  b256              the headline: synthetic batches already on the device, jit
  b64 ... b512      the batch sweep
  b256_pmap         the same step under the classic pmap
  b256_real         the real input pipeline: JPEGs decoded, cropped, flipped and
                    resized by tf.data on the host (the embedded `shapes` images, 6
                    classes, generated on first use); its data wait says whether the
                    host keeps up

The all-devices point is a weak-scaling study of b256 (256 per device on 1 and on
every device): --config.select=b256 --config.scaling.modes="('weak',)"
--config.scaling.device_counts="(1, 8)". `make gpu-check` (bench/gpu_check.py)
runs b256, b256_real, that scaling point and the seed study, and prints one
summary table. On a 2-core CPU ResNet-50 at 224 takes about 3 s per step of 32
examples: this config is for GPUs.
"""

from configs import base

PER_DEVICE = 256


def get_config():
  config = base.get_config()
  config.name = 'gpu_resnet50'
  config.model = 'resnet50'
  config.model_kwargs = {'variant': 'v1_5'}
  config.dtype = 'bfloat16'
  config.image_shape = (224, 224, 3)
  config.num_classes = 1000
  config.batch_size = PER_DEVICE
  config.num_devices = 1
  config.device_normalize = True
  config.optimizer = 'sgd'
  config.learning_rate = 0.1
  config.nesterov = True
  config.num_batches = 2  # two distinct 38 MB batches (uint8) rotate on the device
  config.warmup_steps = 10
  config.timed_steps = 50
  real = dict(dataset='shapes', num_classes=0, augment='crop_flip', resize='resize')
  config.cases = base.cases(
      b256=dict(),
      b64=dict(batch_size=64),
      b128=dict(batch_size=128),
      b512=dict(batch_size=512),
      b256_pmap=dict(parallel='pmap'),
      b256_real=real,
  )
  return config
