"""The T5 encoder stack in Flax NNX, as the original (Mesh TensorFlow / T5X) defines it.

One module covers the encoders of T5 (ReLU feed-forward), T5 v1.1 / FLAN-T5 /
mT5 (gated-GELU) and UMT5 (a relative position bias in every layer rather
than one shared from the first):

  x = embed[ids]                      (no scaling; see below)
  repeat num_layers times:
    x += Attention(RMSNorm(x))        (no 1/sqrt(d) scaling, + relative position bias, padding mask)
    x += FeedForward(RMSNorm(x))      (ReLU, or act(x W_0) * (x W_1) when gated)
  return RMSNorm(x)

RMSNorm has a scale and no bias and does not subtract the mean; no layer has
a bias. Embedding scaling: every variant feeds the encoder unscaled
embeddings. The `d_model ** -0.5` rescale that T5 applies to tied embeddings
belongs to the decoder's LM head, so for the encoder `tie_word_embeddings`
only decides which checkpoint tensor holds the table (see `checkpoint.py`).

Layers are stacked along a leading `layers` axis and run under `lax.scan`,
so compile time does not grow with depth (24 layers for T5-XXL).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from videogen.parallel import sharding

# HF `ACT2FN` names that T5-family configs use, as JAX functions.
ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
  'relu': jax.nn.relu,
  'gelu': functools.partial(jax.nn.gelu, approximate=False),
  'gelu_new': functools.partial(jax.nn.gelu, approximate=True),
  'gelu_pytorch_tanh': functools.partial(jax.nn.gelu, approximate=True),
  'silu': jax.nn.silu,
  'swish': jax.nn.silu,
}


@dataclasses.dataclass(frozen=True)
class T5EncoderConfig:
  """Sizes and variant of a T5-family encoder (HF `T5Config` field names).

  Attributes:
    vocab_size: rows of the embedding table.
    d_model: width of the residual stream (the output embedding size).
    d_kv: width of one attention head.
    d_ff: hidden width of the feed-forward block.
    num_layers: encoder blocks.
    num_heads: attention heads.
    relative_attention_num_buckets: buckets of the relative position bias.
    relative_attention_max_distance: distance beyond which positions share a bucket.
    feed_forward_proj: 'relu' (T5), 'gated-gelu' (v1.1/FLAN), or '[gated-]<act>'.
    layer_norm_epsilon: RMSNorm epsilon.
    per_layer_position_bias: every layer has its own bias table (UMT5).
  """

  vocab_size: int
  d_model: int
  d_kv: int
  d_ff: int
  num_layers: int
  num_heads: int
  relative_attention_num_buckets: int = 32
  relative_attention_max_distance: int = 128
  feed_forward_proj: str = 'gated-gelu'
  layer_norm_epsilon: float = 1e-6
  per_layer_position_bias: bool = False

  def __post_init__(self):
    parts = self.feed_forward_proj.split('-')
    if len(parts) > 2 or (len(parts) == 2 and parts[0] != 'gated'):
      raise ValueError(
        f'feed_forward_proj={self.feed_forward_proj!r} is not of the form '
        "'<act>' or 'gated-<act>' (e.g. 'relu', 'gated-gelu')."
      )
    if self.activation not in ACTIVATIONS:
      raise ValueError(
        f'feed_forward_proj={self.feed_forward_proj!r}: activation '
        f'{self.activation!r} is not supported; supported: {sorted(ACTIVATIONS)}.'
      )

  @property
  def is_gated(self) -> bool:
    return self.feed_forward_proj.startswith('gated-')

  @property
  def activation(self) -> str:
    """The HF activation name; 'gated-gelu' means the tanh GELU, as in HF."""
    if self.feed_forward_proj == 'gated-gelu':
      return 'gelu_new'
    return self.feed_forward_proj.split('-')[-1]

  @property
  def inner_dim(self) -> int:
    return self.num_heads * self.d_kv


def relative_position_buckets(length: int, num_buckets: int, max_distance: int) -> np.ndarray:
  """Bidirectional T5 relative position buckets, bucket[query, key].

  Computed in numpy float32 with the reference's order of operations, at
  trace time (the length is static), so the buckets equal the reference's.

  Returns:
    int32 [length, length] in [0, num_buckets).
  """
  positions = np.arange(length, dtype=np.int64)
  relative = positions[None, :] - positions[:, None]  # key - query.
  half = num_buckets // 2
  buckets = (relative > 0).astype(np.int64) * half
  distance = np.abs(relative)
  max_exact = half // 2
  is_small = distance < max_exact
  # max(distance, 1) only avoids log(0) where the small branch is taken anyway.
  ratio = np.log(np.maximum(distance, 1).astype(np.float32) / np.float32(max_exact))
  ratio = ratio / np.float32(math.log(max_distance / max_exact))
  large = max_exact + (ratio * np.float32(half - max_exact)).astype(np.int64)
  large = np.minimum(large, half - 1)
  return (buckets + np.where(is_small, distance, large)).astype(np.int32)


def rms_norm(x: jax.Array, scale: jax.Array, epsilon: float) -> jax.Array:
  """T5 layer norm: x / rms(x) * scale, statistics in float32.

  Args:
    x: [..., d_model].
    scale: [d_model].
    epsilon: added to the mean square.
  """
  x = x.astype(jnp.float32)
  variance = jnp.mean(jnp.square(x), axis=-1, keepdims=True)
  return x * jax.lax.rsqrt(variance + epsilon) * scale.astype(jnp.float32)


def _param(
  rngs: nnx.Rngs,
  shape: tuple[int, ...],
  axes: tuple[str | None, ...],
  param_dtype: Any,
  std: float | None,
) -> nnx.Param:
  """A parameter with logical axes, normal(std) or ones (std None) like HF's init."""
  init = nnx.initializers.ones if std is None else nnx.initializers.normal(std)
  return nnx.Param(sharding.with_logical(init, axes)(rngs.params(), shape, param_dtype))


class EncoderLayers(nnx.Module):
  """All encoder blocks, parameters stacked along a leading `layers` axis."""

  def __init__(self, config: T5EncoderConfig, *, dtype: Any, param_dtype: Any, rngs: nnx.Rngs):
    n, d, h, k, f = (
      config.num_layers,
      config.d_model,
      config.num_heads,
      config.d_kv,
      config.d_ff,
    )
    self.config = config
    self.dtype = dtype
    make = functools.partial(_param, rngs, param_dtype=param_dtype)
    self.attention_norm = make((n, d), ('layers', 'embed'), std=None)
    self.query = make((n, d, h, k), ('layers', 'embed', 'heads', 'head_dim'), std=(d * k) ** -0.5)
    self.key = make((n, d, h, k), ('layers', 'embed', 'heads', 'head_dim'), std=d**-0.5)
    self.value = make((n, d, h, k), ('layers', 'embed', 'heads', 'head_dim'), std=d**-0.5)
    self.out = make((n, h, k, d), ('layers', 'heads', 'head_dim', 'embed'), std=(h * k) ** -0.5)
    self.mlp_norm = make((n, d), ('layers', 'embed'), std=None)
    # `wi` is the activated branch (HF `wi`, or `wi_0` when gated); `wi_linear` is HF `wi_1`.
    self.wi = make((n, d, f), ('layers', 'embed', 'mlp'), std=d**-0.5)
    self.wi_linear = (
      make((n, d, f), ('layers', 'embed', 'mlp'), std=d**-0.5) if config.is_gated else None
    )
    self.wo = make((n, f, d), ('layers', 'mlp', 'embed'), std=f**-0.5)
    if config.per_layer_position_bias:
      self.relative_attention_bias = make(
        (n, config.relative_attention_num_buckets, h),
        ('layers', None, 'heads'),
        std=d**-0.5,
      )
    else:
      self.relative_attention_bias = None

  def __call__(
    self,
    x: jax.Array,
    mask: jax.Array,
    buckets: np.ndarray,
    shared_bias: jax.Array | None,
  ) -> jax.Array:
    """Runs every block.

    Args:
      x: float32 [batch, length, d_model], the residual stream.
      mask: bool [batch, length], True for real tokens.
      buckets: int32 [length, length] relative position buckets.
      shared_bias: [num_buckets, heads] table of the first layer, or None
        when every layer has its own (UMT5).

    Returns:
      float32 [batch, length, d_model].
    """
    config, dtype = self.config, self.dtype
    # float32 means float32: without HIGHEST, GPUs/TPUs run f32 matmuls at reduced precision.
    precision = jax.lax.Precision.HIGHEST if dtype == jnp.float32 else None
    einsum = functools.partial(jnp.einsum, precision=precision, preferred_element_type=jnp.float32)
    activation = ACTIVATIONS[config.activation]
    names = ['attention_norm', 'query', 'key', 'value', 'out', 'mlp_norm', 'wi', 'wo']
    names += ['wi_linear'] if config.is_gated else []
    names += ['relative_attention_bias'] if config.per_layer_position_bias else []
    stacked = {name: getattr(self, name)[...] for name in names}
    key_mask = mask[:, None, None, :]  # [batch, 1, 1, key].
    min_value = jnp.finfo(jnp.float32).min

    def bias_from(table):  # [buckets, heads] -> [heads, query, key].
      return jnp.take(table.astype(jnp.float32), buckets, axis=0).transpose(2, 0, 1)

    shared_position_bias = None if shared_bias is None else bias_from(shared_bias)

    def block(x, params):
      if shared_position_bias is None:
        position_bias = bias_from(params['relative_attention_bias'])
      else:
        position_bias = shared_position_bias

      normed = rms_norm(x, params['attention_norm'], config.layer_norm_epsilon).astype(dtype)
      q, k, v = (
        einsum('bld,dhk->blhk', normed, params[n].astype(dtype)).astype(dtype)
        for n in ('query', 'key', 'value')
      )
      q = sharding.constrain(q, ('batch', 'length', 'heads', 'head_dim'))
      scores = einsum('bqhd,bkhd->bhqk', q, k) + position_bias[None]
      scores = jnp.where(key_mask, scores, min_value)
      probs = jax.nn.softmax(scores, axis=-1).astype(dtype)
      attended = einsum('bhqk,bkhd->bqhd', probs, v).astype(dtype)
      x = x + einsum('bqhd,hde->bqe', attended, params['out'].astype(dtype))
      x = sharding.constrain(x, ('batch', 'length', 'embed'))

      normed = rms_norm(x, params['mlp_norm'], config.layer_norm_epsilon).astype(dtype)
      hidden = activation(einsum('bld,df->blf', normed, params['wi'].astype(dtype)))
      if config.is_gated:
        hidden = hidden * einsum('bld,df->blf', normed, params['wi_linear'].astype(dtype))
      hidden = sharding.constrain(hidden.astype(dtype), ('batch', 'length', 'mlp'))
      x = x + einsum('blf,fd->bld', hidden, params['wo'].astype(dtype))
      return sharding.constrain(x, ('batch', 'length', 'embed')), None

    x, _ = jax.lax.scan(block, x, stacked)
    return x


class T5Stack(nnx.Module):
  """The T5 encoder: token ids -> contextual embeddings."""

  def __init__(
    self,
    config: T5EncoderConfig,
    *,
    dtype: Any = jnp.float32,
    param_dtype: Any = jnp.float32,
    rngs: nnx.Rngs,
  ):
    """Builds the encoder with HF's random init (tests and the offline default).

    Args:
      config: sizes and variant.
      dtype: matmul input dtype (bfloat16 or float32); norms, softmax and the
        residual stream stay float32.
      param_dtype: dtype the parameters are stored in.
      rngs: parameter initialisation keys.
    """
    self.config = config
    self.dtype = jnp.dtype(dtype)
    make = functools.partial(_param, rngs, param_dtype=param_dtype)
    self.token_embedding = make((config.vocab_size, config.d_model), ('vocab', 'embed'), std=1.0)
    if config.per_layer_position_bias:
      self.relative_attention_bias = None
    else:
      self.relative_attention_bias = make(
        (config.relative_attention_num_buckets, config.num_heads),
        (None, 'heads'),
        std=config.d_model**-0.5,
      )
    self.layers = EncoderLayers(config, dtype=self.dtype, param_dtype=param_dtype, rngs=rngs)
    self.final_norm = make((config.d_model,), ('embed',), std=None)

  def __call__(self, input_ids: jax.Array, attention_mask: jax.Array) -> jax.Array:
    """Encodes token ids.

    Args:
      input_ids: int32 [batch, length].
      attention_mask: [batch, length], nonzero for real tokens, 0 for padding.

    Returns:
      float32 [batch, length, d_model]. Padded positions hold values too (as in
      the reference); consumers mask them with `attention_mask`.
    """
    config = self.config
    mask = attention_mask.astype(bool)
    x = jnp.take(self.token_embedding[...], input_ids, axis=0).astype(jnp.float32)
    x = sharding.constrain(x, ('batch', 'length', 'embed'))
    buckets = relative_position_buckets(
      input_ids.shape[1],
      config.relative_attention_num_buckets,
      config.relative_attention_max_distance,
    )
    shared_bias = (
      None if self.relative_attention_bias is None else self.relative_attention_bias[...]
    )
    x = self.layers(x, mask, buckets, shared_bias)
    return rms_norm(x, self.final_norm[...], config.layer_norm_epsilon)


def encode_fn(
  graphdef: nnx.GraphDef,
  state: nnx.State,
  input_ids: jax.Array,
  attention_mask: jax.Array,
) -> jax.Array:
  """Pure, frozen encoder forward for use inside another jitted step.

  Args:
    graphdef: `T5Encoder.graphdef` (static under jit).
    state: `T5Encoder.state`; gradients are stopped, the encoder is frozen.
    input_ids: int32 [batch, length].
    attention_mask: [batch, length], nonzero for real tokens.

  Returns:
    float32 [batch, length, d_model].
  """
  network = nnx.merge(graphdef, jax.lax.stop_gradient(state))
  return network(input_ids, attention_mask)


encode_jit = jax.jit(encode_fn, static_argnums=0)
