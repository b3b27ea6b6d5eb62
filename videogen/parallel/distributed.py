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


# Most CPU devices `set_cpu_devices` picks by itself, so that the small batches
# of CPU configs (8 clips for the tiny tokenizer) still divide over them.
_MAX_AUTO_CPU_DEVICES = 8


# XLA:CPU flags for small models on few cores. The concurrency-optimised scheduler
# (on by default in jaxlib 0.10) orders a tiny model's hundreds of small ops so that
# the threads of the two devices wait on each other: without it the quickstart
# transformer trains at 3.8 steps/s against 3.4, with the same losses bit for bit.
CPU_XLA_FLAGS = ('--xla_cpu_enable_concurrency_optimized_scheduler=false',)


def set_cpu_xla_flags() -> None:
  """Adds `CPU_XLA_FLAGS` to $XLA_FLAGS (those it names already are kept as they are).

  Takes effect only before JAX's first operation creates its backends.
  """
  flags = os.environ.get('XLA_FLAGS', '')
  for flag in CPU_XLA_FLAGS:
    if flag.split('=')[0] not in flags:
      flags = f'{flags} {flag}'.strip()
  os.environ['XLA_FLAGS'] = flags


def set_cpu_devices(count: int = -1) -> int | None:
  """Splits the CPU into `count` JAX devices and sets `CPU_XLA_FLAGS`; call before any
  JAX operation.

  XLA:CPU runs one small program (a tiny model's step) on fewer threads than
  the machine has, so a mesh of one device per core keeps more cores busy:
  the quickstart's tokenizer trains at 7.6 steps/s on 2 cores as 2 devices
  (data parallel) against 5.0 as one. Accelerator backends are unaffected.

  Args:
    count: devices; -1 = one per core available to this process, rounded
      down to a power of 2, at most 8.

  Returns:
    The count set, or None when JAX_NUM_CPU_DEVICES or XLA_FLAGS' host device
    count already decide it (tests and launch scripts set those).
  """
  decided = 'JAX_NUM_CPU_DEVICES' in os.environ or 'xla_force_host_platform_device_count' in (
    os.environ.get('XLA_FLAGS', '')
  )
  set_cpu_xla_flags()
  if decided:
    return None
  if count < 1:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count()
    count = 2 ** (min(cores or 1, _MAX_AUTO_CPU_DEVICES).bit_length() - 1)
  jax.config.update('jax_num_cpu_devices', count)
  return count
