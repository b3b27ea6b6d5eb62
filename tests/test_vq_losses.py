"""Loss terms, the discriminator and the pluggable perceptual loss."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import nnx
from safetensors.numpy import save_file

from videogen.vq import config as vq_config
from videogen.vq import losses
from videogen.vq.discriminator import Discriminator
from videogen.vq.perceptual import VGG16_BLOCKS, PerceptualLoss


def test_reconstruction_loss_kinds():
  video = jnp.zeros((1, 1, 2, 2, 3))
  recon = jnp.full((1, 1, 2, 2, 3), 0.5)
  terms = losses.reconstruction_terms(video, recon)
  np.testing.assert_allclose(terms['recon_l1'], 0.5)
  np.testing.assert_allclose(terms['recon_l2'], 0.25)
  config = ml_collections.ConfigDict({'recon': 'l1+l2', 'l1_weight': 2.0, 'l2_weight': 4.0})
  np.testing.assert_allclose(losses.reconstruction_loss(config, terms), 2.0)
  config.recon = 'l2'
  np.testing.assert_allclose(losses.reconstruction_loss(config, terms), 1.0)
  config.recon = 'l3'
  with pytest.raises(ValueError, match='loss.recon'):
    losses.reconstruction_loss(config, terms)


def test_gan_losses():
  real, fake = jnp.asarray([2.0, 0.5]), jnp.asarray([-2.0, 0.0])
  # Hinge: relu(1 - real) = [0, 0.5], relu(1 + fake) = [0, 1].
  np.testing.assert_allclose(losses.discriminator_loss(real, fake, 'hinge'), 0.25 + 0.5)
  np.testing.assert_allclose(losses.generator_loss(fake, 'hinge'), 1.0)
  expected = np.mean(np.log1p(np.exp(-np.asarray(real)))) + np.mean(
    np.log1p(np.exp(np.asarray(fake)))
  )
  np.testing.assert_allclose(
    losses.discriminator_loss(real, fake, 'non_saturating'), expected, rtol=1e-6
  )
  with pytest.raises(ValueError, match='loss.gan.loss'):
    losses.generator_loss(fake, 'wasserstein')


def test_lecam_and_adaptive_weight():
  # Real logits above the fake EMA and fake logits below the real EMA are penalised.
  value = losses.lecam_regularizer(
    jnp.asarray([1.0]),
    jnp.asarray([-1.0]),
    ema_real=jnp.float32(-0.5),
    ema_fake=jnp.float32(0.5),
  )
  np.testing.assert_allclose(value, 0.5**2 + 0.5**2)
  assert float(losses.lecam_regularizer(jnp.zeros(1), jnp.ones(1), 1.0, 0.0)) == 0.0
  weight = losses.adaptive_weight(jnp.full((4,), 3.0), jnp.full((4,), 1.0), 1e4)
  np.testing.assert_allclose(weight, 3.0, rtol=1e-3)
  assert float(losses.adaptive_weight(jnp.ones(4), jnp.zeros(4), 10.0)) == 10.0


def test_discriminator_logits_per_clip():
  config = vq_config.loss_config().gan
  config.disc_channels = 4
  config.disc_channel_multipliers = (1, 2)
  disc = Discriminator(config, rngs=nnx.Rngs(0))
  video = jax.random.uniform(jax.random.key(0), (3, 5, 16, 16, 3), minval=-1, maxval=1)
  logits = jax.jit(lambda v: disc(v))(video)
  assert logits.shape == (3,) and logits.dtype == jnp.float32
  assert disc.flops(5, 16, 16) > 0


def _write_weights(path, channels=(4, 4, 8, 8, 8)) -> None:
  """A VGG16-shaped (but narrow) random LPIPS weights file."""
  rng = np.random.default_rng(0)
  weights = {}
  previous = 3
  for block, (indices, width) in enumerate(zip(VGG16_BLOCKS, channels, strict=True)):
    for index in indices:
      weights[f'features.{index}.weight'] = rng.normal(0, 0.3, (width, previous, 3, 3)).astype(
        np.float32
      )
      weights[f'features.{index}.bias'] = np.zeros(width, np.float32)
      previous = width
    weights[f'lin{block}.model.1.weight'] = rng.uniform(0, 1, (1, width, 1, 1)).astype(np.float32)
  save_file(weights, str(path))


def test_perceptual_loss_from_a_weights_file(tmp_path):
  path = tmp_path / 'lpips.safetensors'
  _write_weights(path)
  loss = PerceptualLoss.load(str(path))
  video = jax.random.uniform(jax.random.key(0), (2, 2, 32, 32, 3), minval=-1, maxval=1)
  other = jnp.roll(video, 3, axis=3)
  distance = jax.jit(loss.__call__)
  assert float(distance(video, video)) == pytest.approx(0.0, abs=1e-6)
  assert float(distance(video, other)) > 0.0
  grad = jax.jit(jax.grad(lambda x: loss(video, x)))(other)
  assert bool(jnp.all(jnp.isfinite(grad))) and float(jnp.max(jnp.abs(grad))) > 0


def test_perceptual_loss_errors(tmp_path):
  with pytest.raises(FileNotFoundError, match='perceptual_weights'):
    PerceptualLoss.load(str(tmp_path / 'missing.safetensors'))
  path = tmp_path / 'partial.npz'
  np.savez(path, **{'features.0.weight': np.zeros((4, 3, 3, 3), np.float32)})
  with pytest.raises(ValueError, match='VGG16 layout'):
    PerceptualLoss.load(str(path))
