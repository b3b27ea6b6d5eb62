"""Building blocks of the video transformer: positions, attention, MLP, block.

Every parameter is created with logical axis names and every activation is
annotated with them (`sharding.constrain`); the config's axis rules alone
decide the mesh placement.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
from flax import nnx

from videogen.parallel import sharding
from videogen.transformer import attention

REMAT_POLICIES = {
  'none': None,
  'full': jax.checkpoint_policies.nothing_saveable,
  'dots_saveable': jax.checkpoint_policies.dots_saveable,
  'dots_with_no_batch_dims_saveable': jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
}


@dataclasses.dataclass(frozen=True)
class TransformerSpec:
  """Everything that fixes the transformer's structure (hashable, static).

  Attributes:
    vocab_size: codebook size of the video tokenizer (the output classes);
      the input table has one more row, the BOS token `vocab_size`.
    latent_shape: (t, h, w) token grid of one training clip.
    text_dim: width of the text encoder's embeddings.
    dtype: compute dtype; parameters are `param_dtype`.
    Other fields: as in `videogen.transformer.config.model_config`.
  """

  vocab_size: int
  latent_shape: tuple[int, int, int]
  text_dim: int
  num_layers: int = 2
  embed_dim: int = 64
  num_heads: int = 4
  num_kv_heads: int = 4
  mlp_dim: int = 256
  mlp: str = 'swiglu'
  position: str = 'rope3d'
  rope_theta: float = 10000.0
  max_latent_frames: int = 64
  qk_norm: bool = True
  norm_eps: float = 1e-6
  dropout: float = 0.0
  scan_layers: bool = True
  remat_policy: str = 'none'
  attention_backend: str = 'auto'
  dtype: str = 'float32'
  param_dtype: str = 'float32'
  # Tasks the model is trained for (`videogen.transformer.tasks.TASKS` order);
  # ('t2v',) alone is the plain text-to-video model without a task prefix.
  tasks: tuple[str, ...] = ('t2v',)
  # Multi-task models: tasks on whose rows a learnt per-position gate adds to
  # each clip position's logit of the canvas token aligned with it (a copy path).
  copy_tasks: tuple[str, ...] = ()

  def __post_init__(self):
    if self.copy_tasks and not self.multitask:
      raise ValueError(
        f'copy_tasks={",".join(self.copy_tasks)} needs a multi-task model (a task besides '
        't2v in model.tasks): a text-to-video model has no canvas to copy.'
      )
    if self.embed_dim % self.num_heads:
      raise ValueError(
        f'embed_dim {self.embed_dim} is not a multiple of num_heads {self.num_heads}'
      )
    if self.num_heads % self.num_kv_heads:
      raise ValueError(
        f'num_heads {self.num_heads} is not a multiple of num_kv_heads {self.num_kv_heads}'
      )
    if self.position == 'rope3d' and self.head_dim % 2:
      raise ValueError(f'rope3d needs an even head_dim, got {self.head_dim}')
    if self.position not in ('rope3d', 'learned3d'):
      raise ValueError(f"position must be 'rope3d' or 'learned3d', got {self.position!r}")
    if self.mlp not in ('swiglu', 'gelu'):
      raise ValueError(f"mlp must be 'swiglu' or 'gelu', got {self.mlp!r}")
    if self.remat_policy not in REMAT_POLICIES:
      raise ValueError(f'remat_policy {self.remat_policy!r} is not one of {sorted(REMAT_POLICIES)}')
    if self.latent_shape[0] > self.max_latent_frames:
      raise ValueError(
        f'Training clips have {self.latent_shape[0]} latent frames but max_latent_frames is '
        f'{self.max_latent_frames}'
      )

  @property
  def head_dim(self) -> int:
    return self.embed_dim // self.num_heads

  @property
  def tokens_per_frame(self) -> int:
    return self.latent_shape[1] * self.latent_shape[2]

  @property
  def seq_length(self) -> int:
    """Tokens of one training clip (t * h * w)."""
    return self.latent_shape[0] * self.tokens_per_frame

  @property
  def bos_id(self) -> int:
    return self.vocab_size

  @property
  def multitask(self) -> bool:
    """Whether sequences start with a task token and a conditioning canvas."""
    return tuple(self.tasks) != ('t2v',)

  @property
  def prefix_length(self) -> int:
    """Positions before the generated clip: task token + a canvas of t * h * w
    conditioning tokens (multi-task models), else 0."""
    return 1 + self.seq_length if self.multitask else 0

  @property
  def copy_task_ids(self) -> tuple[int, ...]:
    """Task token ids of `copy_tasks` (`tasks.task_id`)."""
    from videogen.transformer import tasks  # noqa: PLC0415  (tasks imports this module)

    return tuple(tasks.task_id(self, name) for name in self.copy_tasks)

  @property
  def input_vocab_size(self) -> int:
    """Rows of the input embedding: the codes, BOS, and for multi-task models
    the mask token and one token per task of `tasks.TASKS`."""
    from videogen.transformer import tasks  # noqa: PLC0415  (tasks imports this module)

    return self.vocab_size + 1 + (1 + len(tasks.TASKS) if self.multitask else 0)

  @classmethod
  def from_config(
    cls,
    model: ml_collections.ConfigDict,
    *,
    vocab_size: int,
    latent_shape: tuple[int, int, int],
    text_dim: int,
    compute_dtype: str = 'float32',
  ) -> 'TransformerSpec':
    """Reads `config.model` (see `config.model_config`) plus the data-given sizes."""
    return cls(
      vocab_size=int(vocab_size),
      latent_shape=tuple(int(s) for s in latent_shape),
      text_dim=int(text_dim),
      num_layers=model.num_layers,
      embed_dim=model.embed_dim,
      num_heads=model.num_heads,
      num_kv_heads=model.num_kv_heads,
      mlp_dim=model.mlp_dim,
      mlp=model.mlp,
      position=model.position,
      rope_theta=model.rope_theta,
      max_latent_frames=model.max_latent_frames,
      qk_norm=model.qk_norm,
      norm_eps=model.norm_eps,
      dropout=model.dropout,
      scan_layers=model.scan_layers,
      remat_policy=model.remat_policy,
      attention_backend=model.attention_backend,
      dtype=compute_dtype,
      param_dtype=model.param_dtype,
      tasks=trained_tasks(model),
      copy_tasks=copy_tasks(model),
    )


def trained_tasks(model: ml_collections.ConfigDict) -> tuple[str, ...]:
  """Tasks with a weight > 0 in `model.tasks` (runs from before tasks: t2v)."""
  from videogen.transformer import tasks  # noqa: PLC0415

  weights = model.get('tasks')
  if weights is None:
    return ('t2v',)
  return tasks.active_tasks(weights)


def copy_tasks(model: ml_collections.ConfigDict) -> tuple[str, ...]:
  """`model.copy_canvas_tasks` as a tuple ('' or absent in older configs: none)."""
  from videogen.transformer import tasks  # noqa: PLC0415

  names = model.get('copy_canvas_tasks', '')
  return tasks.parse_task_list(names) if names else ()


def token_coords(
  latent_shape: tuple[int, int, int],
  start: jax.Array | int,
  length: int,
  frame_offset: jax.Array,
  prefix_length: int = 0,
) -> jax.Array:
  """(t, h, w) coordinates of sequence positions [start, start + length).

  Position i carries the coordinates of the token it predicts (target i of
  the raster-ordered clip), so the BOS input at 0 carries (0, 0, 0). With a
  task prefix (`prefix_length` = 1 + t * h * w), the task token at 0 carries
  (0, 0, 0), canvas token j at position 1 + j the coordinates of clip token j,
  and position prefix_length + i those of generated token i.

  Args:
    latent_shape: (t, h, w) of the clip grid (only h and w are used).
    start: first sequence index (may be traced, for decoding).
    length: number of positions (static).
    frame_offset: int32 [batch], latent frame index of the window's first frame.
    prefix_length: positions of the task prefix (0: none).

  Returns:
    int32 [batch, length, 3].
  """
  _, height, width = latent_shape
  index = start + jnp.arange(length, dtype=jnp.int32)
  if prefix_length:
    index = jnp.where(index >= prefix_length, index - prefix_length, jnp.maximum(index - 1, 0))
  frame = index // (height * width)
  coords = jnp.stack([frame, (index // width) % height, index % width], axis=-1)
  offset = jnp.stack([frame_offset, jnp.zeros_like(frame_offset), jnp.zeros_like(frame_offset)], -1)
  return coords[None] + offset[:, None, :].astype(jnp.int32)


def rope_split(head_dim: int) -> tuple[int, int, int]:
  """Rotary frequency pairs given to the t, h and w axes (they sum to head_dim/2)."""
  pairs = head_dim // 2
  spatial = pairs // 3
  return pairs - 2 * spatial, spatial, spatial


def rope_tables(coords: jax.Array, head_dim: int, theta: float) -> tuple[jax.Array, jax.Array]:
  """Factorised 3D RoPE: each axis rotates its own slice of the head dims.

  Args:
    coords: int32 [batch, length, 3] (t, h, w).

  Returns:
    (sin, cos), each float32 [batch, length, head_dim // 2].
  """
  angles = []
  for axis, pairs in enumerate(rope_split(head_dim)):
    if pairs == 0:
      continue
    inverse_freq = theta ** (-jnp.arange(pairs, dtype=jnp.float32) / pairs)
    angles.append(coords[..., axis : axis + 1].astype(jnp.float32) * inverse_freq)
  angle = jnp.concatenate(angles, axis=-1)
  return jnp.sin(angle), jnp.cos(angle)


def apply_rope(x: jax.Array, rope: tuple[jax.Array, jax.Array]) -> jax.Array:
  """Rotates pairs (x[i], x[i + head_dim/2]). x: [batch, length, heads, head_dim]."""
  sin, cos = (table[:, :, None, :] for table in rope)
  first, second = jnp.split(x.astype(jnp.float32), 2, axis=-1)
  rotated = jnp.concatenate([first * cos - second * sin, second * cos + first * sin], axis=-1)
  return rotated.astype(x.dtype)


def dropout(x: jax.Array, rate: float, key: jax.Array | None) -> jax.Array:
  """Inverted dropout; identity when `key` is None or the rate is 0."""
  if key is None or rate == 0.0:
    return x
  keep = jax.random.bernoulli(key, 1.0 - rate, x.shape)
  return jnp.where(keep, x / (1.0 - rate), jnp.zeros_like(x))


def kernel_init(axes, in_axis, out_axis, scale: float = 1.0):
  """Fan-in truncated-normal init carrying logical axis names."""
  init = nnx.initializers.variance_scaling(
    scale, 'fan_in', 'truncated_normal', in_axis=in_axis, out_axis=out_axis
  )
  return sharding.with_logical(init, axes)


def rms_norm(features: int, axis_name: str, spec: TransformerSpec, rngs: nnx.Rngs) -> nnx.RMSNorm:
  return nnx.RMSNorm(
    features,
    epsilon=spec.norm_eps,
    dtype=spec.dtype,
    param_dtype=spec.param_dtype,
    scale_init=sharding.with_logical(nnx.initializers.ones, (axis_name,)),
    rngs=rngs,
  )


class Attention(nnx.Module):
  """Multi-head attention projections (grouped-query when num_kv_heads < num_heads)."""

  def __init__(self, spec: TransformerSpec, *, rngs: nnx.Rngs):
    dims = (spec.embed_dim, spec.num_heads, spec.num_kv_heads, spec.head_dim)
    embed, heads, kv_heads, head_dim = dims
    common = dict(dtype=spec.dtype, param_dtype=spec.param_dtype, rngs=rngs)
    self.query = nnx.Einsum(
      'bld,dnh->blnh',
      (embed, heads, head_dim),
      kernel_init=kernel_init(('embed', 'heads', 'head_dim'), 0, (1, 2)),
      **common,
    )
    self.key = nnx.Einsum(
      'bld,dnh->blnh',
      (embed, kv_heads, head_dim),
      kernel_init=kernel_init(('embed', 'kv_heads', 'head_dim'), 0, (1, 2)),
      **common,
    )
    self.value = nnx.Einsum(
      'bld,dnh->blnh',
      (embed, kv_heads, head_dim),
      kernel_init=kernel_init(('embed', 'kv_heads', 'head_dim'), 0, (1, 2)),
      **common,
    )
    # Residual-branch outputs start small so the stream's scale is kept with depth.
    self.out = nnx.Einsum(
      'blnh,nhd->bld',
      (heads, head_dim, embed),
      kernel_init=kernel_init(
        ('heads', 'head_dim', 'embed'), (0, 1), 2, scale=1.0 / (2 * spec.num_layers)
      ),
      **common,
    )
    self.query_norm = rms_norm(head_dim, 'head_dim', spec, rngs) if spec.qk_norm else None
    self.key_norm = rms_norm(head_dim, 'head_dim', spec, rngs) if spec.qk_norm else None

  def queries(self, x: jax.Array, rope) -> jax.Array:
    """x: [batch, length, embed] -> [batch, length, heads, head_dim]."""
    q = self.query(x)
    if self.query_norm is not None:
      q = self.query_norm(q)
    if rope is not None:
      q = apply_rope(q, rope)
    return sharding.constrain(q, ('batch', 'length', 'heads', 'head_dim'))

  def keys_values(self, x: jax.Array, rope, length_axis: str = 'length'):
    """x: [batch, length, embed] -> k, v: [batch, length, kv_heads, head_dim]."""
    k, v = self.key(x), self.value(x)
    if self.key_norm is not None:
      k = self.key_norm(k)
    if rope is not None:
      k = apply_rope(k, rope)
    axes = ('batch', length_axis, 'kv_heads', 'head_dim')
    return sharding.constrain(k, axes), sharding.constrain(v, axes)

  def output(self, attended: jax.Array) -> jax.Array:
    """[batch, length, heads, head_dim] -> [batch, length, embed]."""
    return sharding.constrain(self.out(attended), ('batch', 'length', 'embed'))


class Mlp(nnx.Module):
  """SwiGLU (gate * up -> down) or GELU (up -> down) feed-forward."""

  def __init__(self, spec: TransformerSpec, *, rngs: nnx.Rngs):
    common = dict(use_bias=False, dtype=spec.dtype, param_dtype=spec.param_dtype, rngs=rngs)
    up_init = kernel_init(('embed', 'mlp'), 0, 1)
    self.gated = spec.mlp == 'swiglu'
    self.gate = (
      nnx.Linear(spec.embed_dim, spec.mlp_dim, kernel_init=up_init, **common)
      if self.gated
      else None
    )
    self.up = nnx.Linear(spec.embed_dim, spec.mlp_dim, kernel_init=up_init, **common)
    self.down = nnx.Linear(
      spec.mlp_dim,
      spec.embed_dim,
      kernel_init=kernel_init(('mlp', 'embed'), 0, 1, scale=1.0 / (2 * spec.num_layers)),
      **common,
    )

  def __call__(self, x: jax.Array) -> jax.Array:
    """x: [batch, length, embed] -> [batch, length, embed]."""
    hidden = self.up(x)
    hidden = hidden * jax.nn.silu(self.gate(x)) if self.gated else jax.nn.gelu(hidden)
    hidden = sharding.constrain(hidden, ('batch', 'length', 'mlp'))
    return sharding.constrain(self.down(hidden), ('batch', 'length', 'embed'))


@dataclasses.dataclass(frozen=True)
class BlockInputs:
  """What every block reads besides the residual stream."""

  # (sin, cos) [batch, length, head_dim / 2], or None (learned positions).
  rope: Any
  # Text K/V [batch, text_length, kv_heads, head_dim]; None = project `context`.
  cross_key: jax.Array | None
  cross_value: jax.Array | None
  # [batch, text_length, embed], used when cross K/V are not given.
  context: jax.Array | None
  # bool [batch, text_length].
  context_mask: jax.Array


class Block(nnx.Module):
  """Pre-norm block: causal self-attention, cross-attention to text, MLP."""

  def __init__(self, spec: TransformerSpec, *, rngs: nnx.Rngs):
    self.spec = spec
    self.self_norm = rms_norm(spec.embed_dim, 'embed', spec, rngs)
    self.self_attention = Attention(spec, rngs=rngs)
    self.cross_norm = rms_norm(spec.embed_dim, 'embed', spec, rngs)
    self.cross_attention = Attention(spec, rngs=rngs)
    self.mlp_norm = rms_norm(spec.embed_dim, 'embed', spec, rngs)
    self.mlp = Mlp(spec, rngs=rngs)

  def cross_keys_values(self, context: jax.Array):
    """context: [batch, text_length, embed] -> k, v [batch, text_length, kv_heads, head_dim]."""
    return self.cross_attention.keys_values(context, None, length_axis='text_length')

  def __call__(
    self,
    x: jax.Array,
    inputs: BlockInputs,
    *,
    dropout_key: jax.Array | None = None,
    cache: tuple[jax.Array, jax.Array] | None = None,
    index: jax.Array | None = None,
  ):
    """Applies the block.

    Args:
      x: [batch, length, embed].
      inputs: positions and text context.
      dropout_key: key for residual dropout (training), or None.
      cache: (key, value) [batch, kv_heads, max_length, head_dim] of earlier
        positions for one decoding step (length must be 1); None = causal
        attention over `x` alone.
      index: the sequence index of `x` when `cache` is given.

    Returns:
      (x, (key, value)): the new stream and this layer's self-attention K/V,
      the updated cache when `cache` is given, else the fresh K/V of `x`.
    """
    spec = self.spec
    keys = jax.random.split(dropout_key, 3) if dropout_key is not None else (None,) * 3
    dtype = jnp.dtype(spec.dtype)
    backend = attention.resolve_backend(spec.attention_backend, dtype)

    h = self.self_norm(x)
    q = self.self_attention.queries(h, inputs.rope)
    k, v = self.self_attention.keys_values(h, inputs.rope)
    if cache is None:
      attended = attention.dot_product_attention(q, k, v, causal=True, backend=backend)
    else:
      # The cache is [batch, kv_heads, length, head_dim] (see DecodeCache).
      k = jax.lax.dynamic_update_slice_in_dim(
        cache[0], jnp.swapaxes(k, 1, 2).astype(cache[0].dtype), index, axis=2
      )
      v = jax.lax.dynamic_update_slice_in_dim(
        cache[1], jnp.swapaxes(v, 1, 2).astype(cache[1].dtype), index, axis=2
      )
      filled = jnp.arange(k.shape[2]) <= index
      kv_mask = jnp.broadcast_to(filled, (x.shape[0], k.shape[2]))
      # One query against the cache is a matrix-vector product: plain XLA.
      attended = attention.dot_product_attention(
        q,
        k.astype(q.dtype),
        v.astype(q.dtype),
        kv_mask=kv_mask,
        backend='xla',
        kv_layout='bhtd',
      )
    x = x + dropout(self.self_attention.output(attended), spec.dropout, keys[0])

    h = self.cross_norm(x)
    q = self.cross_attention.queries(h, None)
    if inputs.cross_key is None:
      cross_key, cross_value = self.cross_keys_values(inputs.context)
    else:
      cross_key, cross_value = inputs.cross_key, inputs.cross_value
    # The Pallas GPU kernel has no key mask; text is short, XLA serves it. So
    # does XLA one decoded query (splash would pad it to a 128-row tile).
    cross_backend = backend if attention.supports_kv_mask(backend) and cache is None else 'xla'
    attended = attention.dot_product_attention(
      q, cross_key, cross_value, kv_mask=inputs.context_mask, backend=cross_backend
    )
    x = x + dropout(self.cross_attention.output(attended), spec.dropout, keys[1])

    x = x + dropout(self.mlp(self.mlp_norm(x)), spec.dropout, keys[2])
    return sharding.constrain(x, ('batch', 'length', 'embed')), (k, v)
