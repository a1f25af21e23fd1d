"""The persistent compilation cache: compiled programs kept on disk across runs.

A rerun of a suite, an A/B's later rounds and a sweep over the same shapes read
their executables back instead of compiling them again (ResNet-50's train step
takes tens of seconds to compile). On by default (config `compile_cache`):

  'auto'     $JAX_COMPILATION_CACHE_DIR when set, else .jax_cache/ beside the workdir
             (in the workdir's parent, shared by the runs there);
  a path     that directory;
  ''         off.

Every program is cached however fast it compiled: jax's defaults skip programs
that compile in under a second, which on a CPU is most of a small suite. Whether
a case's timed step came from the cache is in its report (`compile_cache`, from
bench/measure/timer.py): a cached compile_s is the time to read it, and report.md says so.

jax sets the cache up at the first compilation after `configure` and keeps it;
`configure` again (another run in the same process) starts it over.
"""

import os

import jax
from jax.experimental.compilation_cache import compilation_cache

AUTO = 'auto'
DIRECTORY = '.jax_cache'


def directory(setting, workdir):
  """The cache directory `setting` (the config's compile_cache) names for a run in
  `workdir`, or None when the cache is off."""
  if not setting:
    return None
  if setting == AUTO:
    return (os.environ.get('JAX_COMPILATION_CACHE_DIR')
            or os.path.join(os.path.dirname(os.path.abspath(workdir)), DIRECTORY))
  return os.path.abspath(os.path.expanduser(setting))


def configure(setting, workdir):
  """Turns the cache on in `directory(setting, workdir)`, or off; returns the directory."""
  path = directory(setting, workdir)
  compilation_cache.reset_cache()  # a cache set up by an earlier run of this process
  jax.config.update('jax_enable_compilation_cache', path is not None)
  if path is not None:
    jax.config.update('jax_compilation_cache_dir', path)
    jax.config.update('jax_persistent_cache_min_compile_time_secs', 0)
    jax.config.update('jax_persistent_cache_min_entry_size_bytes', 0)
  return path


def current():
  """The directory this process caches compiled programs in, or None."""
  if not jax.config.jax_enable_compilation_cache:
    return None
  return jax.config.jax_compilation_cache_dir or None
