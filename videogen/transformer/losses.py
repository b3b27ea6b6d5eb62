"""Next-token losses and metrics, and the analytic cost of a train step."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import optax

from videogen.transformer.layers import TransformerSpec


def token_metrics(
  logits: jax.Array,
  targets: jax.Array,
  z_loss_weight: float = 0.0,
  weights: jax.Array | None = None,
  token_mask: jax.Array | None = None,
) -> tuple[jax.Array, dict[str, jax.Array]]:
  """Cross-entropy (+ z-loss) over every token of the clips.

  Args:
    logits: float32 [batch, length, vocab].
    targets: int32 [batch, length].
    z_loss_weight: weight of mean(logsumexp(logits)^2), which keeps the
      softmax normaliser near 1 (PaLM) and bf16 logits well conditioned.
    weights: float32 [batch] weights of the clips (0 for the padding of a
      partial eval batch); None weighs every clip 1.
    token_mask: float32 [batch, length], 1 at the tokens that count (the
      generated part of a task sequence); None counts every token. With a
      mask, means are over the counted tokens of the weighted clips.

  Returns:
    (loss, metrics): loss = cross_entropy + z_loss; metrics has `loss`,
    `cross_entropy` (nats), `bits_per_token`, `accuracy` and `z_loss` (the
    weighted term), all scalars: means over the weighted clips.
  """
  logits = logits.astype(jnp.float32)

  def mean(per_token: jax.Array) -> jax.Array:
    if token_mask is not None:
      counted = token_mask if weights is None else token_mask * weights[:, None]
      return jnp.sum(counted * per_token) / jnp.maximum(jnp.sum(counted), 1e-9)
    if weights is None:
      return per_token.mean()
    per_clip = per_token.mean(axis=-1)
    return jnp.sum(weights * per_clip) / jnp.maximum(jnp.sum(weights), 1e-9)

  cross_entropy = mean(optax.softmax_cross_entropy_with_integer_labels(logits, targets))
  log_normalizer = jax.nn.logsumexp(logits, axis=-1)
  z_loss = z_loss_weight * mean(jnp.square(log_normalizer))
  # Top-1 accuracy as "the target's logit is the largest": a max reduction, which
  # XLA:CPU vectorises, instead of argmax's variadic (value, index) reduction,
  # which it does not (4.5% of the quickstart's step on 2 cores). Only exact
  # ties between logits count differently.
  target_logits = jnp.take_along_axis(logits, targets[..., None], axis=-1)[..., 0]
  accuracy = mean((target_logits >= jnp.max(logits, axis=-1)).astype(jnp.float32))
  loss = cross_entropy + z_loss
  metrics = {
    'loss': loss,
    'cross_entropy': cross_entropy,
    'bits_per_token': cross_entropy / math.log(2.0),
    'accuracy': accuracy,
    'z_loss': z_loss,
  }
  return loss, metrics


def matmul_params_per_token(spec: TransformerSpec) -> int:
  """Weights each video token is multiplied by (embeddings excluded)."""
  embed, heads, kv_heads, head_dim = (
    spec.embed_dim,
    spec.num_heads,
    spec.num_kv_heads,
    spec.head_dim,
  )
  self_attention = 2 * embed * heads * head_dim + 2 * embed * kv_heads * head_dim
  # Query and output projections; text K/V are counted per text token.
  cross_attention = 2 * embed * heads * head_dim
  mlp = (3 if spec.mlp == 'swiglu' else 2) * embed * spec.mlp_dim
  return spec.num_layers * (self_attention + cross_attention + mlp) + embed * spec.vocab_size


def forward_flops(
  spec: TransformerSpec,
  batch: int,
  length: int,
  text_length: int,
  logits_length: int | None = None,
) -> float:
  """Model FLOPs of one forward pass (a multiply-add counts 2).

  Dense layers: 2 * weights per token (video tokens; the text projection and
  cross-attention K/V per text token); the output layer over the last
  `logits_length` positions (default all: a multi-task step skips its prefix). Attention: 2 * 2 * q_len * kv_len *
  heads * head_dim per layer (QK^T and AV); causal self-attention counts half
  of the square (the work a causal kernel does).
  """
  spec_heads = spec.num_heads * spec.head_dim
  head = spec.embed_dim * spec.vocab_size
  logits_length = length if logits_length is None else logits_length
  dense = 2.0 * ((matmul_params_per_token(spec) - head) * length + head * logits_length)
  text = (
    2.0
    * text_length
    * (
      spec.text_dim * spec.embed_dim
      + spec.num_layers * 2 * spec.embed_dim * spec.num_kv_heads * spec.head_dim
    )
  )
  self_attention = spec.num_layers * 4.0 * length * length * spec_heads / 2
  cross_attention = spec.num_layers * 4.0 * length * text_length * spec_heads
  return batch * (dense + text + self_attention + cross_attention)


def train_step_flops(
  spec: TransformerSpec,
  batch: int,
  length: int,
  text_length: int,
  logits_length: int | None = None,
) -> float:
  """Forward + backward model FLOPs (3x forward; remat recomputation excluded)."""
  return 3.0 * forward_flops(spec, batch, length, text_length, logits_length)
