"""Config sections of the autoregressive video transformer: model and sampling.

`model_config(variant)` sizes come from a variant table, the way big_vision's
`decode_variant` does; experiment files put the result under `config.model`
and `sampling_config()` under `config.sampling`.
"""

from __future__ import annotations

import dataclasses

import ml_collections


@dataclasses.dataclass(frozen=True)
class Variant:
  """Sizes of one model variant."""

  num_layers: int
  embed_dim: int
  num_heads: int
  num_kv_heads: int
  mlp_dim: int


# Parameters with a 4096-code vocabulary and 64-d text: tiny 0.7M, small 38M, base 120M,
# large 367M, xl 1.45B; 3b and 8b (VideoPoet's sizes) are for TPU pods (`videogen compile`).
# base and up use heads of 128: a TPU lays the last dimension of an array over 128 lanes, so
# heads of 64 pad every per-head activation 2x in HBM (`videogen compile`, 17x128x128: base on
# v5p-128 est. MFU 21% -> 28%, large on v5e-64 22% -> 31%; the same parameters).
# fmt: off
VARIANTS: dict[str, Variant] = {
  'tiny': Variant(num_layers=2, embed_dim=64, num_heads=4, num_kv_heads=2, mlp_dim=192),
  'small': Variant(num_layers=8, embed_dim=512, num_heads=8, num_kv_heads=8, mlp_dim=1408),
  'base': Variant(num_layers=12, embed_dim=768, num_heads=6, num_kv_heads=6, mlp_dim=2048),
  'large': Variant(num_layers=24, embed_dim=1024, num_heads=8, num_kv_heads=4, mlp_dim=2816),
  'xl': Variant(num_layers=24, embed_dim=2048, num_heads=16, num_kv_heads=8, mlp_dim=5632),
  '3b': Variant(num_layers=24, embed_dim=3072, num_heads=24, num_kv_heads=8, mlp_dim=8192),
  '8b': Variant(num_layers=32, embed_dim=4096, num_heads=32, num_kv_heads=8, mlp_dim=14336),
}
# fmt: on

# benchmarks/results/pod_plan.md: 8b fits v5p-128 only with full remat (10.8 of 95 GiB/chip; 164.9 without), 3b without took 86.8.
FULL_REMAT_VARIANTS = ('3b', '8b')
# Unrolled by default: without remat a scanned stack copies each layer's saved activations
# into the stack and back (XLA:TPU, `videogen compile`: large on v5e-64 14.7 -> 5.8 GiB per
# chip; xl on v5e-256 15.1 -> 7.4 GiB and est. MFU 60% -> 79%). With full remat (3b, 8b)
# scanning costs little.
UNROLLED_VARIANTS = ('base', 'large', 'xl')

DEFAULT_PROMPTS = (
  'a red circle moving left',
  'a blue square moving up',
  'a green triangle moving right',
  'a yellow circle moving down',
  'a magenta square moving left',
  'a cyan triangle moving up',
  'a white circle moving right',
  'an orange square moving down',
)

# One line per field with its comment (kept out of the formatter's reach).
# fmt: off


def model_config(variant: str = 'small') -> ml_collections.ConfigDict:
  """The transformer's section (`config.model`) for a named variant.

  Args:
    variant: one of `VARIANTS` ('tiny', 'small', 'base', 'large', 'xl', '3b', '8b').

  Returns:
    A ConfigDict (unlocked: the experiment file locks the whole config).
  """
  if variant not in VARIANTS:
    raise ValueError(f'Unknown transformer variant {variant!r}; choose from {sorted(VARIANTS)}')
  sizes = VARIANTS[variant]
  config = ml_collections.ConfigDict()
  config.variant = variant  # Name of the size preset the fields below came from.
  config.num_layers = sizes.num_layers  # Transformer blocks (self-attn, cross-attn, MLP).
  config.embed_dim = sizes.embed_dim  # Width of the residual stream.
  config.num_heads = sizes.num_heads  # Query heads; head_dim = embed_dim // num_heads.
  config.num_kv_heads = sizes.num_kv_heads  # Key/value heads (< num_heads = grouped-query attention).
  config.mlp_dim = sizes.mlp_dim  # Hidden width of the MLP.
  config.mlp = 'swiglu'  # 'swiglu' (gated SiLU, 3 matrices) or 'gelu' (2 matrices).
  config.position = 'rope3d'  # 'rope3d' (head_dim split over t, h, w) or 'learned3d' (factorised tables).
  config.rope_theta = 10000.0  # RoPE base period for every axis.
  config.max_latent_frames = 64  # Latent frames positions can address (> training, for long videos).
  config.train_frame_offset = True  # Shift each clip's time positions randomly in training, so all max_latent_frames positions are trained.
  config.qk_norm = True  # RMSNorm on queries and keys (stabilises bf16 and large models).
  config.norm_eps = 1e-6  # RMSNorm epsilon.
  config.dropout = 0.0  # Dropout on each residual branch in training.
  config.text_dropout_prob = 0.1  # Probability of replacing a caption by the learned null text (CFG).
  config.input_token_noise = 0.0  # Training only: probability of replacing each teacher-forced clip input token by a random code (Taming's 1 - pkeep), so the model learns to continue from sampling errors.
  config.input_token_noise_decay = False  # Decay input_token_noise linearly to 0 at the last training step (clean inputs at the end).
  config.input_token_noise_tasks = ''  # Multi-task models: comma-separated tasks whose clips get input_token_noise ('' = every task).
  config.scan_layers = variant not in UNROLLED_VARIANTS  # nnx.scan over stacked layers (fast compile); False = a Python loop.
  config.remat_policy = 'full' if variant in FULL_REMAT_VARIANTS else 'none'  # 'none', 'full', 'dots_saveable' or 'dots_with_no_batch_dims_saveable'.
  config.z_loss = 1e-4  # Weight of mean(logsumexp(logits)^2); 0 disables.
  config.attention_backend = 'auto'  # 'auto' (by platform), 'xla', 'cudnn' or 'pallas'.
  config.param_dtype = 'float32'  # Parameter dtype; compute dtype is config.compute_dtype.
  config.tasks = task_weights()  # Task name -> training weight; t2v alone = no task prefix.
  config.copy_canvas_tasks = ''  # Multi-task models: comma-separated tasks on whose rows a learnt gate per clip position adds to the logit of the canvas token at the same (t, h, w), so copying the condition is one step away ('' = none).
  return config


def task_weights(**weights: float) -> ml_collections.ConfigDict:
  """`config.model.tasks`: how often training draws each task (0 = not trained).

  Only `t2v` > 0 (the default) is the plain text-to-video model: no task token,
  no conditioning prefix. Any other task > 0 makes every sequence start with a
  task token and a canvas of conditioning tokens (see `videogen.transformer.tasks`).
  """
  config = ml_collections.ConfigDict()
  config.t2v = 1.0  # Text -> video.
  config.uncond = 0.0  # No text, no condition (not CFG's null text: its own task token).
  config.i2v = 0.0  # First frame (one latent frame) + text -> video.
  config.predict = 0.0  # First k latent frames (1 <= k < clip) + text -> the rest.
  config.interpolate = 0.0  # First and last frames, each encoded as an image -> the clip between.
  config.inpaint = 0.0  # Clip tokens with a random space-time box masked -> the clip.
  config.outpaint = 0.0  # Clip tokens with the borders masked -> the clip.
  config.restore = 0.0  # Tokens of a x2 down/up-scaled or noisy clip -> the clean clip.
  config.restyle = 0.0  # Tokens of the greyscale clip + caption naming the colour -> the clip.
  for name, weight in weights.items():
    if name not in config:
      raise ValueError(f'Unknown task {name!r}; valid: {sorted(config.keys())}')
    config[name] = float(weight)
  return config


def tokenizer_config() -> ml_collections.ConfigDict:
  """The frozen video tokenizer the transformer stage reads (`config.tokenizer`)."""
  config = ml_collections.ConfigDict()
  config.checkpoint = ''  # Tokenizer workdir or workdir/checkpoints/<step>; required, except with data.tokens_dir (then only to decode periodic samples and copy it into the workdir for `sample`).
  config.cache_tokens = True  # Encode the train split once into <workdir>/token_cache; train on it.
  return config


def sampling_config() -> ml_collections.ConfigDict:
  """Sampling settings (`config.sampling`) for periodic and CLI samples."""
  config = ml_collections.ConfigDict()
  config.cfg_scale = 3.0  # Classifier-free guidance: uncond + s * (cond - uncond); 1 = conditional only.
  config.temperature = 1.0  # Softmax temperature; 0 = greedy (argmax).
  config.first_frame_temperature = -1.0  # Temperature of the clip's first latent frame when sampled (where objects are placed); < 0 = `temperature`.
  config.top_k = 0  # Sample among the k most likely tokens; 0 = all.
  config.top_p = 1.0  # Nucleus sampling mass; 1 = off.
  config.candidates = 1  # Samples per output of a task with a pixel condition or uncond; the one reproducing it best (uncond: the steadiest) is kept (transformer/candidates.py); 1 = off.
  config.candidate_search = 'clip'  # How candidates are ranked: 'clip' = whole samples; 'frame' = one latent frame at a time, the best kept before the next is drawn (inpaint, outpaint, restore, restyle; transformer/candidates.py).
  config.refine = 0  # Sweeps refining a sample of a task with a pixel condition after its candidates: each generated token in turn swapped for each of the model's refine_top_k likeliest there, kept when the sample reproduces the condition better (transformer/refine.py); 0 = off.
  config.refine_top_k = 4  # Tokens tried at each position by a refine sweep.
  config.refine_min_prob = 0.0  # Of those, only tokens the model gives at least this probability (guided, at temperature 1).
  config.seed = 0  # Seed of the periodic samples (fixed, so they are comparable across steps).
  config.num_prompts = 4  # How many of `prompts` the periodic samples use.
  config.prompts = list(DEFAULT_PROMPTS)  # Fixed prompts of the periodic sample grid.
  config.num_latent_frames = 0  # Latent frames to sample; 0 = the training length, more = sliding window.
  config.window_prefix_frames = 1  # Latent frames kept as prefix when the window slides (long videos).
  config.fps = 8  # Frame rate of the written sample videos.
  config.per_task = ml_collections.ConfigDict()  # Task name -> some of PER_TASK_FIELDS for that task (e.g. per_task.inpaint.temperature=0.4); unset = the values above.
  return config


# Values of `config.sampling.candidate_search`: rank whole clips, or one latent frame at a time.
CANDIDATE_SEARCHES = ('clip', 'frame')

# Fields of `config.sampling` that `config.sampling.per_task.<task>` may set.
PER_TASK_FIELDS = (
  'cfg_scale',
  'temperature',
  'first_frame_temperature',
  'top_k',
  'top_p',
  'candidates',
  'candidate_search',
  'refine',
  'refine_top_k',
  'refine_min_prob',
)


def check_per_task(per_task) -> None:
  """ValueError (one line) naming an unknown task or field of `config.sampling.per_task`."""
  valid_tasks = tuple(task_weights().keys())
  for task, fields in dict(per_task or {}).items():
    if task not in valid_tasks:
      raise ValueError(
        f'config.sampling.per_task.{task}: unknown task; valid: {", ".join(valid_tasks)}'
      )
    if not hasattr(fields, 'keys'):
      raise ValueError(
        f'config.sampling.per_task.{task}={fields!r}: give fields, e.g. '
        f'{{"temperature": 0.4, "top_k": 5}}; valid: {", ".join(PER_TASK_FIELDS)}'
      )
    for field in fields.keys():
      if field not in PER_TASK_FIELDS:
        raise ValueError(
          f'config.sampling.per_task.{task}.{field}: unknown field; '
          f'valid: {", ".join(PER_TASK_FIELDS)}'
        )
    check_candidate_search(
      fields.get('candidate_search', CANDIDATE_SEARCHES[0]),
      f'config.sampling.per_task.{task}.candidate_search',
    )
    check_refine(fields, f'config.sampling.per_task.{task}.')


def check_candidate_search(search: str, name: str = 'candidate_search') -> None:
  """ValueError (one line) naming `name` unless `search` is one of `CANDIDATE_SEARCHES`."""
  if search not in CANDIDATE_SEARCHES:
    raise ValueError(f'{name}={search!r}: valid: {", ".join(CANDIDATE_SEARCHES)}')


def check_refine(fields, prefix: str = '') -> None:
  """ValueError (one line) naming `prefix` + the field unless `fields`' `refine`
  (sweeps, >= 0), `refine_top_k` (tokens tried, >= 1) and `refine_min_prob` (in
  [0, 1)), where given, are in range."""
  rules = (('refine', 0, '0 = off'), ('refine_top_k', 1, 'tokens tried at each position'))
  for name, least, meaning in rules:
    value = fields.get(name, least)
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
      raise ValueError(f'{prefix}{name}={value!r}: give an integer >= {least} ({meaning})')
  value = fields.get('refine_min_prob', 0.0)
  if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
    raise ValueError(
      f'{prefix}refine_min_prob={value!r}: give a probability in [0, 1) (0 = every token tried)'
    )
