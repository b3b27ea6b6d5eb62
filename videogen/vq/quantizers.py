"""Quantizers behind one interface: FSQ (default), LFQ and EMA VQ.

Every quantizer maps encoder latents `z: [..., dim]` to straight-through
quantized latents, int32 codes in [0, codebook_size), a scalar loss and
metrics (codebook usage of the batch and code perplexity), and maps codes
back to the decoder's input with `codes_to_embeddings`. Nothing outside
`videogen.vq` needs to know which one is in use.

- FSQ (Mentzer et al., 2023): each channel is bounded by a shifted tanh to
  `levels[i]` values and rounded; no codebook. An optional commitment loss
  pulls each bounded value to the centre of its rounding bin, so that latents
  do not sit on bin edges where context noise flips their code (uniform
  regions then get one code, not several that decode alike).
- LFQ (MAGVIT-v2): each channel is quantized to its sign; an entropy loss
  (per-token entropy minus batch entropy of the code distribution) keeps the
  codes confident and the codebook used, with its weight annealed.
- VQ: nearest code by cosine similarity (latents and codes are
  l2-normalised, as in ViT-VQGAN, which keeps codebook usage high), EMA
  codebook updates and restarts of dead codes from batch latents. Its
  codebook lives in `CodebookState` variables, not `nnx.Param`s: the train
  step updates them, not the optimizer.
"""

from __future__ import annotations

import math
from typing import Protocol, Sequence

import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
from flax import nnx

from videogen.parallel import sharding


@flax.struct.dataclass
class QuantizerOutput:
  """The result of quantizing latents `z: [..., dim]`.

  Attributes:
    quantized: float32 [..., dim], equal to the quantized latents in the
      forward pass, with the straight-through gradient of `z`.
    codes: int32 [...], in [0, codebook_size).
    loss: float32 scalar, the quantizer's own loss (already weighted).
    metrics: float32 scalars, at least `codebook_usage` (fraction of codes
      used in this batch) and `perplexity` (exp of the code entropy).
  """

  quantized: jax.Array
  codes: jax.Array
  loss: jax.Array
  metrics: dict[str, jax.Array]


class CodebookState(nnx.Variable):
  """Non-trainable codebook statistics that the train step updates."""


def straight_through(z: jax.Array, quantized: jax.Array) -> jax.Array:
  """`quantized` forward, identity gradient to `z` backward."""
  return z + jax.lax.stop_gradient(quantized - z)


def code_counts(
  codes: jax.Array, codebook_size: int, weights: jax.Array | None = None
) -> jax.Array:
  """How often each code occurs: codes int32 [...] -> float32 [codebook_size].

  `weights` (float32, the shape of `codes`) counts each code that many times.
  """
  if weights is not None:
    weights = weights.reshape(-1)
  counts = jnp.bincount(codes.reshape(-1), weights=weights, length=codebook_size)
  return counts.astype(jnp.float32)


def usage_metrics(counts: jax.Array) -> dict[str, jax.Array]:
  """Codebook usage (fraction of codes seen) and perplexity from code counts.

  Args:
    counts: float32 [codebook_size] occurrence counts.

  Returns:
    {'codebook_usage': used / size, 'perplexity': exp(entropy of the code
    frequencies)}, both float32 scalars (perplexity = size when uniform).
  """
  probs = counts / jnp.maximum(jnp.sum(counts), 1.0)
  entropy = -jnp.sum(jnp.where(probs > 0, probs * jnp.log(jnp.maximum(probs, 1e-30)), 0.0))
  return {
    'codebook_usage': jnp.mean((counts > 0).astype(jnp.float32)),
    'perplexity': jnp.exp(entropy),
  }


class Quantizer(Protocol):
  """The interface every quantizer module implements.

  Attributes:
    dim: channels of the latents it quantizes (the encoder's output).
    codebook_size: number of distinct codes.
  """

  dim: int
  codebook_size: int

  def __call__(
    self,
    z: jax.Array,
    *,
    step: jax.Array | int = 0,
    train: bool = False,
    rng: jax.Array | None = None,
  ) -> QuantizerOutput:
    """Quantizes `z`.

    Args:
      z: float [..., dim] encoder latents.
      step: the train step, for annealed loss weights.
      train: update codebook statistics (VQ); ignored by FSQ and LFQ.
      rng: key for codebook restarts when `train` (VQ).
    """
    ...

  def codes_to_embeddings(self, codes: jax.Array) -> jax.Array:
    """codes: int32 [...] -> float32 [..., dim], what the decoder consumes."""
    ...


class FSQ(nnx.Module):
  """Finite scalar quantization.

  Args:
    levels: values per latent channel, e.g. (8, 5, 5, 5) for 1000 codes.
    commitment_weight: weight of mean (bound(z) - sg(round(bound(z))))^2, in
      units of one level step; 0 is the paper's FSQ (no auxiliary loss).
  """

  def __init__(self, levels: Sequence[int], commitment_weight: float = 0.0):
    self.levels = tuple(int(level) for level in levels)
    self.commitment_weight = float(commitment_weight)
    if min(self.levels) < 2:
      raise ValueError(f'FSQ levels must be >= 2, got {self.levels}')
    self.dim = len(self.levels)
    self.codebook_size = math.prod(self.levels)
    if self.codebook_size >= 2**31:
      raise ValueError(f'FSQ levels {self.levels} give more than 2**31 codes')
    self.basis = tuple(math.prod(self.levels[:i]) for i in range(self.dim))

  def _arrays(self) -> tuple[jax.Array, jax.Array, jax.Array]:
    levels = jnp.asarray(self.levels, jnp.float32)
    return levels, jnp.floor(levels / 2), jnp.asarray(self.basis, jnp.int32)

  def bound(self, z: jax.Array) -> jax.Array:
    """Squashes z so that rounding gives `levels` values per channel.

    Even level counts are offset by one half so that they stay symmetric
    around zero before rounding (the paper's `bound`).
    """
    levels, _, _ = self._arrays()
    half_l = (levels - 1) * (1 - 1e-3) / 2
    offset = jnp.where(levels % 2 == 1, 0.0, 0.5)
    shift = jnp.arctanh(offset / half_l)
    return jnp.tanh(z + shift) * half_l - offset

  def __call__(self, z, *, step=0, train=False, rng=None) -> QuantizerOutput:
    z = z.astype(jnp.float32)
    _, half_width, basis = self._arrays()
    bounded = self.bound(z)
    nearest = jax.lax.stop_gradient(jnp.round(bounded))
    rounded = straight_through(bounded, nearest)
    quantized = rounded / half_width
    digits = (nearest + half_width).astype(jnp.int32)
    codes = jnp.sum(digits * basis, axis=-1).astype(jnp.int32)
    metrics = usage_metrics(code_counts(codes, self.codebook_size))
    commitment = jnp.mean(jnp.square(bounded - nearest))
    metrics['commitment'] = commitment
    return QuantizerOutput(quantized, codes, self.commitment_weight * commitment, metrics)

  def codes_to_embeddings(self, codes: jax.Array) -> jax.Array:
    levels, half_width, basis = self._arrays()
    digits = (codes[..., None] // basis) % levels.astype(jnp.int32)
    return (digits.astype(jnp.float32) - half_width) / half_width


def _binary_entropy(logits: jax.Array) -> jax.Array:
  """Entropy (nats) of Bernoulli(sigmoid(logits)), elementwise."""
  p = jax.nn.sigmoid(logits)
  return -(p * jax.nn.log_sigmoid(logits) + (1 - p) * jax.nn.log_sigmoid(-logits))


# Largest sub-codebook (in bits) whose batch entropy LFQ computes: 2**16 floats
# per token is already 5 GiB for a batch of 20k tokens.
_MAX_ENTROPY_GROUP_BITS = 16


class LFQ(nnx.Module):
  """Lookup-free quantization: each of `bits` channels becomes +-1.

  Args:
    config: `config.model.lfq` (bits, entropy_groups, entropy_weight,
      diversity_weight, entropy_anneal_steps, entropy_anneal_factor,
      entropy_temperature, commitment_weight).
  """

  def __init__(self, config: ml_collections.ConfigDict):
    self.bits = int(config.bits)
    if not 1 <= self.bits <= 24:
      raise ValueError(f'LFQ bits must be in [1, 24], got {self.bits}')
    # Workdirs written before sub-codebook entropies existed have no such key.
    self.entropy_groups = int(config.get('entropy_groups', 1))
    if self.entropy_groups < 1 or self.bits % self.entropy_groups:
      raise ValueError(
        f'model.lfq.entropy_groups={self.entropy_groups} must divide model.lfq.bits={self.bits}.'
      )
    if self.bits // self.entropy_groups > _MAX_ENTROPY_GROUP_BITS:
      raise ValueError(
        f'model.lfq.bits={self.bits} in {self.entropy_groups} entropy group(s) gives '
        f'sub-codebooks of 2**{self.bits // self.entropy_groups} codes, whose batch entropy '
        'needs that many floats per token; raise model.lfq.entropy_groups so that bits / '
        f'groups <= {_MAX_ENTROPY_GROUP_BITS} (e.g. 2 for 18 bits).'
      )
    self.dim = self.bits
    self.codebook_size = 2**self.bits
    self.entropy_weight = float(config.entropy_weight)
    self.diversity_weight = float(config.diversity_weight)
    self.anneal_steps = int(config.entropy_anneal_steps)
    self.anneal_factor = float(config.entropy_anneal_factor)
    self.temperature = float(config.entropy_temperature)
    self.commitment_weight = float(config.commitment_weight)

  def entropy_weight_at(self, step: jax.Array | int) -> jax.Array:
    """`entropy_weight`, times `anneal_factor` at step 0 decaying linearly to 1x."""
    if self.anneal_steps <= 0:
      return jnp.float32(self.entropy_weight)
    remaining = jnp.clip(1.0 - jnp.asarray(step, jnp.float32) / self.anneal_steps, 0.0, 1.0)
    return self.entropy_weight * (1.0 + (self.anneal_factor - 1.0) * remaining)

  def entropies(self, z: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(mean per-token entropy, entropy of the batch-mean code distribution).

    The code distribution of a token is softmax(-||z - c||^2 / temperature)
    over the 2**bits codes c in {-1, 1}^bits. It factorises over bits, so the
    per-token entropy is a sum of Bernoulli entropies, exactly. The batch
    entropy costs O(tokens * 2**bits) over the whole codebook, too much at
    MAGVIT-v2's 18 bits; with `entropy_groups` = g it is the sum of the batch
    entropies of g sub-codebooks of bits / g bits each (Open-MAGVIT2's
    factorisation), an upper bound of the whole codebook's that is equal to it
    when the groups are independent, at O(tokens * g * 2**(bits / g)).
    """
    groups = self.entropy_groups
    group_bits = self.bits // groups
    # -||z - 1||^2 + ||z + 1||^2 = 4 z: the logit of a bit being +1.
    logits = 4.0 * z.reshape(-1, groups, group_bits) / self.temperature
    per_token = jnp.mean(jnp.sum(_binary_entropy(logits), axis=(-2, -1)))
    code_bits = (jnp.arange(2**group_bits)[:, None] >> jnp.arange(group_bits)) & 1
    log_p1 = jax.nn.log_sigmoid(logits)
    log_p0 = jax.nn.log_sigmoid(-logits)
    # [tokens, groups, 2**group_bits]: log-probability of each sub-codebook code.
    log_probs = jnp.sum(log_p0, -1, keepdims=True) + (log_p1 - log_p0) @ code_bits.T.astype(
      jnp.float32
    )
    mean_probs = jnp.mean(jnp.exp(log_probs), axis=0)
    batch = -jnp.sum(mean_probs * jnp.log(jnp.maximum(mean_probs, 1e-30)))
    return per_token, batch

  def __call__(self, z, *, step=0, train=False, rng=None) -> QuantizerOutput:
    z = z.astype(jnp.float32)
    signs = jnp.where(z > 0, 1.0, -1.0)
    quantized = straight_through(z, signs)
    codes = jnp.sum((z > 0).astype(jnp.int32) << jnp.arange(self.bits), axis=-1)
    commitment = jnp.mean(jnp.square(z - jax.lax.stop_gradient(signs)))
    per_token, batch = self.entropies(z)
    entropy_loss = per_token - self.diversity_weight * batch
    weight = self.entropy_weight_at(step)
    loss = self.commitment_weight * commitment + weight * entropy_loss
    metrics = usage_metrics(code_counts(codes, self.codebook_size))
    metrics.update(
      {
        'lfq_commitment': commitment,
        'lfq_token_entropy': per_token,
        'lfq_batch_entropy': batch,
        'lfq_entropy_weight': weight,
      }
    )
    return QuantizerOutput(quantized, codes.astype(jnp.int32), loss, metrics)

  def codes_to_embeddings(self, codes: jax.Array) -> jax.Array:
    bits = (codes[..., None] >> jnp.arange(self.bits)) & 1
    return bits.astype(jnp.float32) * 2.0 - 1.0


def _l2_normalize(x: jax.Array) -> jax.Array:
  return x * jax.lax.rsqrt(jnp.maximum(jnp.sum(jnp.square(x), -1, keepdims=True), 1e-12))


class VQ(nnx.Module):
  """Vector quantization with an EMA codebook on the unit sphere.

  `usage` holds the EMA of each code's share of tokens relative to uniform
  use (1.0 = used as often as a uniform codebook would be); `embed_sum` the
  EMA of the sum of latents assigned to each code, whose direction is the
  code. A code whose usage falls below `dead_code_threshold` is restarted at
  a random latent of the batch with usage 1.

  Args:
    config: `config.model.vq` (codebook_size, dim, ema_decay,
      dead_code_threshold, commitment_weight).
    rngs: for the initial codebook.
  """

  def __init__(self, config: ml_collections.ConfigDict, *, rngs: nnx.Rngs):
    self.codebook_size = int(config.codebook_size)
    self.dim = int(config.dim)
    self.decay = float(config.ema_decay)
    self.dead_code_threshold = float(config.dead_code_threshold)
    self.commitment_weight = float(config.commitment_weight)
    init = sharding.with_logical(nnx.initializers.normal(1.0), ('codebook', None))
    self.embed_sum = CodebookState(init(rngs.params(), (self.codebook_size, self.dim)))
    ones = sharding.with_logical(nnx.initializers.ones, ('codebook',))
    self.usage = CodebookState(ones(rngs.params(), (self.codebook_size,)))

  def codebook(self) -> jax.Array:
    """float32 [codebook_size, dim], unit-norm codes."""
    return _l2_normalize(self.embed_sum[...])

  def __call__(self, z, *, step=0, train=False, rng=None) -> QuantizerOutput:
    z = _l2_normalize(z.astype(jnp.float32))
    codebook = self.codebook()
    similarity = jnp.einsum('...d,kd->...k', z, codebook)
    codes = jnp.argmax(similarity, axis=-1).astype(jnp.int32)
    selected = codebook[codes]
    commitment = jnp.mean(jnp.sum(jnp.square(z - jax.lax.stop_gradient(selected)), -1))
    counts = code_counts(codes, self.codebook_size)
    metrics = usage_metrics(counts)
    metrics['vq_commitment'] = commitment
    if train:
      metrics['vq_restarted_codes'] = self._update(z, codes, counts, rng)
    return QuantizerOutput(
      straight_through(z, selected), codes, self.commitment_weight * commitment, metrics
    )

  def _update(
    self, z: jax.Array, codes: jax.Array, counts: jax.Array, rng: jax.Array | None
  ) -> jax.Array:
    """EMA codebook step and dead-code restarts; returns the restarted fraction."""
    flat = jax.lax.stop_gradient(z.reshape(-1, self.dim))
    sums = jax.ops.segment_sum(flat, codes.reshape(-1), num_segments=self.codebook_size)
    share = counts * self.codebook_size / flat.shape[0]
    usage = self.decay * self.usage[...] + (1 - self.decay) * share
    embed_sum = self.decay * self.embed_sum[...] + (1 - self.decay) * sums
    dead = usage < self.dead_code_threshold
    if rng is not None:
      picks = jax.random.randint(rng, (self.codebook_size,), 0, flat.shape[0])
      embed_sum = jnp.where(dead[:, None], flat[picks], embed_sum)
      usage = jnp.where(dead, 1.0, usage)
    self.embed_sum[...] = embed_sum
    self.usage[...] = usage
    return jnp.mean(dead.astype(jnp.float32)) if rng is not None else jnp.float32(0.0)

  def codes_to_embeddings(self, codes: jax.Array) -> jax.Array:
    return self.codebook()[codes]


def create_quantizer(config: ml_collections.ConfigDict, *, rngs: nnx.Rngs) -> Quantizer:
  """The quantizer `config.quantizer` names ('fsq', 'lfq' or 'vq').

  Args:
    config: `config.model`.
    rngs: initialisation keys (VQ's codebook).
  """
  if config.quantizer == 'fsq':
    # Workdirs written before the commitment loss existed have no such key.
    return FSQ(config.fsq.levels, config.fsq.get('commitment_weight', 0.0))
  if config.quantizer == 'lfq':
    return LFQ(config.lfq)
  if config.quantizer == 'vq':
    return VQ(config.vq, rngs=rngs)
  raise ValueError(f"Unknown model.quantizer {config.quantizer!r}; valid: 'fsq', 'lfq', 'vq'")
