"""Loss terms of the tokenizer stage: reconstruction, adversarial, LeCam.

All functions are pure `jnp`, float32 in and out, and reduce to scalars.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections

RECON_KINDS = ('l1', 'l2', 'l1+l2')
GAN_KINDS = ('hinge', 'non_saturating')


def reconstruction_terms(video: jax.Array, reconstruction: jax.Array) -> dict[str, jax.Array]:
  """Mean absolute and squared pixel error.

  Args:
    video: float [batch, T, H, W, 3] targets in [-1, 1].
    reconstruction: float [batch, T, H, W, 3].

  Returns:
    {'recon_l1': scalar, 'recon_l2': scalar}, float32.
  """
  error = reconstruction.astype(jnp.float32) - video.astype(jnp.float32)
  return {'recon_l1': jnp.mean(jnp.abs(error)), 'recon_l2': jnp.mean(jnp.square(error))}


def reconstruction_loss(
  config: ml_collections.ConfigDict, terms: dict[str, jax.Array]
) -> jax.Array:
  """The weighted reconstruction loss `config.recon` selects.

  Args:
    config: `config.loss` (recon, l1_weight, l2_weight).
    terms: output of `reconstruction_terms`.
  """
  if config.recon not in RECON_KINDS:
    raise ValueError(f'Unknown loss.recon {config.recon!r}; valid: {RECON_KINDS}')
  loss = jnp.float32(0.0)
  if 'l1' in config.recon:
    loss += config.l1_weight * terms['recon_l1']
  if 'l2' in config.recon:
    loss += config.l2_weight * terms['recon_l2']
  return loss


def generator_loss(fake_logits: jax.Array, kind: str) -> jax.Array:
  """Adversarial loss of the generator (the decoder), from logits of fakes."""
  fake_logits = fake_logits.astype(jnp.float32)
  if kind == 'hinge':
    return -jnp.mean(fake_logits)
  if kind == 'non_saturating':
    return jnp.mean(jax.nn.softplus(-fake_logits))
  raise ValueError(f'Unknown loss.gan.loss {kind!r}; valid: {GAN_KINDS}')


def discriminator_loss(real_logits: jax.Array, fake_logits: jax.Array, kind: str) -> jax.Array:
  """Discriminator loss: real clips up, reconstructions down."""
  real_logits = real_logits.astype(jnp.float32)
  fake_logits = fake_logits.astype(jnp.float32)
  if kind == 'hinge':
    return jnp.mean(jax.nn.relu(1.0 - real_logits)) + jnp.mean(jax.nn.relu(1.0 + fake_logits))
  if kind == 'non_saturating':
    return jnp.mean(jax.nn.softplus(-real_logits)) + jnp.mean(jax.nn.softplus(fake_logits))
  raise ValueError(f'Unknown loss.gan.loss {kind!r}; valid: {GAN_KINDS}')


def lecam_regularizer(
  real_logits: jax.Array,
  fake_logits: jax.Array,
  ema_real: jax.Array,
  ema_fake: jax.Array,
) -> jax.Array:
  """LeCam regularisation (Tseng et al., 2021).

  Pulls real logits towards the EMA of fake logits and fake logits towards
  the EMA of real ones (only past them), which bounds the discriminator's
  confidence and stabilises GAN training with little data.
  """
  real_logits = real_logits.astype(jnp.float32)
  fake_logits = fake_logits.astype(jnp.float32)
  return jnp.mean(jnp.square(jax.nn.relu(real_logits - ema_fake))) + jnp.mean(
    jnp.square(jax.nn.relu(ema_real - fake_logits))
  )


def adaptive_weight(recon_grad: jax.Array, gan_grad: jax.Array, max_weight: float) -> jax.Array:
  """VQGAN's balance: ||grad recon|| / ||grad gan|| at the last decoder layer.

  Args:
    recon_grad: gradient of the reconstruction (+ perceptual) loss w.r.t. the
      decoder's last kernel.
    gan_grad: gradient of the generator's adversarial loss w.r.t. it.
    max_weight: upper clip.

  Returns:
    A float32 scalar in [0, max_weight], without gradient.
  """
  weight = jnp.linalg.norm(recon_grad.ravel()) / (jnp.linalg.norm(gan_grad.ravel()) + 1e-4)
  return jax.lax.stop_gradient(jnp.clip(weight, 0.0, max_weight))
