"""Building blocks for `configs/<dataset>/<stage>.py` files.

Each experiment file defines `get_config(arg=None)`; `arg` is a comma-separated
list of `key=value` (or bare `key` for True), parsed with typed defaults the
way big_vision does. The sections shared by every stage (mesh, axis rules,
optimizer, checkpointing) live here; each package owns the section of its own
model (`videogen.vq.config`, `videogen.transformer.config`,
`videogen.text.config`, `videogen.data.config`).
"""

from __future__ import annotations

from typing import Any

import ml_collections

from videogen.parallel import sharding

ConfigDict = ml_collections.ConfigDict


def parse_arg(arg: str | None, **defaults: Any) -> ConfigDict:
  """Parses `get_config`'s argument into a ConfigDict with typed defaults.

  `parse_arg('size=tiny,runlocal', size='small', runlocal=False)` gives
  `{size: 'tiny', runlocal: True}`. A key not in `defaults` is an error that
  names it and the valid keys.

  Args:
    arg: the part of `--config=file.py:ARG` after the colon, or None.
    **defaults: every accepted key with its default (its type is the type).

  Returns:
    A locked ConfigDict.
  """
  parsed = ConfigDict(dict(defaults))
  if arg:
    for item in arg.split(','):
      item = item.strip()
      if not item:
        continue
      key, _, value = item.partition('=')
      if key not in defaults:
        raise ValueError(f'Unknown config argument {key!r}; valid arguments: {sorted(defaults)}')
      default = defaults[key]
      if not _:  # Bare `key` means True.
        parsed[key] = True
      elif isinstance(default, bool):
        parsed[key] = value.lower() in ('1', 'true', 'yes', 'y')
      elif default is None:
        parsed[key] = value
      else:
        parsed[key] = type(default)(value)
  parsed.lock()
  return parsed


def mesh_config() -> ConfigDict:
  """Device mesh: ICI axis sizes, and DCN (across slices) sizes for multi-slice."""
  mesh = ConfigDict()
  mesh.data = 1  # Data-parallel axis size; -1 = all devices left over.
  mesh.fsdp = -1  # Fully-sharded data-parallel axis size; -1 = all devices left over.
  mesh.tensor = 1  # Tensor (model) parallel axis size; -1 = all devices left over.
  mesh.dcn_data = 1  # Data-parallel size across slices (multi-slice TPU); 1 = one slice.
  mesh.dcn_fsdp = 1  # FSDP size across slices; 1 = one slice.
  mesh.dcn_tensor = 1  # Tensor-parallel size across slices (rarely useful); 1 = one slice.
  return mesh


def optimizer_config(learning_rate: float = 1e-3, warmup_steps: int = 100) -> ConfigDict:
  """AdamW with linear warmup and cosine decay, from optax."""
  opt = ConfigDict()
  opt.name = 'adamw'  # 'adamw' or 'adafactor'.
  opt.learning_rate = learning_rate  # Peak learning rate after warmup.
  opt.warmup_steps = warmup_steps  # Linear warmup steps from 0 to the peak.
  opt.decay = 'cosine'  # 'cosine', 'linear' or 'constant' after warmup.
  opt.min_lr_ratio = 0.1  # Final learning rate as a fraction of the peak.
  opt.b1 = 0.9  # Adam beta1.
  opt.b2 = 0.99  # Adam beta2.
  opt.eps = 1e-8  # Adam epsilon.
  opt.weight_decay = 0.0  # Decoupled weight decay (applied to matrices only).
  opt.grad_clip_norm = 1.0  # Clip gradients to this global norm; 0 disables.
  opt.ema_decay = 0.0  # Parameter EMA for eval/sampling (decay warms up, see optim); 0 = off.
  return opt


def checkpoint_config() -> ConfigDict:
  """Orbax checkpoint manager settings."""
  ckpt = ConfigDict()
  ckpt.max_to_keep = 3  # Keep the last K checkpoints.
  ckpt.keep_period = 0  # Also keep every checkpoint whose step is a multiple of M; 0 = none.
  ckpt.async_save = True  # Save in a background thread while training goes on.
  ckpt.fallback = True  # A damaged newest checkpoint: restore the newest older one that works.
  return ckpt


def train_config(*, seed: int = 0) -> ConfigDict:
  """The keys every training config has (Flax-examples names)."""
  config = ConfigDict()
  config.stage = ''  # 'tokenizer' or 'transformer': which task trains.
  config.seed = seed  # Seeds parameters, data order and dropout.
  config.batch_size = 16  # Global batch size across all devices and hosts.
  config.num_train_steps = 1000  # Total optimizer steps.
  config.log_every_steps = 50  # Write train metrics every N steps.
  config.eval_every_steps = 500  # Evaluate (and write samples) every N steps; 0 = only at the end.
  config.checkpoint_every_steps = 500  # Save a checkpoint every N steps (and always at the end).
  config.num_eval_batches = 4  # Eval batches per evaluation; -1 = the whole split, each clip once.
  config.nan_policy = 'stop'  # NaN/Inf loss: 'stop' (error naming the step) or 'skip' the update.
  config.compute_dtype = 'float32'  # Activations: 'float32' or 'bfloat16' (params stay float32).
  config.peak_flops = 0.0  # Device peak FLOP/s for MFU; 0 = measure a large matmul at start.
  config.compiled_train_step = ''  # `videogen compile --out FILE`: run it, not compile; '' = off.
  config.init_from = ''  # Step 0 from another run's weights (workdir, its checkpoints/<step>, or export); grown embedding rows keep their init; a resumed run ignores it.
  config.mesh = mesh_config()
  config.logical_axis_rules = [
    list(rule) for rule in sharding.DEFAULT_LOGICAL_AXIS_RULES
  ]  # Logical axis -> mesh axes.
  config.optimizer = optimizer_config()
  config.checkpoint = checkpoint_config()
  return config


def lock(config: ConfigDict) -> ConfigDict:
  """Locks `config` so that a misspelt key is an error, not a silent no-op."""
  config.lock()
  return config


def config_to_json_dict(config: ConfigDict) -> dict[str, Any]:
  """A JSON-friendly dict of `config` (tuples become lists)."""
  return config.to_dict()


def config_from_json_dict(values: dict[str, Any]) -> ConfigDict:
  """Rebuilds a locked ConfigDict from `config_to_json_dict` output."""
  config = ConfigDict(values)
  config.lock()
  return config


def load_config_file(path_and_arg: str) -> ConfigDict:
  """Loads `path.py[:arg]` the way `--config` does (calls `get_config(arg)`)."""
  import importlib.util
  import pathlib

  path, _, arg = path_and_arg.partition(':')
  spec = importlib.util.spec_from_file_location(pathlib.Path(path).stem, path)
  if spec is None or spec.loader is None:
    raise FileNotFoundError(f'Cannot load config file {path}')
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg or None)


def describe_missing_key(config: ConfigDict, dotted_key: str) -> str | None:
  """Explains why `dotted_key` is not in `config`, naming the valid keys.

  Returns:
    None when the key exists; otherwise a message naming the first missing
    part of the key and the keys that are valid at that level.
  """
  node = config
  walked = ['config']
  for part in dotted_key.split('.'):
    if not isinstance(node, ConfigDict):
      return f'config key {".".join(walked)} is a value, not a section; it has no {part!r}.'
    if part not in node:
      where = '.'.join(walked)
      valid = ', '.join(sorted(node.keys()))
      return f'Unknown config key {where}.{part}; valid keys of {where}: {valid}'
    node = node[part]
    walked.append(part)
  return None


def apply_overrides(config: ConfigDict, overrides: dict[str, Any]) -> ConfigDict:
  """Sets dotted keys (`{'model.channels': 8}`) on `config`; unknown keys raise."""
  with config.unlocked():
    for key, value in overrides.items():
      problem = describe_missing_key(config, key)
      if problem:
        raise KeyError(problem)
      node = config
      *parents, leaf = key.split('.')
      for parent in parents:
        node = node[parent]
      node[leaf] = value
  return config
