"""A train step compiled ahead of time: written by `videogen compile --out FILE`,
loaded by `videogen train --config.compiled_train_step=FILE` instead of compiling.

FILE holds JAX's serialized executable (`jax.experimental.serialize_executable`;
JAX's own format pickles the executable and its argument descriptions, so load
only files you made). `FILE.json`, written by videogen as plain JSON, says what
it was compiled for: JAX and jaxlib versions, platform, device kind and count,
slices, mesh, the config's fingerprint (fields that enter the step) and the
train step's arguments (path, dtype, shape). The pytree structures JAX needs
to call the executable are rebuilt from the run's own state and batch, as
MaxText's `compiled_trainstep_file` does.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
from typing import Any, Callable

import jax
import jaxlib
import ml_collections
from etils import epath

from videogen import config_lib

FORMAT = 1
SIDECAR_SUFFIX = '.json'

# Config fields that never enter the compiled train step (logging, evaluation,
# checkpointing, sampling, where data and frozen weights are read from): they
# may differ between `videogen compile` and `videogen train`. The frozen
# weights' shapes are checked with the step's arguments.
NOT_IN_STEP = (
  'compiled_train_step',
  'init_from',
  'log_every_steps',
  'eval_every_steps',
  'checkpoint_every_steps',
  'num_eval_batches',
  'peak_flops',
  'checkpoint',
  'sampling',
  'data.data_dir',
  'data.source_dir',
  'tokenizer.checkpoint',
  'text.path',
)


class CompiledStepMismatchError(ValueError):
  """The saved train step was compiled for another run (versions, devices, config)."""


def step_config(config: ml_collections.ConfigDict) -> dict[str, Any]:
  """The config's fields that enter the train step, as a JSON-friendly dict."""
  values = copy.deepcopy(config_lib.config_to_json_dict(config))
  for dotted in NOT_IN_STEP:
    *parents, leaf = dotted.split('.')
    section = values
    for parent in parents:
      section = section.get(parent) if isinstance(section, dict) else None
    if isinstance(section, dict):
      section.pop(leaf, None)
  return json.loads(json.dumps(values, sort_keys=True))  # Tuples -> lists, as in the file.


def _digest(values: Any) -> str:
  return hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()[:16]


def arguments(args: Any) -> list[str]:
  """`path dtype[shape]` of every array of the step's arguments `(state, batch, rng)`."""
  leaves = jax.tree_util.tree_flatten_with_path(args)[0]
  return [f'{jax.tree_util.keystr(path)} {leaf.dtype}{list(leaf.shape)}' for path, leaf in leaves]


def _target(mesh: jax.sharding.Mesh) -> dict[str, Any]:
  devices = list(mesh.devices.flat)
  return {
    'jax': jax.__version__,
    'jaxlib': jaxlib.__version__,
    'platform': devices[0].platform,
    'device_kind': devices[0].device_kind,
    'num_devices': len(devices),
    'num_slices': len({getattr(d, 'slice_index', 0) for d in devices}),
    'mesh': {name: int(size) for name, size in mesh.shape.items()},
  }


def save(
  compiled: jax.stages.Compiled,
  path: str,
  *,
  config: ml_collections.ConfigDict,
  mesh: jax.sharding.Mesh,
  args: Any,
  topology: str,
) -> str:
  """Writes the compiled train step to `path` and what it was compiled for to `path.json`.

  Args:
    compiled: `jit_train_step(...).lower(state, batch, rng).compile()`.
    path: the executable's file (local or `gs://`).
    config: the config it was compiled from.
    mesh: the mesh it was compiled for.
    args: the abstract `(state, batch, rng)` it was compiled for.
    topology: what `videogen compile --topology` named ('v5p-128', 'cpu').

  Returns:
    A line saying what was written.
  """
  from jax.experimental import serialize_executable  # noqa: PLC0415

  data, _, _ = serialize_executable.serialize(compiled)
  values = step_config(config)
  record = {
    'format': FORMAT,
    'topology': topology,
    **_target(mesh),
    'config_fingerprint': _digest(values),
    'config': values,
    'arguments': arguments(args),
    'executable_sha256': hashlib.sha256(data).hexdigest(),
  }
  epath.Path(path).write_bytes(data)
  epath.Path(path + SIDECAR_SUFFIX).write_text(json.dumps(record, indent=1) + '\n')
  return (
    f'Wrote the serialized train step ({len(data) / 2**20:.1f} MiB) to {path} and what it was '
    f'compiled for to {path}{SIDECAR_SUFFIX}.'
  )


def _config_difference(saved: dict[str, Any], current: dict[str, Any], prefix: str = '') -> str:
  """The first field (dotted) whose value differs, with both values."""
  for key in sorted(set(saved) | set(current)):
    name = f'{prefix}{key}'
    if key not in saved or key not in current:
      return f'config.{name} is {"only in this run" if key in current else "not in this run"}'
    old, new = saved[key], current[key]
    if isinstance(old, dict) and isinstance(new, dict):
      found = _config_difference(old, new, f'{name}.')
      if found:
        return found
    elif old != new:
      return f'config.{name} was {old!r} there, {new!r} here'
  return ''


@dataclasses.dataclass
class CompiledStep:
  """A saved train step whose versions, devices and config match this run.

  Attributes:
    path: the executable's file.
    record: its `path.json`.
  """

  path: str
  record: dict[str, Any]

  def mismatch(self, what: str) -> CompiledStepMismatchError:
    """The one-line error saying `what` differs and how to fix it."""
    return CompiledStepMismatchError(
      f'config.compiled_train_step {self.path} was compiled for another run: {what}; recompile '
      f'it with `videogen compile --topology {self.record.get("topology", "...")} --out FILE` '
      'from this config, or set --config.compiled_train_step= to compile here.'
    )

  def bind(
    self, loop_step: Callable[..., Any], state: Any, batch: Any, rng: jax.Array
  ) -> jax.stages.Compiled:
    """Loads the executable for the step's arguments, without compiling it.

    Args:
      loop_step: the un-jitted train step `(state, batch, rng) -> (state, metrics)`,
        traced (not compiled) for its output structure.
      state, batch, rng: the first step's arguments.

    Raises:
      CompiledStepMismatchError: the arguments differ from the compiled ones.
    """
    from jax.experimental import serialize_executable  # noqa: PLC0415

    args = (state, batch, rng)
    current, saved = arguments(args), self.record['arguments']
    if current != saved:
      if len(current) != len(saved):
        what = f'{len(saved)} arrays in the step arguments there, {len(current)} here'
      else:
        index = next(i for i, (a, b) in enumerate(zip(saved, current, strict=True)) if a != b)
        what = f'step argument {saved[index]} there, {current[index]} here'
      raise self.mismatch(what)
    data = epath.Path(self.path).read_bytes()
    if hashlib.sha256(data).hexdigest() != self.record['executable_sha256']:
      raise self.mismatch(
        f'{self.path} is not the executable {self.path}{SIDECAR_SUFFIX} describes'
      )
    in_tree = jax.tree.structure((args, {}))
    out_tree = jax.tree.structure(jax.eval_shape(loop_step, *args))
    return serialize_executable.deserialize_and_load(data, in_tree, out_tree)


def load(path: str, config: ml_collections.ConfigDict, mesh: jax.sharding.Mesh) -> CompiledStep:
  """Reads `path.json` and checks it against this run before anything is built.

  Raises:
    CompiledStepMismatchError: a missing file, or the first of JAX or jaxlib
      version, platform, device kind, device count, slices, mesh and config
      that differs, named in one line.
  """
  sidecar = epath.Path(path + SIDECAR_SUFFIX)
  for file in (epath.Path(path), sidecar):
    if not file.exists():
      raise CompiledStepMismatchError(
        f'config.compiled_train_step: {file} does not exist; write it with `videogen compile '
        '--config ... --topology ... --out FILE`.'
      )
  record = json.loads(sidecar.read_text())
  step = CompiledStep(path, record)
  if record.get('format') != FORMAT:
    raise step.mismatch(f'file format {record.get("format")}, this videogen reads {FORMAT}')
  for key, value in _target(mesh).items():
    if record.get(key) != value:
      raise step.mismatch(f'{key} {record.get(key)} there, {value} here')
  values = step_config(config)
  if record['config_fingerprint'] != _digest(values):
    raise step.mismatch(_config_difference(record['config'], values) or 'the config differs')
  return step
