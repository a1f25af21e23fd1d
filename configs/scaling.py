"""What N devices buy: the seed CNN's train step on 1, 2, 4, ... and all devices.

Weak scaling keeps 32 examples per device (the global batch grows with the
devices); strong scaling keeps the global batch at 32 (each device gets less).
Both strategies run, jit over the device mesh and the classic pmap, so the
Scaling table also compares them on the same devices and batch.
report.md's Scaling table gives examples/s, speed-up, efficiency and the bytes
of the gradient all-reduce; scaling.png plots them.

Any device counts: --config.scaling.device_counts='(1, 2, 4, 8)'. On one CPU,
XLA_FLAGS=--xla_force_host_platform_device_count=8 gives 8 devices that share its
cores: that checks the program, not the speed-up a machine of 8 devices gets.
"""

from configs import base


def get_config():
  config = base.get_config()
  config.name = 'scaling'
  config.model = 'seed_cnn'
  config.batch_size = 32  # weak: per device; strong: global
  config.warmup_steps = 5
  config.timed_steps = 30
  config.scaling.modes = ('weak', 'strong')
  config.cases = base.cases(jit=dict(parallel='jit'), pmap=dict(parallel='pmap'))
  return config
