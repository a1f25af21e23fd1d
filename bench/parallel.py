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

Multi-host: `initialize` starts `jax.distributed` from flags, environment or a
cluster jax recognises, before any other JAX call. Each process then reads its
own part of the data (input_pipeline/pipeline.py) and contributes its slice of
every global batch; collectives span processes; only process 0 writes reports
(`is_primary`), while orbax writes checkpoints with every process taking part.
"""

import os

from absl import logging
import jax
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
import numpy as np

from bench.errors import UserError

STRATEGIES = ('jit', 'pmap')
AXIS = 'data'
# Environment variables read when the flags leave a value unset.
ENV = {'coordinator_address': 'JAX_COORDINATOR_ADDRESS', 'num_processes': 'JAX_NUM_PROCESSES',
       'process_id': 'JAX_PROCESS_ID'}
# Launchers whose environment jax.distributed.initialize() reads by itself (Slurm's
# srun, Open MPI's mpirun), keyed by a variable that holds their process count.
_CLUSTERS = {'SLURM_NTASKS': 'Slurm', 'OMPI_COMM_WORLD_SIZE': 'Open MPI'}
_MODES = ('auto', 'on', 'off')


def initialize(mode='auto', coordinator_address=None, num_processes=None, process_id=None):
  """Starts jax.distributed when this is one process of several; returns whether it did.

  `mode` 'off' never starts it; 'on' always does (jax then detects what it can:
  Slurm, Open MPI, Cloud TPU, Kubernetes); 'auto' does when a coordinator address
  is given (flag or JAX_COORDINATOR_ADDRESS) or a Slurm or Open MPI launch of more
  than one process is detected. Unset values come from the ENV variables.
  Must run before anything touches a JAX device.
  """
  if mode not in _MODES:
    raise UserError(f'--distributed={mode!r} must be one of {", ".join(_MODES)}')
  given = {'coordinator_address': coordinator_address, 'num_processes': num_processes,
           'process_id': process_id}
  for key, variable in ENV.items():
    if given[key] is None and os.environ.get(variable):
      given[key] = os.environ[variable]
  try:
    for key in ('num_processes', 'process_id'):
      given[key] = None if given[key] is None else int(given[key])
  except ValueError:
    raise UserError(f'num_processes and process_id must be integers, got {given}; set them with '
                    '--num_processes/--process_id or JAX_NUM_PROCESSES/JAX_PROCESS_ID') from None
  cluster = next((name for variable, name in _CLUSTERS.items()
                  if int(os.environ.get(variable, '1') or 1) > 1), None)
  if mode == 'off' or (mode == 'auto' and not given['coordinator_address'] and not cluster):
    return False
  if given['coordinator_address'] and (given['num_processes'] is None
                                       or given['process_id'] is None) and not cluster:
    raise UserError(f'coordinator address {given["coordinator_address"]!r} needs the number of '
                    'processes and this process\'s id too: pass --num_processes=N and '
                    '--process_id=I (0 on the coordinator), or set JAX_NUM_PROCESSES and '
                    'JAX_PROCESS_ID')
  try:
    jax.distributed.initialize(**given)
  except (ValueError, RuntimeError) as e:  # nothing detected, coordinator unreachable, timeout
    first_line = (str(e).splitlines() or [type(e).__name__])[0]
    raise UserError(f'jax.distributed could not start ({first_line}); check '
                    '--coordinator_address (host:port of process 0, reachable from every '
                    'process), --num_processes and --process_id, or pass --distributed=off to '
                    'run as one process') from None
  logging.info('jax.distributed: process %d of %d (%s), %d local devices of %d',
               jax.process_index(), jax.process_count(),
               given['coordinator_address'] or cluster or 'detected', jax.local_device_count(),
               jax.device_count())
  return True


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
