"""A case's memory, estimated from shapes before anything is allocated, and a case
that cannot fit refused.

XLA:CPU does not fail cleanly on an allocation it cannot make: a case whose
parameters or batches exceed the machine's memory (an image_shape of
(100000, 100000, 3) gives the seed MLP's first Dense layer 3.8 TB of weights) hangs
in its first computation, where neither Ctrl-C nor SIGTERM reach it. So the
runner checks every case here before anything is written (`check`):
jax.eval_shape only, nothing is computed or allocated.

The estimate is a lower bound, so that a case that fits is never refused:
  * the train state (parameters, BatchNorm statistics, the optimizer's state of
    the layers that train), which every device holds whole;
  * the batches on the devices: a synthetic case's num_batches distinct ones,
    one for a real-data case (its prefetched ones are more), each device its share;
  * the largest output of a single leaf layer over one device's share of a batch:
    it exists at some moment of every step, whatever XLA fuses around it. A train
    step keeps far more for its backward pass, but how much is XLA's choice
    (the compiled program's temp_bytes, in the report);
  * on the host, the one global batch a synthetic case draws in numpy (or a
    pipeline assembles) before placing it.
On a CPU the devices' memory is the host's, so all of it counts against the host.

What a train step keeps for its backward pass is known once it is compiled: the
runner calls `check_compiled` between the compilation and the first step, and a
step whose temporaries cannot fit fails its case (MemoryError, exit 1) instead of
hanging (the seed CNN at 512x512, batch 32, wants 13.3 GB of them; its estimate is 2.98 GB).

Memory available: on a CPU the least of Linux's MemAvailable, the cgroup's limit
less its usage, and RLIMIT_AS (ulimit -v) less the address space the process holds;
on another device its memory_stats() bytes_limit less bytes_in_use.
"""

import math
import resource

import jax
import jax.numpy as jnp
import numpy as np
import optax

from bench.core import parallel
from bench.core.errors import UserError
from bench.measure import costs
from bench.workload import build
from bench.workload import optimizers
from bench.workload import steps
from bench.workload import transfer


def _bytes(tree):
  # The state's random key (an extended dtype) is a few bytes: not counted.
  return int(sum(math.prod(x.shape) * np.dtype(x.dtype).itemsize
                 for x in jax.tree_util.tree_leaves(tree)
                 if not jax.dtypes.issubdtype(x.dtype, jax.dtypes.extended)))


def estimate(case, mesh):
  """{'state', 'batch', 'activation'}: bytes of the train state, of one device's share
  of one batch, and of the largest leaf layer output over that share (module
  docstring); from shapes only."""
  model = build.model_of(case)
  image_shape = tuple(case.image_shape)
  # As build.build: only a training case holds optimizer state and freezes layers.
  training = case.benchmark in build.TRAINING
  frozen = transfer.frozen_layers(case, model, image_shape) if training else frozenset()
  tx = (optimizers.create(case, build.total_steps(case, 1)) if training
        else optax.identity())
  state = jax.eval_shape(
      steps.train_state_init(model, tx, image_shape, parallel.replicated(mesh), frozen),
      jax.random.key(0))
  share = build.per_device_batch(case, mesh)
  variables = {k: v for k, v in (('params', state.params), ('batch_stats', state.batch_stats))
               if v}
  outputs = costs.leaf_outputs(model, variables,
                               jax.ShapeDtypeStruct((share, *image_shape), jnp.float32))
  return {'state': _bytes(state), 'batch': _batch_bytes(case, mesh),
          'activation': max((_bytes(x) for x in outputs), default=0)}


def _batch_bytes(case, mesh):
  """Bytes of one device's share of a batch: its images (uint8 or float32) and labels."""
  pixel = 1 if case.device_normalize else 4
  return build.per_device_batch(case, mesh) * (math.prod(case.image_shape) * pixel + 4)


def _read(path):
  try:
    with open(path, encoding='ascii') as f:
      return f.read()
  except OSError:
    return None


def _cgroup_room():
  """The cgroup's memory limit less its usage (v2, else v1), or None without a limit."""
  found = _read('/proc/self/cgroup') or ''
  v2 = next((line[3:] for line in found.splitlines() if line.startswith('0::')), None)
  for limit, usage in ((f'/sys/fs/cgroup{v2}/memory.max', f'/sys/fs/cgroup{v2}/memory.current'),
                       ('/sys/fs/cgroup/memory.max', '/sys/fs/cgroup/memory.current'),
                       ('/sys/fs/cgroup/memory/memory.limit_in_bytes',
                        '/sys/fs/cgroup/memory/memory.usage_in_bytes')):
    limit, usage = _read(limit), _read(usage)
    if limit and usage and limit.strip().isdigit() and usage.strip().isdigit():
      # cgroup v1 writes "no limit" as a number near 2**63.
      return int(limit) - int(usage) if int(limit) < 2**60 else None
  return None


def host_available():
  """(bytes this process may still allocate, what limits it), or (None, None)."""
  room = []
  meminfo = _read('/proc/meminfo') or ''
  for line in meminfo.splitlines():
    if line.startswith('MemAvailable:'):
      room.append((int(line.split()[1]) * 1024, 'MemAvailable'))
  cgroup = _cgroup_room()
  if cgroup is not None:
    room.append((cgroup, 'the cgroup memory limit'))
  limit = resource.getrlimit(resource.RLIMIT_AS)[0]
  status = _read('/proc/self/status') or ''
  size = next((int(line.split()[1]) * 1024 for line in status.splitlines()
               if line.startswith('VmSize:')), None)
  if limit != resource.RLIM_INFINITY and size is not None:
    room.append((limit - size, 'ulimit -v'))
  return min(room) if room else (None, None)


def device_available(devices):
  """(bytes free on the fullest of `devices`, what limits it), or (None, None) where
  they keep no statistics (a CPU)."""
  free = []
  for device in devices:
    stats = device.memory_stats() or {}
    if 'bytes_limit' not in stats:
      return None, None
    free.append(stats['bytes_limit'] - stats.get('bytes_in_use', 0))
  return min(free), f'{devices[0].device_kind} memory'


def size(n):
  """Bytes in words: '3.84 TB'."""
  for unit, scale in (('TB', 1e12), ('GB', 1e9), ('MB', 1e6), ('kB', 1e3)):
    if n >= scale:
      return f'{n / scale:.3g} {unit}'
  return f'{n} bytes'


def _fix(part, case):
  if part == 'state':
    return ('choose a smaller --config.model (or a smaller --config.image_shape, where a '
            'Dense layer reads the whole image)')
  extra = ', or --config.num_batches' if part == 'batch' and case.dataset == 'synthetic' else ''
  return f'lower --config.batch_size or --config.image_shape{extra}'


def check(case, mesh):
  """Raises UserError when `case` cannot fit in the memory left (module docstring):
  one line with what it needs, what is free and the field to change."""
  if case.benchmark == 'input':  # no model: the pipeline's batches alone
    need = {'state': 0, 'activation': 0, 'batch': _batch_bytes(case, mesh)}
  else:
    need = estimate(case, mesh)
  local = mesh.local_devices
  synthetic = case.dataset == 'synthetic'
  held = {'train state': len(local) * need['state'],
          'batches': len(local) * need['batch'] * (case.num_batches if synthetic else 1),
          'largest layer output': len(local) * need['activation']}
  fields = dict(zip(held, ('state', 'batch', 'activation')))
  if local[0].platform == 'cpu':
    # The devices' memory is the host's; a batch drawn in numpy may be the device
    # array itself (placing it on a CPU need not copy), so it is not counted twice.
    checks = [(held, host_available())]
  else:
    # A synthetic batch is drawn whole in every process, a pipeline's is its share.
    staged = need['batch'] * (mesh.size if synthetic else len(local))
    checks = [(held, device_available(local)), ({'batch on the host': staged}, host_available())]
  for parts, (free, where) in checks:
    total = sum(parts.values())
    if free is not None and total > free:
      largest = max(parts, key=parts.get)
      raise UserError(
          f'needs at least {size(total)} of memory but {size(max(free, 0))} '
          f'is free ({where}): ' + ', '.join(f'{k} {size(v)}' for k, v in parts.items())
          + f'; {_fix(fields.get(largest, "batch"), case)}')


def check_compiled(compiled, mesh):
  """Raises MemoryError (the case fails, the suite goes on) when running `compiled`
  needs more than the memory left: what XLA's memory analysis says a call allocates
  beside its arguments (allocated by now), its temporaries and the outputs not
  written over a donated argument, on each of this process's devices."""
  stats = compiled.memory_analysis()
  if stats is None:
    return
  local = mesh.local_devices
  temps = stats.temp_size_in_bytes
  outputs = stats.output_size_in_bytes - stats.alias_size_in_bytes
  if local[0].platform == 'cpu':  # every device's program in the host's memory
    temps, outputs = temps * len(local), outputs * len(local)
    free, where = host_available()
  else:
    free, where = device_available(local)
  if free is not None and temps + outputs > free:
    raise MemoryError(f'a step needs {size(temps + outputs)} beside its arguments (XLA memory '
                      f'analysis: temporaries {size(temps)}, outputs {size(outputs)}) but '
                      f'{size(max(free, 0))} is free ({where}); lower --config.batch_size or '
                      '--config.image_shape')
