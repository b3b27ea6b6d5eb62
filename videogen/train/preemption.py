"""Preemption: SIGTERM (spot VMs, SLURM, GKE) and JAX's multi-host sync point.

On a preemption notice the loop saves a checkpoint at the current step and
exits cleanly; the same command then resumes from it. All processes must
agree on the step at which they stop, so the local signal flag is combined
across processes, together with orbax's `reached_preemption` (the JAX
coordination service's preemption sync point, active on Cloud TPU).
"""

from __future__ import annotations

import signal
import threading

import jax
import numpy as np
from absl import logging
from jax.experimental import multihost_utils


class PreemptionWatcher:
  """Records SIGTERM and answers "should we stop now?" consistently on all hosts."""

  def __init__(self, signals: tuple[int, ...] = (signal.SIGTERM,)):
    self._flag = threading.Event()
    self._previous = {}
    if threading.current_thread() is threading.main_thread():
      for sig in signals:
        self._previous[sig] = signal.signal(sig, self._handle)

  def _handle(self, signum, frame):
    del frame
    logging.warning('Received signal %d: will checkpoint and stop after this step.', signum)
    self._flag.set()

  def restore_handlers(self) -> None:
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)
    self._previous.clear()

  def should_stop(self, step: int, manager=None) -> bool:
    """True on every process once any process was told to stop.

    Args:
      step: the current step (the sync point is per step on multi-host).
      manager: an orbax CheckpointManager, for the JAX preemption sync point.
    """
    local = self._flag.is_set()
    if manager is not None and jax.process_count() > 1:
      local = local or manager.reached_preemption(step)
    if jax.process_count() == 1:
      return local
    flags = multihost_utils.process_allgather(np.asarray(local, np.int32))
    return bool(np.max(flags))
