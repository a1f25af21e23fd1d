"""Data parallelism: the devices and processes a case runs on, and its two strategies.

Every case is data-parallel over a 1-D mesh of devices whose one axis, `data`,
splits the global batch (`batch_size`); parameters, optimizer state and
BatchNorm statistics are replicated. `num_devices` picks how many devices (the
first ones of each process, the same number in every process; 0 = all), which
is how a scaling study runs one case on 1, 2, 4, ... devices.

Two strategies (config `parallel`) compute the same step:

- `jit` (default): the step is written for the global batch and compiled once
  with `jax.jit`; the batch arrives sharded on `data` and XLA's partitioner adds
  the collectives (gradient all-reduce; BatchNorm moments over the global batch).
- `pmap`: the classic form. The step is written per device (`axis_name` =
  `data`), batches carry a leading device axis ([devices, per-device batch, ...]),
  and the step itself averages gradients and metrics with `lax.pmean`; BatchNorm
  layers average their batch moments over the axis (models/layers.py
  `cross_device_batch_norm`). The state is passed unmapped (`in_axes=None`,
  `out_axes=None`): every device holds the same replicated arrays as under jit, so
  checkpoints, evaluation and exports read it the same way.

Multi-host: bench/core/distributed.py starts `jax.distributed` before any other JAX
call. Each process then reads its own part of the data
(input_pipeline/pipeline.py) and contributes its slice of every global batch;
collectives span processes; only process 0 writes reports (`is_primary`), while
orbax writes checkpoints with every process taking part.
"""

import jax
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
import numpy as np

STRATEGIES = ('jit', 'pmap')
AXIS = 'data'


def is_primary():
  """Whether this process writes the run's files (reports, metrics, plots)."""
  return jax.process_index() == 0


def barrier(name):
  """Waits until every process reaches `name` (nothing to wait for in one process)."""
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices(name)


def device_count(num_devices):
  """How many devices a case with `num_devices` (0 = all) runs on."""
  return num_devices or jax.device_count()


def mesh(num_devices=0):
  """The `data` mesh of `num_devices` devices (0 = all): the first num_devices /
  process_count of every process, so each process feeds the same share."""
  devices = jax.devices()
  if num_devices and num_devices != len(devices):
    per_process = num_devices // jax.process_count()
    devices = [d for p in range(jax.process_count())
               for d in [d for d in devices if d.process_index == p][:per_process]]
  return Mesh(np.array(devices), (AXIS,))


def check(num_devices, batch_size):
  """The problem with running a global `batch_size` on `num_devices` devices, or None."""
  available, processes = jax.device_count(), jax.process_count()
  if num_devices > available:
    return (f'num_devices {num_devices} is more than the {available} devices there are; use 0 '
            f'(all) or at most {available}')
  if num_devices % processes:
    return (f'num_devices {num_devices} cannot be shared evenly by the {processes} processes; '
            f'use a multiple of {processes}')
  devices = device_count(num_devices)
  if batch_size % devices:
    return (f'batch_size {batch_size} is not divisible by the {devices} devices it is split '
            f'over; use a multiple of {devices}, e.g. {devices * max(1, batch_size // devices)}')
  return None


def batch_sharding(mesh_):
  """Batches: the leading axis split over the mesh's devices."""
  return NamedSharding(mesh_, P(AXIS))


def replicated(mesh_):
  """State: every device holds all of it."""
  return NamedSharding(mesh_, P())


def axis_name(case):
  """The axis a case's step averages over itself: pmap's, or None under jit."""
  return AXIS if case.parallel == 'pmap' else None


def layout(case, devices, x):
  """`x`, the batch rows that `devices` devices hold ([examples, ...]: a host array of
  this process's share, or a traced global batch), in the case's layout:
  [devices, examples / devices, ...] under pmap, unchanged under jit."""
  if not axis_name(case):
    return x
  return x.reshape(devices, x.shape[0] // devices, *x.shape[1:])


def function(case, mesh_, fn, donate, out_axes=None):
  """`fn(state, batch)` ready to lower and compile with the case's strategy: jit, or
  pmap over the mesh's devices with the state unmapped and the outputs unmapped
  where `out_axes` is None (they must be averaged over the axis) or mapped (0)."""
  donate_argnums = (0,) if donate else ()
  if case.parallel == 'pmap':
    return jax.pmap(fn, axis_name=AXIS, in_axes=(None, 0), out_axes=out_axes,
                    devices=list(mesh_.devices.flat), donate_argnums=donate_argnums)
  return jax.jit(fn, donate_argnums=donate_argnums)
