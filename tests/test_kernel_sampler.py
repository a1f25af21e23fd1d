"""The kernel sampler: every kind this backend makes comes back, and a seed repeats itself."""

import jax
import numpy as np

from bench.measure import kernels as kernels_lib
from bench.run import kernel_sampler


def test_the_sampler_makes_every_kind_this_backend_makes_and_repeats_itself():
  # XLA:CPU expands a max-pool's gradient (iotas, a reduce-window, a scatter) and
  # runs no library custom calls: those kinds come back empty here.
  absent = {'select-and-scatter', 'custom-call'} if jax.default_backend() == 'cpu' else set()
  for kind in kernels_lib.KINDS:
    if kind in absent:
      continue
    for seed in (0, 1):
      kernels = kernel_sampler.generate(kind, np.random.default_rng(seed))
      assert kernels and {k.kind for k in kernels} == {kind}, (kind, seed)
  for kind in absent:
    assert kernel_sampler.generate(kind, np.random.default_rng(0)) == []
  again = [[k.key for k in kernel_sampler.generate('convolution', np.random.default_rng(7))]
           for _ in range(2)]
  assert again[0] == again[1]
  every = kernel_sampler.generate('convolution', np.random.default_rng(7), every_kind=True)
  assert set(again[0]) <= {k.key for k in every}
