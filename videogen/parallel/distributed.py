"""Multi-host initialisation: explicit flags, or auto-detected on TPU VMs and SLURM."""

from __future__ import annotations

import os

import jax
from absl import logging


def _auto_detectable() -> str | None:
  """Names the cluster environment jax.distributed can configure itself from."""
  if int(os.environ.get('SLURM_NTASKS', '1')) > 1 and 'SLURM_JOB_ID' in os.environ:
    return 'SLURM'
  if os.environ.get('TPU_WORKER_HOSTNAMES', '').count(',') >= 1:
    return 'Cloud TPU'
  if os.environ.get('MEGASCALE_COORDINATOR_ADDRESS') or os.environ.get('JOBSET_NAME'):
    return 'GKE'
  return None


def initialize(
  coordinator_address: str | None = None,
  num_processes: int | None = None,
  process_id: int | None = None,
) -> None:
  """Starts jax.distributed when this is one process of a multi-process job.

  Args:
    coordinator_address: HOST:PORT of process 0; with `num_processes` and
      `process_id`, for clusters JAX cannot detect (or local tests).
    num_processes: total number of processes.
    process_id: this process's index.

  Without flags, initialises from the environment on SLURM, Cloud TPU and GKE
  (JobSet) multi-host jobs, and does nothing on a single machine.
  """
  if jax.distributed.is_initialized():
    return
  if coordinator_address:
    if num_processes is None or process_id is None:
      raise ValueError('--coordinator_address needs --num_processes and --process_id as well.')
    jax.distributed.initialize(coordinator_address, num_processes, process_id)
  else:
    environment = _auto_detectable()
    if environment is None:
      return
    logging.info('Initialising jax.distributed from the %s environment.', environment)
    jax.distributed.initialize()
  logging.info(
    'Process %d of %d; %d local devices, %d in all.',
    jax.process_index(),
    jax.process_count(),
    jax.local_device_count(),
    jax.device_count(),
  )
