"""One command on a fresh GPU machine: is this suite fast there, and what does it cost?

  make gpu-check    (installs the package with its cuda12 extra, then runs this)
  python -m bench.gpu_check [--workdir=workdirs/gpu-check] [--minutes=8]

Refuses to start without a GPU (exit 2, one line): jax falls back to the CPU when
its CUDA plugin is missing or cannot start, and a CPU figure printed as a GPU
one would be worse than none. Then, in one process sharing one compilation
cache, each part a suite with its report under --workdir:

  resnet50    configs/gpu_resnet50.py b256 (synthetic, the MLPerf comparison) and
              b256_real (the real tf.data pipeline: skipped, saying so, where
              tensorflow is not installed)
  scaling     b256 on 1 device and on every device (weak scaling, 256 per device)
  seeds       configs/quickstart.py's seed study: the MLP and CNN train steps at
              batch 32 and 256 (no real-data case)

and prints one table: images/s (per device), MFU, data wait, peak device memory,
compile time. A part that would start after --minutes is skipped and the table
says so. A part whose config cannot run here (a user error: its data, say) is
listed with its error and the others still run. Exit 1 if a case failed or a part
was skipped or could not run.
"""

import sys

from bench.core.errors import ArgumentParser, UserError, fail
from bench.run import gpu_check


def main(argv=None):
  parser = ArgumentParser(prog='bench.gpu_check', description=__doc__.split('\n\n')[0])
  parser.add_argument('--workdir', default='workdirs/gpu-check')
  parser.add_argument('--minutes', type=float, default=8.0,
                      help='no part starts after this many minutes')
  args = parser.parse_args(argv)
  try:
    return gpu_check.run(args.workdir, args.minutes)
  except UserError as e:
    fail(e)


if __name__ == '__main__':
  sys.exit(main())
