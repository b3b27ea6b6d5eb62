"""Orbax checkpoints of a training run: train state, data iterator, metadata.

A checkpoint `workdir/checkpoints/<step>/` holds three named items:
  `state`     the TrainState pytree (PyTree format, restorable onto any mesh),
  `data`      the grain iterator state (one JSON per process),
  `metadata`  JSON: stage, step, package version, the resolved config.

After a save commits, process 0 records its files (`integrity.py`).

Resume order (`restore_latest`; inference loads go through
`videogen.weights.restore_model`, and both fall back through
`integrity.newest_that_restores`):
  1. take the latest *complete* step (orbax ignores `*.orbax-checkpoint-tmp`
     directories that a SIGKILL mid-save leaves behind);
  2. verify its files against the manifest written after its save;
  3. check the saved state's parameter shapes and dtypes against the abstract
     state of the current config (a mismatch names the first differing one);
  4. restore the state onto the current mesh through an abstract target whose
     leaves carry the current shardings (so 8 devices -> 1 device works);
  5. restore the data iterator, so the next batch is the one that would have
     come next.
A step failing 2-5 is damaged: with `checkpoint.fallback` the next older
step is tried, and once one restores, training moves the damaged newer ones
to `checkpoints/<step>.damaged` (orbax ignores the name, retention never
counts it, nothing is deleted); read-only restores (sample, eval, export)
leave the workdir as it is. If no step restores, the error lists each one
tried and why.
"""

from __future__ import annotations

import dataclasses
import json
import weakref
from typing import Any

import grain
import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from absl import logging
from etils import epath

# Not exported by orbax (pinned < 0.13 in setup.py); its default ArrayHandler uses it.
from orbax.checkpoint._src.metadata import array_metadata_store

from videogen import __version__, config_lib, integrity, weights

STATE = weights.STATE
DATA = 'data'
METADATA = 'metadata'
DAMAGED_SUFFIX = '.damaged'
# The read side (config, steps, shape checks, inference restores) lives below
# the models in `videogen.weights`; these are the names the engine uses.
CheckpointMismatchError = weights.CheckpointMismatchError
checkpoint_dir = weights.checkpoint_dir

# Orbax splits the write of a replicated array across its replicas ("replica
# parallel"), one slice per device, each an eager op: for the many small leaves
# of a train state (norms, biases, scalars) that costs more than it saves. The
# tiny tokenizer's state on 8 CPU devices saved in 8.4 s with it on every leaf;
# 400 replicated 2 KiB leaves in 3.4-4.3 s with it, 1.2 s without. Arrays whose
# slices would be >= 1 MiB still use it. The files written are the same.
MIN_SLICE_BYTES_FOR_REPLICA_PARALLEL = 2**20
# Leaves other than jax.Array keep orbax's default handlers.
_OTHER_LEAF_TYPES = (int, float, bytes, np.number, np.ndarray, str, type(ocp.PLACEHOLDER))


class CheckpointSaveError(RuntimeError):
  """A save failed with an I/O error (disk full, permissions, lost storage)."""


@dataclasses.dataclass
class _SaveLog:
  """Per manager: steps saved but not yet given a manifest; checksum policy."""

  pending: list[int] = dataclasses.field(default_factory=list)
  checksums: bool = True


_SAVE_LOGS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def make_manager(
  workdir: str | epath.Path,
  config: ml_collections.ConfigDict,
  *,
  read_only: bool = False,
) -> ocp.CheckpointManager:
  """A CheckpointManager over `workdir/checkpoints` from `config.checkpoint`."""
  options = ocp.CheckpointManagerOptions(
    max_to_keep=config.max_to_keep,
    keep_period=config.keep_period or None,
    enable_async_checkpointing=config.async_save and not read_only,
    cleanup_tmp_directories=not read_only,
    create=not read_only,
    read_only=read_only,
  )
  return ocp.CheckpointManager(
    checkpoint_dir(workdir), options=options, handler_registry=_handler_registry()
  )


def _handler_registry() -> ocp.handlers.DefaultCheckpointHandlerRegistry:
  """The three items' handlers: orbax's defaults, but the state's arrays use
  replica-parallel writes only from `MIN_SLICE_BYTES_FOR_REPLICA_PARALLEL`."""
  array = ocp.type_handlers.ArrayHandler(
    min_slice_bytes_for_replica_parallel=MIN_SLICE_BYTES_FOR_REPLICA_PARALLEL,
    # As orbax's default handler: per-array metadata (`state/array_metadatas`).
    array_metadata_store=array_metadata_store.Store(),
  )
  types = ocp.type_handlers.create_type_handler_registry(
    *((t, ocp.type_handlers.get_type_handler(t)) for t in _OTHER_LEAF_TYPES), (jax.Array, array)
  )
  state = ocp.PyTreeCheckpointHandler(type_handler_registry=types)
  registry = ocp.handlers.DefaultCheckpointHandlerRegistry()
  for item, save, restore, handler in (
    (STATE, ocp.args.PyTreeSave, ocp.args.PyTreeRestore, state),
    (DATA, grain.checkpoint.CheckpointSave, grain.checkpoint.CheckpointRestore, None),
    (METADATA, ocp.args.JsonSave, ocp.args.JsonRestore, None),
  ):
    registry.add(item, save, handler)
    registry.add(item, restore, handler)
  return registry


def _io_failure(error: BaseException) -> bool:
  """Whether `error` (or what it wraps) is an I/O failure rather than a bug."""
  seen = set()
  while error is not None and id(error) not in seen:
    seen.add(id(error))
    text = str(error)
    if isinstance(error, OSError) or 'No space left' in text or 'OS error' in text:
      return True
    error = error.__cause__ or error.__context__
  return False


def _save_failed(manager: ocp.CheckpointManager, step: int, error: Exception) -> Exception:
  if not _io_failure(error):
    return error
  kept = [s for s in manager.all_steps() if s != step]
  older = f'older checkpoints {kept} are intact' if kept else 'there is no older checkpoint'
  return CheckpointSaveError(
    f'saving step {step} to {manager.directory / str(step)} failed: {error}. The run stops; '
    f'{older}. Free space (or fix access) and re-run the same command to resume.'
  )


def record_manifests(manager: ocp.CheckpointManager) -> None:
  """Writes the manifest of every step this process saved that has committed.

  Only process 0 writes; the caller has waited for the saves to finish.
  """
  log = _SAVE_LOGS.get(manager)
  if log is None or not log.pending:
    return
  pending, log.pending = log.pending, []
  if jax.process_index() != 0:
    return
  committed = set(manager.all_steps())
  for step in pending:
    if step not in committed:
      continue
    manifest = integrity.write_manifest(manager.directory / str(step), checksums=log.checksums)
    if log.checksums and not integrity.checksums_within_budget(manifest):
      log.checksums = False
      logging.info(
        'Checkpoint checksums took %.3f s of a %.3f s save (over %d%%); later manifests '
        'record file sizes only.',
        manifest['checksum_seconds'],
        manifest['save_seconds'],
        round(100 * integrity.CHECKSUM_BUDGET),
      )


def finish(manager: ocp.CheckpointManager) -> None:
  """Waits for pending saves, records their manifests; a failed save raises."""
  pending = list(_SAVE_LOGS[manager].pending) if manager in _SAVE_LOGS else []
  try:
    manager.wait_until_finished()
  except Exception as error:  # noqa: BLE001 - classified and re-raised.
    raise _save_failed(manager, pending[-1] if pending else -1, error) from error
  record_manifests(manager)


def step_metadata(config: ml_collections.ConfigDict, step: int) -> dict[str, Any]:
  """The `metadata` item of a checkpoint: stage, step, package version, resolved config."""
  return {
    'stage': config.stage,
    'step': int(step),
    'videogen_version': __version__,
    'config': config_lib.config_to_json_dict(config),
  }


def save(
  manager: ocp.CheckpointManager,
  step: int,
  state: Any,
  data_iterator: Any,
  config: ml_collections.ConfigDict,
  *,
  force: bool = False,
) -> bool:
  """Saves `state`, the iterator and metadata at `step` (async if configured).

  The previous save is finished (and its manifest written) first. An I/O
  failure of this save or of the previous (async) one raises
  `CheckpointSaveError` naming the path.
  """
  finish(manager)
  items = {
    STATE: ocp.args.PyTreeSave(state),
    METADATA: ocp.args.JsonSave(step_metadata(config, step)),
  }
  if data_iterator is not None:
    items[DATA] = grain.checkpoint.CheckpointSave(data_iterator)
  try:
    saved = manager.save(step, args=ocp.args.Composite(**items), force=force)
  except Exception as error:  # noqa: BLE001 - classified and re-raised.
    raise _save_failed(manager, step, error) from error
  if saved:
    _SAVE_LOGS.setdefault(manager, _SaveLog()).pending.append(int(step))
    if not config.checkpoint.async_save:  # Committed already.
      record_manifests(manager)
  return saved


def restore(
  manager: ocp.CheckpointManager,
  step: int,
  abstract_state: Any,
  state_shardings: Any,
  data_iterator: Any | None,
) -> tuple[Any, dict[str, Any]]:
  """Restores one step's train state (onto `state_shardings`) and the iterator in place.

  Raises:
    integrity.CheckpointDamagedError: its files differ from its manifest.
    CheckpointMismatchError: it holds another model than `abstract_state`.

  Returns:
    The restored state and the saved metadata dict.
  """
  step_dir = manager.directory / str(step)
  integrity.verify(step_dir)
  weights.check_compatible(
    weights.saved_tree(step_dir / STATE), abstract_state, f'checkpoint {step_dir}'
  )
  target = weights.restore_target(abstract_state, state_shardings)
  items = {
    STATE: ocp.args.PyTreeRestore(
      item=target,
      restore_args=ocp.checkpoint_utils.construct_restore_args(target),
    ),
    METADATA: ocp.args.JsonRestore(),
  }
  if data_iterator is not None:
    items[DATA] = grain.checkpoint.CheckpointRestore(data_iterator)
  restored = manager.restore(step, args=ocp.args.Composite(**items))
  return restored[STATE], restored[METADATA]


@dataclasses.dataclass
class Restored:
  """What `restore_latest` found.

  Attributes:
    step: the step restored.
    state: the train state.
    metadata: the saved metadata dict.
    damaged: (step, reason, where it is now) of each newer step that failed.
  """

  step: int
  state: Any
  metadata: dict[str, Any]
  damaged: list[tuple[int, str, str]]


def _aside_name(step_dir: epath.Path) -> epath.Path:
  candidate = step_dir.parent / f'{step_dir.name}{DAMAGED_SUFFIX}'
  index = 1
  while candidate.exists():
    candidate = step_dir.parent / f'{step_dir.name}{DAMAGED_SUFFIX}.{index}'
    index += 1
  return candidate


def restore_latest(
  manager: ocp.CheckpointManager,
  abstract_state: Any,
  state_shardings: Any,
  data_iterator: Any | None,
  *,
  fallback: bool = True,
  move_aside: bool = True,
) -> Restored | None:
  """Restores the newest step that restores; None when there is no checkpoint.

  Args:
    manager: over `workdir/checkpoints`.
    abstract_state, state_shardings, data_iterator: as for `restore`.
    fallback: try older steps when the newest fails (else raise at once).
    move_aside: once a step restores, rename each newer damaged one to
      `<step>.damaged` (process 0) so that saves and retention never meet it.

  Raises:
    integrity.NoRestorableCheckpointError: no step restores (nothing is moved then).
  """
  steps = list(manager.all_steps())
  if not steps:
    return None

  def attempt(step):
    return restore(manager, step, abstract_state, state_shardings, data_iterator)

  step, (state, metadata), failures = integrity.newest_that_restores(
    steps, attempt, fallback=fallback, directory=manager.directory
  )
  damaged = []
  for bad_step, reason in failures:
    source = manager.directory / str(bad_step)
    target = _aside_name(source) if move_aside else source
    if move_aside and jax.process_index() == 0:
      source.rename(target)
    damaged.append((bad_step, reason, str(target)))
    logging.warning(
      'Skipped damaged checkpoint step %d (%s); %s; restored step %d instead.',
      bad_step,
      reason,
      f'moved to {target}' if move_aside else f'left in place at {target}',
      step,
    )
  if damaged and move_aside:
    if jax.process_count() > 1:
      from jax.experimental import multihost_utils

      multihost_utils.sync_global_devices('videogen_checkpoint_moved_aside')
    manager.reload()
  return Restored(step, state, metadata, damaged)


def write_config(workdir: str | epath.Path, config: ml_collections.ConfigDict) -> None:
  path = epath.Path(workdir)
  path.mkdir(parents=True, exist_ok=True)
  (path / weights.CONFIG_FILE).write_text(
    json.dumps(config_lib.config_to_json_dict(config), indent=2, sort_keys=True)
  )
