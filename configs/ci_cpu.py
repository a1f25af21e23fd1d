"""The CI benchmark: a few cases of the parameter-vs-runtime study, diffed in CI.

`.ci/run` runs it after the tests (`make bench-ci`) and compares the report with
the committed benchmarks/baseline-cpu.json (bench/results/compare.py): a changed
parameter count, XLA FLOPs or bytes, or compiled memory fails CI (a model
changed); step times are printed but never fail it, because the CI machine is
shared and noisy. After an intended change, refresh the baseline with
`make baseline` and commit it.
"""

from configs import param_vs_runtime


def get_config():
  config = param_vs_runtime.get_config()
  config.name = 'ci_cpu'
  config.select = ('seed_mlp,seed_cnn,mlp_1024x2,cifar_base,cifar_batchnorm_first,width_nf16,'
                   'resnet18,mobilenet_v2')
  config.timed_steps = 20
  config.ratios = (('seed_mlp', 'seed_cnn'),)
  return config
