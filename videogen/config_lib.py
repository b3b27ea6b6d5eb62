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

ConfigDict = ml_collections.ConfigDict

# Logical axis name -> mesh axes. Modules name their axes; only this table
# says where they go. Order matters for a name listed twice: first match wins.
DEFAULT_LOGICAL_AXIS_RULES = (
  ('batch', ('data', 'fsdp')),
  ('embed', 'fsdp'),
  ('mlp', 'tensor'),
  ('heads', 'tensor'),
  ('kv_heads', 'tensor'),
  ('head_dim', None),
  ('vocab', 'tensor'),
  ('length', None),
  ('kv_length', None),
  ('text_length', None),
  ('layers', None),
  ('conv_in', None),
  ('conv_out', 'fsdp'),
  ('conv_kernel', None),
  ('codebook', None),
  ('time', None),
  ('height', None),
  ('width', None),
  ('channels', None),
)


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
  config.num_eval_batches = 4  # Batches of the eval split per evaluation.
  config.nan_policy = 'stop'  # NaN/Inf loss: 'stop' (error naming the step) or 'skip' the update.
  config.compute_dtype = 'float32'  # Activations: 'float32' or 'bfloat16' (params stay float32).
  config.peak_flops = 0.0  # Device peak FLOP/s for MFU; 0 = measure a large matmul at start.
  config.mesh = mesh_config()
  config.logical_axis_rules = [
    list(rule) for rule in DEFAULT_LOGICAL_AXIS_RULES
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


# Training schedule per model size: (steps, global batch, peak learning rate).
# Tiny tokenizer: 3000 steps take 5.7 min (344 s) on 2 CPU cores as 2 devices
# (the CLI's default split). Its peak of 3e-3 needs the tiny-size settings in
# `tokenizer_experiment`; 4e-3 and up collapse every code to one for some seeds.
TOKENIZER_SCHEDULES = {
  'tiny': (3000, 8, 3e-3),
  'small': (20000, 16, 1e-3),
  'base': (100000, 64, 1e-4),
}
# Tiny transformer: 1700 steps take ~13 min with its token cache on 2 CPU
# cores as 2 devices.
TRANSFORMER_SCHEDULES = {
  'tiny': (1700, 32, 3e-3),
  'small': (50000, 64, 3e-4),
  'base': (100000, 128, 3e-4),
  'large': (200000, 256, 2e-4),
  'xl': (300000, 512, 1.5e-4),
}


def _size_settings(config: ConfigDict, size: str, steps: int, batch: int) -> None:
  """The run settings that follow from the model size: mesh, batch, steps, cadence."""
  config.batch_size = batch
  config.num_train_steps = steps
  config.log_every_steps = 50
  config.eval_every_steps = steps // 4
  config.checkpoint_every_steps = max(steps // 10, 100)
  if size == 'tiny':
    # Replicated parameters, batch split over every device: on 2 CPU devices
    # the tiny tokenizer trains at 7.6 steps/s against 7.0 under FSDP.
    config.mesh.data, config.mesh.fsdp = -1, 1
    # A save stalls a 2-core machine for ~1.3 s; a few-minute run saves at
    # each evaluation (and on SIGTERM) rather than every tenth of the way.
    config.checkpoint_every_steps = config.eval_every_steps
  config.num_eval_batches = 4


def runlocal(config: ConfigDict) -> ConfigDict:
  """Shrinks a config to a smoke test that runs in a minute on a laptop."""
  config.batch_size = 8
  config.num_train_steps = 20
  config.log_every_steps = 5
  config.eval_every_steps = 10
  config.checkpoint_every_steps = 10
  config.num_eval_batches = 1
  return config


def tokenizer_experiment(size: str, quantizer: str, data: ConfigDict) -> ConfigDict:
  """A video-tokenizer training config over the dataset section `data`."""
  from videogen.vq import config as vq_config

  if size not in TOKENIZER_SCHEDULES:
    raise ValueError(f'Unknown size {size!r}; valid: {sorted(TOKENIZER_SCHEDULES)}')
  steps, batch, lr = TOKENIZER_SCHEDULES[size]
  config = train_config()
  config.stage = 'tokenizer'
  _size_settings(config, size, steps, batch)
  config.optimizer = optimizer_config(learning_rate=lr, warmup_steps=100)
  config.data = data
  config.model = vq_config.model_config(size, quantizer)
  config.loss = vq_config.loss_config()
  if size == 'tiny':
    # The unnormalised tiny model's gradient norm is 0.1-0.3 after warm-up;
    # clipping at 0.25 stops the loss spikes that, unclipped, collapse every
    # FSQ code to one at a 3e-3 peak. At 2500 steps, on shapes: 2e-3
    # unclipped 27.0 dB; 3e-3 clipped 27.2 dB; and decaying linearly to zero
    # instead of cosine to 0.1x, 27.5 dB.
    config.optimizer.grad_clip_norm = 0.25
    config.optimizer.warmup_steps = 200
    config.optimizer.decay = 'linear'
    config.optimizer.min_lr_ratio = 0.0
    # MAGVIT-v2's LFQ entropy loss (weight 0.1, temperature 0.01) is 5-10x the
    # tiny model's reconstruction loss on shapes, its gradient norm 3-10 against
    # that clip: 16.7 dB after 3000 steps. Temperature 1 and weight 0.01:
    # 24.9 dB, usage 58% (weight 0.03: 24.5 dB, 82%; per-token weight near 0
    # lets every latent sit at 0 and collapses the codes).
    config.model.lfq.entropy_temperature = 1.0
    config.model.lfq.entropy_weight = 0.01
  return config


def transformer_experiment(size: str, data: ConfigDict) -> ConfigDict:
  """A text-to-video transformer training config over the dataset section `data`."""
  from videogen.text import config as text_config
  from videogen.transformer import config as transformer_config

  if size not in TRANSFORMER_SCHEDULES:
    raise ValueError(f'Unknown size {size!r}; valid: {sorted(TRANSFORMER_SCHEDULES)}')
  steps, batch, lr = TRANSFORMER_SCHEDULES[size]
  config = train_config()
  config.stage = 'transformer'
  _size_settings(config, size, steps, batch)
  config.optimizer = optimizer_config(learning_rate=lr, warmup_steps=200)
  config.optimizer.b2 = 0.95
  config.optimizer.weight_decay = 0.01
  config.data = data
  config.model = transformer_config.model_config(size)
  config.sampling = transformer_config.sampling_config()
  config.text = text_config.text_config()
  config.tokenizer = transformer_config.tokenizer_config()
  return config


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
