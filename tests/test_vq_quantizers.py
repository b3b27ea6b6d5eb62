"""FSQ, LFQ and VQ: code ranges, code <-> embedding consistency, gradients, losses."""

from __future__ import annotations

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from videogen.vq import config as vq_config
from videogen.vq import quantizers


def make(name: str, **overrides):
  config = vq_config.model_config('tiny', name)
  for key, value in overrides.items():
    section, field = key.split('.')
    config[section][field] = value
  return quantizers.create_quantizer(config, rngs=nnx.Rngs(0))


def latents(dim: int, scale: float = 2.0, seed: int = 0) -> jax.Array:
  return scale * jax.random.normal(jax.random.key(seed), (4, 3, 5, 5, dim))


@pytest.mark.parametrize('name', ['fsq', 'lfq', 'vq'])
def test_codes_in_range_and_embeddings_match(name):
  quantizer = make(name)
  z = latents(quantizer.dim)
  out = jax.jit(lambda x: quantizer(x))(z)
  assert out.codes.dtype == jnp.int32 and out.codes.shape == z.shape[:-1]
  assert int(out.codes.min()) >= 0 and int(out.codes.max()) < quantizer.codebook_size
  assert out.quantized.shape == z.shape and out.loss.shape == ()
  embeddings = jax.jit(quantizer.codes_to_embeddings)(out.codes)
  np.testing.assert_allclose(embeddings, out.quantized, atol=1e-5)
  assert 0.0 < float(out.metrics['codebook_usage']) <= 1.0
  assert 1.0 <= float(out.metrics['perplexity']) <= quantizer.codebook_size


def test_fsq_levels_and_bijection():
  quantizer = make('fsq', **{'fsq.levels': (8, 5, 5, 5)})
  assert quantizer.codebook_size == 1000 and quantizer.dim == 4
  # Every code maps to an embedding that quantizes back to itself.
  codes = jnp.arange(1000)
  embeddings = quantizer.codes_to_embeddings(codes)
  assert len({tuple(row) for row in np.asarray(embeddings).round(4)}) == 1000
  half_width = jnp.asarray([4.0, 2.0, 2.0, 2.0])
  # Invert the bound: the latent whose bounded value is the rounded level.
  levels = jnp.asarray([8.0, 5.0, 5.0, 5.0])
  half_l = (levels - 1) * (1 - 1e-3) / 2
  offset = jnp.where(levels % 2 == 1, 0.0, 0.5)
  rounded = embeddings * half_width
  target = rounded - 0.1 * jnp.sign(rounded)  # Inside the rounding cell and tanh's range.
  z = jnp.arctanh((target + offset) / half_l) - jnp.arctanh(offset / half_l)
  np.testing.assert_array_equal(quantizer(z).codes, codes)
  # Large latents saturate at the extreme levels, never outside them.
  extremes = quantizer(jnp.asarray([[100.0] * 4, [-100.0] * 4])).quantized
  np.testing.assert_allclose(extremes, [[0.75, 1, 1, 1], [-1, -1, -1, -1]])


def test_fsq_straight_through_gradient():
  quantizer = make('fsq')
  z = latents(quantizer.dim, scale=0.7)
  weights = jax.random.normal(jax.random.key(1), z.shape)
  grad = jax.jit(jax.grad(lambda x: jnp.sum(quantizer(x).quantized * weights)))(z)
  half_width = jnp.asarray([4.0, 2.0, 2.0, 2.0])
  expected = jax.grad(lambda x: jnp.sum(quantizer.bound(x) / half_width * weights))(z)
  np.testing.assert_allclose(grad, expected, rtol=1e-5, atol=1e-6)
  assert float(jnp.mean(jnp.abs(grad))) > 0.01


def test_fsq_commitment_loss_pulls_latents_to_bin_centres():
  z = latents(4, scale=0.7)
  assert float(make('fsq', **{'fsq.commitment_weight': 0.0})(z).loss) == 0.0  # Paper FSQ.
  quantizer = make('fsq', **{'fsq.commitment_weight': 0.5})
  out = quantizer(z)
  bounded = quantizer.bound(z)
  distance = jnp.abs(bounded - jnp.round(bounded))
  np.testing.assert_allclose(out.metrics['commitment'], jnp.mean(distance**2), rtol=1e-6)
  np.testing.assert_allclose(out.loss, 0.5 * jnp.mean(distance**2), rtol=1e-6)
  # Gradient steps on the loss alone move every value towards the centre of
  # its own bin (so its code does not change) and off the bin edges.
  grad_fn = jax.jit(jax.grad(lambda x: quantizer(x).loss * x.size))
  stepped = z
  for _ in range(20):
    stepped = stepped - 0.02 * grad_fn(stepped)
  new_bounded = quantizer.bound(stepped)
  np.testing.assert_array_equal(quantizer(stepped).codes, out.codes)
  new_distance = jnp.abs(new_bounded - jnp.round(new_bounded))
  assert bool(jnp.all(new_distance <= distance + 1e-6))
  assert float(jnp.mean(new_distance)) < 0.5 * float(jnp.mean(distance))


def test_fsq_from_a_config_written_before_the_commitment_loss():
  config = vq_config.model_config('tiny', 'fsq')
  del config.fsq['commitment_weight']  # As in workdirs trained before the key existed.
  quantizer = quantizers.create_quantizer(config, rngs=nnx.Rngs(0))
  assert quantizer.commitment_weight == 0.0
  assert float(quantizer(latents(4)).loss) == 0.0


def test_lfq_straight_through_gradient_and_signs():
  quantizer = make('lfq', **{'lfq.bits': 6})
  z = latents(6)
  out = jax.jit(lambda x: quantizer(x))(z)
  assert set(np.unique(np.asarray(out.quantized)).tolist()) == {-1.0, 1.0}
  weights = jax.random.normal(jax.random.key(1), z.shape)
  grad = jax.jit(jax.grad(lambda x: jnp.sum(quantizer(x).quantized * weights)))(z)
  np.testing.assert_allclose(grad, weights, rtol=1e-6)
  # The auxiliary loss has a gradient too (commitment + entropy).
  aux_grad = jax.jit(jax.grad(lambda x: quantizer(x, step=0).loss))(z)
  assert float(jnp.max(jnp.abs(aux_grad))) > 0


def test_lfq_entropies_match_brute_force():
  bits = 3
  quantizer = make('lfq', **{'lfq.bits': bits, 'lfq.entropy_temperature': 0.5})
  z = 0.5 * jax.random.normal(jax.random.key(2), (64, bits))
  per_token, batch = jax.jit(quantizer.entropies)(z)
  codebook = jnp.asarray(list(itertools.product([-1.0, 1.0], repeat=bits)))
  distances = jnp.sum(jnp.square(z[:, None] - codebook[None]), -1)
  probs = jax.nn.softmax(-distances / 0.5, axis=-1)
  token_entropy = jnp.mean(-jnp.sum(probs * jnp.log(probs), -1))
  mean = jnp.mean(probs, 0)
  np.testing.assert_allclose(per_token, token_entropy, rtol=1e-4)
  np.testing.assert_allclose(batch, -jnp.sum(mean * jnp.log(mean)), rtol=1e-4)
  assert float(batch) <= bits * math.log(2) + 1e-5


def test_lfq_sub_codebook_entropies_match_brute_force():
  """With 2 groups the batch entropy is the sum over the two halves' marginals."""
  bits, temperature = 4, 0.5
  quantizer = make(
    'lfq', **{'lfq.bits': bits, 'lfq.entropy_groups': 2, 'lfq.entropy_temperature': temperature}
  )
  z = 0.5 * jax.random.normal(jax.random.key(3), (64, bits))
  per_token, batch = jax.jit(quantizer.entropies)(z)
  codebook = jnp.asarray(list(itertools.product([-1.0, 1.0], repeat=bits)))
  distances = jnp.sum(jnp.square(z[:, None] - codebook[None]), -1)
  probs = jax.nn.softmax(-distances / temperature, axis=-1).reshape(-1, 4, 4)
  token_entropy = jnp.mean(-jnp.sum(probs * jnp.log(probs), (-2, -1)))
  expected = 0.0
  for marginal in (probs.sum(2), probs.sum(1)):  # First and last two bits.
    mean = jnp.mean(marginal, 0)
    expected += -jnp.sum(mean * jnp.log(mean))
  np.testing.assert_allclose(per_token, token_entropy, rtol=1e-4)
  np.testing.assert_allclose(batch, expected, rtol=1e-4)
  with pytest.raises(ValueError, match='entropy_groups=3 must divide model.lfq.bits=4'):
    make('lfq', **{'lfq.bits': 4, 'lfq.entropy_groups': 3})
  with pytest.raises(
    ValueError, match=r'sub-codebooks of 2\*\*18 codes.*raise model.lfq.entropy_groups'
  ):
    make('lfq', **{'lfq.bits': 18})
  assert make('lfq', **{'lfq.bits': 18, 'lfq.entropy_groups': 2}).codebook_size == 2**18


def test_lfq_entropy_weight_anneals():
  quantizer = make(
    'lfq',
    **{
      'lfq.entropy_weight': 0.1,
      'lfq.entropy_anneal_steps': 100,
      'lfq.entropy_anneal_factor': 3.0,
    },
  )
  np.testing.assert_allclose(quantizer.entropy_weight_at(0), 0.3, rtol=1e-6)
  np.testing.assert_allclose(quantizer.entropy_weight_at(50), 0.2, rtol=1e-6)
  np.testing.assert_allclose(quantizer.entropy_weight_at(1000), 0.1, rtol=1e-6)


def test_vq_straight_through_and_commitment():
  quantizer = make('vq', **{'vq.codebook_size': 16, 'vq.dim': 4})
  z = latents(4)
  out = jax.jit(lambda x: quantizer(x))(z)
  norms = jnp.linalg.norm(out.quantized, axis=-1)
  np.testing.assert_allclose(norms, 1.0, rtol=1e-5)
  weights = jax.random.normal(jax.random.key(1), z.shape)
  # Straight through the code lookup: the gradient is that of l2-normalising z.
  grad = jax.jit(jax.grad(lambda x: jnp.sum(quantizer(x).quantized * weights)))(z)
  normalize = lambda x: x / jnp.linalg.norm(x, axis=-1, keepdims=True)
  expected = jax.grad(lambda x: jnp.sum(normalize(x) * weights))(z)
  np.testing.assert_allclose(grad, expected, rtol=1e-4, atol=1e-6)
  assert float(out.loss) > 0


def test_vq_ema_update_and_dead_code_restart():
  quantizer = make(
    'vq',
    **{
      'vq.codebook_size': 16,
      'vq.dim': 4,
      'vq.ema_decay': 0.9,
      'vq.dead_code_threshold': 0.2,
    },
  )
  before = np.asarray(quantizer.embed_sum[...])
  z = latents(4)
  quantizer(z)  # Evaluation leaves the codebook alone.
  np.testing.assert_array_equal(quantizer.embed_sum[...], before)
  quantizer.usage[...] = quantizer.usage[...].at[:4].set(0.0)  # Four dead codes.
  out = quantizer(z, train=True, rng=jax.random.key(3))
  after = np.asarray(quantizer.embed_sum[...])
  assert not np.allclose(after, before)
  np.testing.assert_allclose(out.metrics['vq_restarted_codes'], 4 / 16)
  # Restarted codes are (normalised) latents of the batch, with usage reset to 1.
  flat = np.asarray(z.reshape(-1, 4))
  flat = flat / np.linalg.norm(flat, axis=-1, keepdims=True)
  for code in range(4):
    assert np.min(np.linalg.norm(flat - after[code], axis=-1)) < 1e-5
  np.testing.assert_allclose(quantizer.usage[...][:4], 1.0)


def test_usage_metrics():
  metrics = quantizers.usage_metrics(jnp.asarray([5.0, 5.0, 5.0, 5.0]))
  np.testing.assert_allclose(metrics['perplexity'], 4.0, rtol=1e-6)
  np.testing.assert_allclose(metrics['codebook_usage'], 1.0)
  metrics = quantizers.usage_metrics(jnp.asarray([7.0, 0.0, 0.0, 0.0]))
  np.testing.assert_allclose(metrics['perplexity'], 1.0, rtol=1e-6)
  np.testing.assert_allclose(metrics['codebook_usage'], 0.25)


def test_unknown_quantizer_is_an_error():
  config = vq_config.model_config('tiny')
  config.quantizer = 'rvq'
  with pytest.raises(ValueError, match="'fsq', 'lfq', 'vq'"):
    quantizers.create_quantizer(config, rngs=nnx.Rngs(0))
