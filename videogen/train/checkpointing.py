"""Orbax checkpoints of a training run: train state, data iterator, metadata.

A checkpoint `workdir/checkpoints/<step>/` holds three named items:
  `state`     the TrainState pytree (PyTree format, restorable onto any mesh),
  `data`      the grain iterator state (one JSON per process),
  `metadata`  JSON: stage, step, package version, the resolved config.

Resume order (the loop follows it, and nothing else restores):
  1. find the latest *complete* step (orbax ignores `*.orbax-checkpoint-tmp`
     directories that a SIGKILL mid-save leaves behind);
  2. check the saved state's parameter shapes against the abstract state of
     the current config (a mismatch names the first differing parameter);
  3. restore the state onto the current mesh through an abstract target whose
     leaves carry the current shardings (so 8 devices -> 1 device works);
  4. restore the data iterator, so the next batch is the one that would have
     come next.
"""

from __future__ import annotations

import json
from typing import Any, Mapping

import grain
import jax
import ml_collections
import orbax.checkpoint as ocp
from etils import epath

from videogen import __version__, config_lib

STATE = 'state'
DATA = 'data'
METADATA = 'metadata'
CONFIG_FILE = 'config.json'


class CheckpointMismatchError(ValueError):
  """The checkpoint holds a different model than the config describes."""


def checkpoint_dir(workdir: str | epath.Path) -> epath.Path:
  """`workdir/checkpoints`, made absolute (orbax rejects relative local paths)."""
  path = epath.Path(workdir)
  if '://' not in str(workdir):
    path = path.absolute()
  return path / 'checkpoints'


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
    checkpoint_dir(workdir), item_names=(STATE, DATA, METADATA), options=options
  )


def save(
  manager: ocp.CheckpointManager,
  step: int,
  state: Any,
  data_iterator: Any,
  config: ml_collections.ConfigDict,
  *,
  force: bool = False,
) -> bool:
  """Saves `state`, the iterator and metadata at `step` (async if configured)."""
  metadata = {
    'stage': config.stage,
    'step': int(step),
    'videogen_version': __version__,
    'config': config_lib.config_to_json_dict(config),
  }
  items = {
    STATE: ocp.args.PyTreeSave(state),
    METADATA: ocp.args.JsonSave(metadata),
  }
  if data_iterator is not None:
    items[DATA] = grain.checkpoint.CheckpointSave(data_iterator)
  return manager.save(step, args=ocp.args.Composite(**items), force=force)


def _keystr(path) -> str:
  parts = []
  for key in path:
    name = getattr(key, 'key', None)
    if name is None:
      name = getattr(key, 'name', None)
    if name is None:
      name = getattr(key, 'idx', key)
    parts.append(str(name))
  return '/'.join(p for p in parts if p not in ('value', 'raw_value'))


def _flat_shapes(tree: Any) -> dict[str, tuple[int, ...]]:
  leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
  return {_keystr(path): tuple(getattr(leaf, 'shape', ())) for path, leaf in leaves}


def check_compatible(saved_metadata: Any, abstract: Any, what: str) -> None:
  """Raises CheckpointMismatchError naming the first parameter that differs.

  Args:
    saved_metadata: orbax's metadata tree of the saved item.
    abstract: the tree the current config expects (ShapeDtypeStructs).
    what: where the checkpoint came from, for the message.
  """
  saved = _flat_shapes(saved_metadata)
  expected = _flat_shapes(abstract)
  for name, shape in expected.items():
    if name not in saved:
      raise CheckpointMismatchError(
        f'{what} has no parameter {name!r} (expected shape {shape}); it was '
        'written by a different model or stage.'
      )
    if saved[name] != shape:
      raise CheckpointMismatchError(
        f'{what}: parameter {name!r} has shape {saved[name]} in the checkpoint '
        f'but {shape} in the current config.'
      )


def _saved_tree(item_dir: epath.Path) -> Any:
  """The metadata tree (shapes, dtypes) of a saved PyTree item."""
  metadata = ocp.PyTreeCheckpointHandler().metadata(item_dir)
  return getattr(metadata, 'tree', metadata)


def _restore_target(abstract: Any, shardings: Any) -> Any:
  return jax.tree.map(
    lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), abstract, shardings
  )


def restore(
  manager: ocp.CheckpointManager,
  step: int,
  abstract_state: Any,
  state_shardings: Any,
  data_iterator: Any | None,
) -> tuple[Any, dict[str, Any]]:
  """Restores the train state (onto `state_shardings`) and the iterator in place.

  Returns:
    The restored state and the saved metadata dict.
  """
  where = f'checkpoint {manager.directory / str(step)}'
  check_compatible(_saved_tree(manager.directory / str(step) / STATE), abstract_state, where)
  target = _restore_target(abstract_state, state_shardings)
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


def write_config(workdir: str | epath.Path, config: ml_collections.ConfigDict) -> None:
  path = epath.Path(workdir)
  path.mkdir(parents=True, exist_ok=True)
  (path / CONFIG_FILE).write_text(
    json.dumps(config_lib.config_to_json_dict(config), indent=2, sort_keys=True)
  )


def _split_path(path: str | epath.Path) -> tuple[epath.Path, int | None]:
  """(workdir, step) from a workdir or a `workdir/checkpoints/<step>` dir."""
  path = epath.Path(path)
  if path.name.isdigit() and path.parent.name == 'checkpoints':
    return path.parent.parent, int(path.name)
  if not path.exists():
    raise FileNotFoundError(f'No workdir or checkpoint at {path}')
  return path, None


def read_config(path: str | epath.Path) -> ml_collections.ConfigDict:
  """The resolved config saved with a run (`path`: workdir or checkpoint dir)."""
  workdir, _ = _split_path(path)
  config_path = workdir / CONFIG_FILE
  if not config_path.exists():
    raise FileNotFoundError(f'{config_path} does not exist: {workdir} is not a videogen workdir.')
  return config_lib.config_from_json_dict(json.loads(config_path.read_text()))


def latest_step(path: str | epath.Path) -> int:
  """The step to load from `path` (the named step, or the workdir's latest)."""
  workdir, step = _split_path(path)
  if step is not None:
    return step
  steps = ocp.utils.checkpoint_steps(checkpoint_dir(workdir))
  if not steps:
    raise FileNotFoundError(f'No complete checkpoint under {checkpoint_dir(workdir)}')
  return max(steps)


def restore_model(
  path: str | epath.Path,
  abstract_params: Any,
  abstract_model_state: Any,
  *,
  use_ema: bool = True,
  shardings: Mapping[str, Any] | None = None,
) -> tuple[Any, Any]:
  """Restores only a model's variables from a run, for inference.

  Args:
    path: a workdir (latest step) or `workdir/checkpoints/<step>`.
    abstract_params: the params tree (`nnx.State` of ShapeDtypeStructs).
    abstract_model_state: the non-trainable model state tree (may be empty).
    use_ema: take `ema_params` instead of `params` when the run kept an EMA.
    shardings: optional {'params': ..., 'model_state': ...} sharding trees;
      default: everything on the first local device.

  Returns:
    (params, model_state) as concrete arrays.
  """
  workdir, _ = _split_path(path)
  step = latest_step(path)
  ckpt = checkpoint_dir(workdir) / str(step) / STATE
  saved_tree = _saved_tree(ckpt)
  saved_keys = set(saved_tree.keys()) if hasattr(saved_tree, 'keys') else set()
  params_key = 'ema_params' if use_ema and _has_values(saved_tree, 'ema_params') else 'params'
  where = f'checkpoint {ckpt.parent}'
  check_compatible(saved_tree[params_key], abstract_params, where)
  if 'model_state' in saved_keys:
    check_compatible(saved_tree['model_state'], abstract_model_state, where)
  device = jax.local_devices()[0]
  single = jax.sharding.SingleDeviceSharding(device)
  shardings = shardings or {}
  target = {
    params_key: _restore_target(
      abstract_params,
      shardings.get('params') or jax.tree.map(lambda _: single, abstract_params),
    ),
    'model_state': _restore_target(
      abstract_model_state,
      shardings.get('model_state') or jax.tree.map(lambda _: single, abstract_model_state),
    ),
  }
  with ocp.Checkpointer(ocp.PyTreeCheckpointHandler()) as checkpointer:
    restored = checkpointer.restore(
      ckpt,
      args=ocp.args.PyTreeRestore(
        item=target,
        restore_args=ocp.checkpoint_utils.construct_restore_args(target),
        partial_restore=True,
      ),
    )
  return restored[params_key], restored['model_state']


def _has_values(saved_tree: Any, key: str) -> bool:
  if not hasattr(saved_tree, 'keys') or key not in saved_tree.keys():
    return False
  value = saved_tree[key]
  return value is not None and bool(jax.tree.leaves(value))
