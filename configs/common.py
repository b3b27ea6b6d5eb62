"""What every experiment in `configs/` shares: sizes, schedules, stage sections.

The config files (`configs/<dataset>/<stage>.py`) pick a dataset section and a
size; the sections themselves come from the packages that own them
(`videogen.config_lib` for mesh/optimizer/checkpointing, `videogen.vq.config`,
`videogen.transformer.config`, `videogen.text.config`, `videogen.data.config`).
This directory ships inside the package as `videogen.configs`, so a wheel
install has every config too (`videogen.configs.path('shapes/tokenizer.py')`).
"""

from __future__ import annotations

import importlib.resources
import pathlib

from videogen import config_lib
from videogen.text import config as text_config
from videogen.transformer import config as transformer_config
from videogen.vq import config as vq_config

ConfigDict = config_lib.ConfigDict


def path(relative: str) -> pathlib.Path:
  """The packaged config file `relative` (e.g. 'shapes/tokenizer.py')."""
  return pathlib.Path(str(importlib.resources.files('videogen.configs').joinpath(relative)))


# Training schedule per model size: (steps, global batch, peak learning rate).
# Tiny tokenizer: 3000 steps take 5.7 min (344 s) on 2 CPU cores as 2 devices
# (the CLI's default split). Its peak of 3e-3 needs the tiny-size settings in
# `tokenizer_experiment`; 4e-3 and up collapse every code to one for some seeds.
TOKENIZER_SCHEDULES = {
  'tiny': (3000, 8, 3e-3),
  'small': (20000, 16, 1e-3),
  'base': (100000, 64, 1e-4),
}
# Tiny transformer: 2000 steps take ~9 min with its token cache on 2 CPU
# cores as 2 devices (3.8 steps/s). Measured on the quickstart's held-out
# prompts: 2000 steps at batch 32 drew right squares in 47% of samples
# against 35% after 1700; the same examples as 3400 steps at batch 16 or
# 6800 at batch 8 reach a lower loss (0.73, 0.65 against 0.77) but leave
# more objects out at low sampling temperatures (colour 95%, 82%).
TRANSFORMER_SCHEDULES = {
  'tiny': (2000, 32, 3e-3),
  'small': (50000, 64, 3e-4),
  'base': (100000, 128, 3e-4),
  'large': (200000, 256, 2e-4),
  'xl': (300000, 512, 1.5e-4),
  '3b': (300000, 512, 1.5e-4),
  '8b': (300000, 512, 1e-4),
}

# Pod-scale transformers compute in bfloat16, as a TPU or GPU run of their size
# would (benchmarks/results/pod_plan.md sizes them so); parameters stay float32.
BFLOAT16_SIZES = ('3b', '8b')


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
  if size not in TOKENIZER_SCHEDULES:
    raise ValueError(f'Unknown size {size!r}; valid: {sorted(TOKENIZER_SCHEDULES)}')
  steps, batch, lr = TOKENIZER_SCHEDULES[size]
  config = config_lib.train_config()
  config.stage = 'tokenizer'
  _size_settings(config, size, steps, batch)
  config.optimizer = config_lib.optimizer_config(learning_rate=lr, warmup_steps=100)
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
  if size not in TRANSFORMER_SCHEDULES:
    raise ValueError(f'Unknown size {size!r}; valid: {sorted(TRANSFORMER_SCHEDULES)}')
  steps, batch, lr = TRANSFORMER_SCHEDULES[size]
  config = config_lib.train_config()
  config.stage = 'transformer'
  _size_settings(config, size, steps, batch)
  config.optimizer = config_lib.optimizer_config(learning_rate=lr, warmup_steps=200)
  config.optimizer.b2 = 0.95
  config.optimizer.weight_decay = 0.01
  config.data = data
  config.model = transformer_config.model_config(size)
  if size in BFLOAT16_SIZES:
    config.compute_dtype = 'bfloat16'
  config.sampling = transformer_config.sampling_config()
  config.text = text_config.text_config()
  config.tokenizer = transformer_config.tokenizer_config()
  return config
