"""Starts jax.distributed for a run of several processes (hosts or GPUs).

Apart from bench/core/parallel.py, and importing jax only when it starts it, so that
the command line's flags, their help and a config mistake answer without the
second or two that importing jax costs.
"""

import os

from absl import logging

from bench.core.errors import UserError, first_line

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
  import jax  # pylint: disable=import-outside-toplevel  (see the module docstring)
  try:
    jax.distributed.initialize(**given)
  except (ValueError, RuntimeError) as e:  # nothing detected, coordinator unreachable, timeout
    raise UserError(f'jax.distributed could not start ({first_line(e)}); check '
                    '--coordinator_address (host:port of process 0, reachable from every '
                    'process), --num_processes and --process_id, or pass --distributed=off to '
                    'run as one process') from None
  logging.info('jax.distributed: process %d of %d (%s), %d local devices of %d',
               jax.process_index(), jax.process_count(),
               given['coordinator_address'] or cluster or 'detected', jax.local_device_count(),
               jax.device_count())
  return True
