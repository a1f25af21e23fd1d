"""The report's `environment` block: what produced the numbers (the host's identity
keys read by bench/core/machine.py)."""

import datetime
import importlib.metadata
import os
import platform
import socket
import subprocess
import sys

import jax

from bench.core import machine
from bench.measure import compile_cache

# The harness itself first: which version of it produced the numbers, installed or not.
_PACKAGES = {
    'flax_bench': ('flax-bench',),
    'jax': ('jax',), 'jaxlib': ('jaxlib',), 'flax': ('flax',), 'optax': ('optax',),
    'orbax': ('orbax-checkpoint',), 'tensorflow': ('tensorflow-cpu', 'tensorflow'),
    'tensorflow_datasets': ('tensorflow-datasets',), 'numpy': ('numpy',),
}
# The repository's root: this file is bench/measure/environment.py under it.
_REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _version(distributions):
  # Read from package metadata: importing tensorflow just for its version costs seconds.
  for dist in distributions:
    try:
      return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
      continue
  return None


def _git(*args):
  try:
    result = subprocess.run(['git', '-C', _REPO, *args], capture_output=True, text=True,
                            timeout=10, check=True)
  except (OSError, subprocess.SubprocessError):
    return None
  return result.stdout.strip()


def collect():
  """The environment block of a report. `peaks` is null: the runner measures them
  after the last case (bench/measure/peaks.py says why)."""
  devices = jax.devices()
  commit = _git('rev-parse', 'HEAD')
  status = _git('status', '--porcelain', '--untracked-files=no') if commit else None
  return {
      'python': platform.python_version(),
      'versions': {name: _version(dists) for name, dists in _PACKAGES.items()},
      'backend': jax.default_backend(),
      'device_kind': devices[0].device_kind,
      'device_count': jax.device_count(),
      'local_device_count': jax.local_device_count(),
      'process_count': jax.process_count(),
      # Devices of each process, in process order.
      'devices_per_process': [sum(d.process_index == p for d in devices)
                              for p in range(jax.process_count())],
      # machine_id, cpu_model, cpu_signature, cpu_count, memory_bytes: bench/core/machine.py.
      **machine.host(),
      'xla_flags': os.environ.get('XLA_FLAGS'),
      'compile_cache': compile_cache.current(),
      'git_commit': commit,
      'git_dirty': None if status is None else bool(status),
      'hostname': socket.gethostname(),
      'command': ' '.join(sys.argv),
      'peaks': None,
      'timestamp_utc': datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds'),
  }
