"""Model weights on disk: the read side of training runs, and exported files.

Two places hold trained weights:
  a run's workdir    `config.json` + orbax `checkpoints/<step>/state` (written
                     by `videogen.train.checkpointing` while training);
  an export          `config.json` + `*.safetensors` whose keys are the
                     parameters' logical paths (`blocks/attention/query/kernel`),
                     readable without orbax, JAX or pickle.

Inference objects (`vq.Tokenizer`, `transformer.TextToVideo`) load through
this module, which sits below the models: it knows trees of arrays, not
which model they belong to, and never imports the training engine.
"""

from __future__ import annotations

import json
from typing import Any, Mapping

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from absl import logging
from etils import epath

from videogen import config_lib, integrity
from videogen.safetensors_io import SafetensorsFile, save_file

CONFIG_FILE = 'config.json'
STATE = 'state'


class CheckpointMismatchError(ValueError):
  """The saved weights hold a different model than the config describes."""


# --- training runs -----------------------------------------------------------


def checkpoint_dir(workdir: str | epath.Path) -> epath.Path:
  """`workdir/checkpoints`, made absolute (orbax rejects relative local paths)."""
  path = epath.Path(workdir)
  if '://' not in str(workdir):
    path = path.absolute()
  return path / 'checkpoints'


def split_path(path: str | epath.Path) -> tuple[epath.Path, int | None]:
  """(workdir, step) from a workdir or a `workdir/checkpoints/<step>` dir."""
  path = epath.Path(path)
  if path.name.isdigit() and path.parent.name == 'checkpoints':
    return path.parent.parent, int(path.name)
  if not path.exists():
    raise FileNotFoundError(f'No workdir or checkpoint at {path}')
  return path, None


def read_config(path: str | epath.Path) -> ml_collections.ConfigDict:
  """The resolved config saved with a run or an export (`path`: its directory,
  or a `workdir/checkpoints/<step>` directory)."""
  workdir, _ = split_path(path)
  config_path = workdir / CONFIG_FILE
  if not config_path.exists():
    raise FileNotFoundError(
      f'{config_path} does not exist: {workdir} is not a videogen workdir or export.'
    )
  return config_lib.config_from_json_dict(json.loads(config_path.read_text()))


def is_workdir(path: str | epath.Path) -> bool:
  """True when `path` is a training workdir (it has a `checkpoints/` directory)."""
  return checkpoint_dir(split_path(path)[0]).exists()


def latest_step(path: str | epath.Path) -> int:
  """The step to load from `path` (the named step, or the workdir's latest)."""
  workdir, step = split_path(path)
  if step is not None:
    return step
  steps = ocp.utils.checkpoint_steps(checkpoint_dir(workdir))
  if not steps:
    raise FileNotFoundError(f'No complete checkpoint under {checkpoint_dir(workdir)}')
  return max(steps)


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


def _flat_dtypes(tree: Any) -> dict[str, str]:
  leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
  return {_keystr(path): str(leaf.dtype) for path, leaf in leaves if getattr(leaf, 'dtype', None)}


def check_compatible(saved: Mapping[str, tuple[int, ...]] | Any, abstract: Any, what: str) -> None:
  """Raises CheckpointMismatchError naming the first parameter whose shape or dtype differs.

  Args:
    saved: the saved tree (orbax metadata, arrays) or a name -> shape dict.
    abstract: the tree the current config expects (ShapeDtypeStructs).
    what: where the weights came from, for the message.
  """
  saved_dtypes = {} if _is_shape_map(saved) else _flat_dtypes(saved)
  if not _is_shape_map(saved):
    saved = _flat_shapes(saved)
  expected = _flat_shapes(abstract)
  expected_dtypes = _flat_dtypes(abstract)
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
    if name in saved_dtypes and name in expected_dtypes:
      if saved_dtypes[name] != expected_dtypes[name]:
        raise CheckpointMismatchError(
          f'{what}: parameter {name!r} is {saved_dtypes[name]} in the checkpoint but '
          f'{expected_dtypes[name]} in the current config.'
        )


def _is_shape_map(tree: Any) -> bool:
  return isinstance(tree, dict) and all(
    isinstance(k, str) and isinstance(v, tuple) for k, v in tree.items()
  )


def saved_tree(item_dir: epath.Path) -> Any:
  """The metadata tree (shapes, dtypes) of a saved orbax PyTree item."""
  metadata = ocp.PyTreeCheckpointHandler().metadata(item_dir)
  return getattr(metadata, 'tree', metadata)


def restore_target(abstract: Any, shardings: Any) -> Any:
  """ShapeDtypeStructs of `abstract` that carry `shardings` (orbax restores onto them)."""
  return jax.tree.map(
    lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), abstract, shardings
  )


def _first_device_shardings(tree: Any) -> Any:
  single = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  return jax.tree.map(lambda _: single, tree)


def restore_model(
  path: str | epath.Path,
  abstract_params: Any,
  abstract_model_state: Any,
  *,
  use_ema: bool = True,
  shardings: Mapping[str, Any] | None = None,
  fallback: bool | None = None,
) -> tuple[Any, Any]:
  """Restores only a model's variables from a run's checkpoint, for inference.

  Args:
    path: a workdir (its newest step that restores) or
      `workdir/checkpoints/<step>` (that step, no fallback).
    abstract_params: the params tree (`nnx.State` of ShapeDtypeStructs).
    abstract_model_state: the non-trainable model state tree (may be empty).
    use_ema: take `ema_params` instead of `params` when the run kept an EMA.
    shardings: optional {'params': ..., 'model_state': ...} sharding trees;
      default: everything on the first local device.
    fallback: skip damaged newer steps (`integrity.newest_that_restores`;
      logged, the workdir left as it is); None = the run's `checkpoint.fallback`.

  Returns:
    (params, model_state) as concrete arrays.
  """
  _, params, model_state = restore_model_at(
    path,
    abstract_params,
    abstract_model_state,
    use_ema=use_ema,
    shardings=shardings,
    fallback=fallback,
  )
  return params, model_state


def restore_model_at(
  path: str | epath.Path,
  abstract_params: Any,
  abstract_model_state: Any,
  *,
  use_ema: bool = True,
  shardings: Mapping[str, Any] | None = None,
  fallback: bool | None = None,
) -> tuple[int, Any, Any]:
  """`restore_model`, also returning the step it restored: (step, params, model_state).

  `abstract_params=None` restores the parameters as saved (no model_state).
  """
  workdir, named_step = split_path(path)
  if named_step is not None:
    steps, fallback = [named_step], False
  else:
    steps = ocp.utils.checkpoint_steps(checkpoint_dir(workdir))
    if not steps:
      raise FileNotFoundError(f'No complete checkpoint under {checkpoint_dir(workdir)}')
    if fallback is None:
      fallback = bool(read_config(workdir).checkpoint.get('fallback', True))

  def attempt(step):
    return _restore_model_step(
      checkpoint_dir(workdir) / str(step),
      abstract_params,
      abstract_model_state,
      use_ema=use_ema,
      shardings=shardings,
    )

  step, (params, model_state), failures = integrity.newest_that_restores(
    steps, attempt, fallback=fallback, directory=checkpoint_dir(workdir)
  )
  for bad_step, reason in failures:
    logging.warning(
      'Skipped damaged checkpoint step %d (%s); left in place; loaded step %d instead.',
      bad_step,
      reason,
      step,
    )
  return step, params, model_state


def _restore_model_step(
  step_dir: epath.Path,
  abstract_params: Any,
  abstract_model_state: Any,
  *,
  use_ema: bool,
  shardings: Mapping[str, Any] | None,
) -> tuple[Any, Any]:
  integrity.verify(step_dir)
  ckpt = step_dir / STATE
  tree = saved_tree(ckpt)
  saved_keys = set(tree.keys()) if hasattr(tree, 'keys') else set()
  params_key = 'ema_params' if use_ema and _has_values(tree, 'ema_params') else 'params'
  where = f'checkpoint {step_dir}'
  if abstract_params is None:  # As saved (`read_params`).
    abstract_params = jax.tree.map(
      lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype), tree[params_key]
    )
    abstract_model_state = {}
  check_compatible(tree[params_key], abstract_params, where)
  if 'model_state' in saved_keys and abstract_model_state:
    check_compatible(tree['model_state'], abstract_model_state, where)
  shardings = shardings or {}
  target = {
    params_key: restore_target(
      abstract_params, shardings.get('params') or _first_device_shardings(abstract_params)
    ),
    'model_state': restore_target(
      abstract_model_state,
      shardings.get('model_state') or _first_device_shardings(abstract_model_state),
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


def read_params(
  path: str | epath.Path, *, use_ema: bool = True
) -> tuple[int | None, dict[str, np.ndarray]]:
  """A run's or an export's parameters as they were saved, by logical path, on the host.

  For warm starts (`config.init_from`), where the new model may differ from
  the saved one, so no abstract tree of the new model is needed.

  Args:
    path: a workdir (its newest step that restores), `workdir/checkpoints/<step>`,
      or an export directory (its one top-level `*.safetensors` file).
    use_ema: take `ema_params` when the run kept them.

  Returns:
    (the step read, None for an export; {logical/path: numpy array}).
  """
  path = epath.Path(path)
  if not path.exists():
    raise FileNotFoundError(f'No workdir, checkpoint or export at {path}')
  if is_workdir(path):
    step, params, _ = restore_model_at(path, None, None, use_ema=use_ema)
    return step, {name: np.asarray(jax.device_get(leaf)) for name, leaf in flatten(params).items()}
  files = sorted(path.glob('*.safetensors'))
  if len(files) != 1:
    raise FileNotFoundError(
      f'{path} is neither a workdir (no checkpoints/) nor an export with one *.safetensors '
      f'file ({len(files)} found).'
    )
  tensors = SafetensorsFile(files[0])
  return None, {name: np.asarray(tensors.get(name)) for name in tensors.names}


def _has_values(tree: Any, key: str) -> bool:
  if not hasattr(tree, 'keys') or key not in tree.keys():
    return False
  value = tree[key]
  return value is not None and bool(jax.tree.leaves(value))


# --- exports -----------------------------------------------------------------


def flatten(tree: Any) -> dict[str, Any]:
  """`{logical/path: leaf}` of a tree of arrays (an `nnx.State`, a dict)."""
  leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
  return {_keystr(path): leaf for path, leaf in leaves}


def save_tree(path: str | epath.Path, tree: Any, *, dtype: str | None = None) -> int:
  """Writes a tree of arrays to one `.safetensors` file; returns its size in bytes.

  Args:
    path: the file to write (local or remote).
    tree: arrays keyed by their logical paths once flattened.
    dtype: cast floating-point leaves to this dtype ('bfloat16' halves the
      file); None keeps each leaf's own dtype.
  """
  arrays = {}
  for name, leaf in flatten(tree).items():
    value = np.asarray(jax.device_get(leaf))
    if dtype is not None and np.issubdtype(value.dtype, np.floating):
      value = value.astype(jax.numpy.dtype(dtype))
    arrays[name] = value
  save_file(arrays, path, metadata={'format': 'videogen'})
  return epath.Path(path).stat().length


def load_tree(path: str | epath.Path, abstract: Any, *, shardings: Any | None = None) -> Any:
  """Reads a `save_tree` file into the structure of `abstract`.

  Args:
    path: the `.safetensors` file.
    abstract: a tree of ShapeDtypeStructs (e.g. from `nnx.eval_shape`); each
      leaf is read by its logical path and cast to its dtype.
    shardings: a matching tree of shardings; default the first local device.

  Raises:
    CheckpointMismatchError: a parameter is missing or has another shape.
  """
  tensors = SafetensorsFile(path)
  saved = {name: tensors.shape(name) for name in tensors.names}
  check_compatible(saved, abstract, str(path))
  leaves, treedef = jax.tree_util.tree_flatten_with_path(abstract)
  shardings = shardings if shardings is not None else _first_device_shardings(abstract)
  values = []
  for (key_path, leaf), sharding in zip(leaves, jax.tree.leaves(shardings), strict=True):
    value = np.asarray(tensors.get(_keystr(key_path)), dtype=leaf.dtype)
    values.append(jax.device_put(value, sharding))
  return jax.tree_util.tree_unflatten(treedef, values)
