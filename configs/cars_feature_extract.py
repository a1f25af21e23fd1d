"""Reference experiment 4b: Xception's ImageNet features on Stanford Cars, backbone frozen.

docs/reference-experiments.md#4-xception-on-stanford-cars

401,604 trainable parameters (the Dense 196) of 21,263,084. The seeds still took
~195 s per epoch against 227 s for full training: 50x fewer trainable parameters
bought 14% less time, because the frozen backbone's forward pass is most of the
work. Two cases measure that and the fix:
  recompute  every epoch runs the frozen backbone on every image, as the seeds did
  cached     the backbone's features computed once, then only the head trains
report.md's ratio row gives the per-epoch speed-up (epoch time recompute/cached).
Both read the images without augmentation, so both see the same features.

Needs Keras's Xception ImageNet weights file (notop). Offline at tiny size: the
overrides of cars_scratch.py plus --config.init_from=''.
"""

from configs import base
from configs import cars_scratch


def get_config():
  config = cars_scratch.get_config()
  config.name = 'cars_feature_extract'
  config.transfer = 'feature_extract'
  config.init_from = 'keras:' + cars_scratch.KERAS_XCEPTION_NOTOP
  config.augment = 'none'
  config.cases = base.cases(
      recompute=dict(cache_features='none'),
      cached=dict(cache_features='memory'),
  )
  config.ratios = (('recompute', 'cached'),)
  return config
