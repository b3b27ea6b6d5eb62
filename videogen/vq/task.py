"""The tokenizer training stage: `TokenizerTask`.

One train step: encode -> quantize -> decode the batch, minimise the
reconstruction (+ perceptual) loss, the quantizer's loss and, once
`loss.gan.start_step` is reached, the adversarial loss; update the VQ
codebook statistics (model_state), the parameter EMA and, with the GAN on,
the discriminator. The GAN terms sit behind `lax.cond` on the step, so the
step is traced once and costs nothing extra before the GAN starts.
"""

from __future__ import annotations

import functools
import math
import os
from typing import Any, Iterable, Mapping

import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import nnx

from videogen.data.config import EVAL_MASK
from videogen.parallel import sharding
from videogen.train import optim
from videogen.train import state as state_lib
from videogen.train.task import Metrics, StepCost, Task, TrainState
from videogen.vq import discriminator as disc_lib
from videogen.vq import layers, losses, quantizers
from videogen.vq import metrics as eval_metrics
from videogen.vq.model import VideoAutoencoder
from videogen.vq.perceptual import PerceptualLoss

PyTree = Any
# Clips (original | reconstruction) in the eval grid video, and its speed.
NUM_SAMPLE_CLIPS = 4
SAMPLE_FPS = 8


@flax.struct.dataclass
class GanTrainState(TrainState):
  """TrainState plus the discriminator, when `loss.gan.enabled`.

  Attributes:
    disc_params: discriminator parameters (`nnx.State`).
    disc_opt_state: their optax state.
    lecam_ema_real: float32 scalar, EMA of the mean logit of real clips.
    lecam_ema_fake: float32 scalar, EMA of the mean logit of reconstructions.
  """

  disc_params: PyTree
  disc_opt_state: PyTree
  lecam_ema_real: jax.Array
  lecam_ema_fake: jax.Array


class TokenizerTask(Task):
  """Trains `VideoAutoencoder` (config.model) with config.loss.

  Args:
    config: the composed tokenizer config (`model`, `loss`, `data`,
      `optimizer`, ...).
    mesh: the device mesh the loop runs on.
  """

  def __init__(self, config: ml_collections.ConfigDict, mesh: jax.sharding.Mesh):
    super().__init__(config, mesh)
    self.dtype = jnp.dtype(config.compute_dtype)
    self.optimizer = optim.make_optimizer(config.optimizer, config.num_train_steps)
    self.schedule = optim.make_schedule(config.optimizer, config.num_train_steps)
    self.abstract_model = nnx.eval_shape(lambda: self._build_model(nnx.Rngs(0)))
    self.graphdef = nnx.split(self.abstract_model, nnx.Param, ...)[0]
    self.codebook_size = self.abstract_model.quantizer.codebook_size
    data = config.data
    self.latent_shape = self.abstract_model.latent_shape(data.num_frames, data.height, data.width)
    self.gan = config.loss.gan
    if self.gan.loss not in losses.GAN_KINDS:
      raise ValueError(f'Unknown loss.gan.loss {self.gan.loss!r}; valid: {losses.GAN_KINDS}')
    if self.gan.enabled:
      self.abstract_disc = nnx.eval_shape(lambda: self._build_disc(nnx.Rngs(0)))
      self.disc_graphdef = nnx.split(self.abstract_disc, nnx.Param)[0]
      self.disc_optimizer = optax.adam(
        self.gan.disc_learning_rate, b1=self.gan.disc_b1, b2=self.gan.disc_b2
      )
    path = config.loss.perceptual_weights
    self.perceptual = PerceptualLoss.load(os.path.expanduser(path)) if path else None
    self._eval_step = None

  def _build_model(self, rngs: nnx.Rngs) -> VideoAutoencoder:
    return VideoAutoencoder(self.config.model, dtype=self.dtype, rngs=rngs)

  def _build_disc(self, rngs: nnx.Rngs) -> disc_lib.Discriminator:
    return disc_lib.Discriminator(self.gan, dtype=self.dtype, rngs=rngs)

  # --- state -----------------------------------------------------------------

  def init_state(self, rng: jax.Array) -> TrainState:
    model_rng, disc_rng = jax.random.split(rng)
    model = self._build_model(nnx.Rngs(params=model_rng))
    _, params, model_state = nnx.split(model, nnx.Param, ...)
    if not self.gan.enabled:
      return state_lib.new_train_state(params, model_state, self.optimizer, self.config.optimizer)
    _, disc_params = nnx.split(self._build_disc(nnx.Rngs(params=disc_rng)), nnx.Param)
    return state_lib.new_train_state(
      params,
      model_state,
      self.optimizer,
      self.config.optimizer,
      state_class=GanTrainState,
      disc_params=disc_params,
      disc_opt_state=self.disc_optimizer.init(disc_params),
      lecam_ema_real=jnp.zeros((), jnp.float32),
      lecam_ema_fake=jnp.zeros((), jnp.float32),
    )

  # --- train step ------------------------------------------------------------

  def _recon_loss(self, video: jax.Array, reconstruction: jax.Array) -> tuple[jax.Array, Metrics]:
    """Weighted reconstruction (+ perceptual) loss and its terms."""
    terms = losses.reconstruction_terms(video, reconstruction)
    loss = losses.reconstruction_loss(self.config.loss, terms)
    if self.perceptual is not None:
      terms['perceptual'] = self.perceptual(video, reconstruction)
      loss += self.config.loss.perceptual_weight * terms['perceptual']
    return loss, terms

  def _generator_adversarial(
    self,
    disc_params: PyTree,
    video: jax.Array,
    reconstruction: jax.Array,
    features: jax.Array,
    head: layers.CausalConv3d,
  ) -> tuple[jax.Array, Metrics]:
    """The decoder's weighted adversarial loss (only traced under `lax.cond`)."""
    disc = nnx.merge(self.disc_graphdef, disc_params)

    def gan_loss(clips):
      return losses.generator_loss(disc(clips), self.gan.loss)

    loss = gan_loss(reconstruction)
    weight = jnp.float32(1.0)
    if self.gan.adaptive_weight:
      # Gradients of both losses w.r.t. the last decoder kernel, through the
      # last conv only: d(loss)/d(output) pulled back by the conv's VJP.
      fixed = jax.lax.stop_gradient(reconstruction)
      recon_grad_out = jax.grad(lambda r: self._recon_loss(video, r)[0])(fixed)
      gan_grad_out = jax.grad(gan_loss)(fixed)
      bias = jax.lax.stop_gradient(head.bias[...])
      features = jax.lax.stop_gradient(features).astype(jnp.float32)
      _, pullback = jax.vjp(
        lambda kernel: layers.causal_conv3d(features, kernel, bias, head.strides),
        jax.lax.stop_gradient(head.kernel[...]),
      )
      weight = losses.adaptive_weight(
        pullback(recon_grad_out)[0],
        pullback(gan_grad_out)[0],
        self.gan.max_adaptive_weight,
      )
    total = self.gan.weight * weight * loss
    return total, {'gan_generator_loss': loss, 'gan_adaptive_weight': weight}

  def train_step(
    self, state: TrainState, batch: Mapping[str, jax.Array], rng: jax.Array
  ) -> tuple[TrainState, Metrics]:
    video = layers.constrain(batch['video'].astype(jnp.float32))
    gan_on = self.gan.enabled
    gan_active = state.step >= self.gan.start_step if gan_on else None

    def loss_fn(params):
      model = nnx.merge(self.graphdef, params, state.model_state, copy=True)
      out = model(video, step=state.step, train=True, rng=rng)
      recon_loss, metrics = self._recon_loss(video, out.reconstruction)
      quantizer_loss = out.quantizer.loss
      total = recon_loss + self.config.loss.quantizer_weight * quantizer_loss
      metrics.update(out.quantizer.metrics, quantizer_loss=quantizer_loss)
      if gan_on:
        adversarial = functools.partial(
          self._generator_adversarial,
          state.disc_params,
          video,
          out.reconstruction,
          out.features,
          model.decoder.conv_out,
        )
        zeros = {
          'gan_generator_loss': jnp.float32(0.0),
          'gan_adaptive_weight': jnp.float32(0.0),
        }
        gan_loss, gan_metrics = jax.lax.cond(
          gan_active, adversarial, lambda: (jnp.float32(0.0), zeros)
        )
        total += gan_loss
        metrics.update(gan_metrics)
      new_model_state = nnx.state(model, nnx.Not(nnx.Param))
      return total, (metrics, new_model_state, out.reconstruction)

    (loss, (metrics, model_state, recon)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
      state.params
    )
    fields, update_metrics = state_lib.apply_gradients(
      state, grads, self.optimizer, self.schedule, self.config.optimizer
    )
    metrics.update(loss=loss, **update_metrics)
    new_state = state.replace(**fields, model_state=jax.lax.stop_gradient(model_state))
    if gan_on:
      new_state, disc_metrics = self._discriminator_step(
        new_state, video, jax.lax.stop_gradient(recon), gan_active
      )
      metrics.update(disc_metrics)
    return new_state, {k: jnp.asarray(v, jnp.float32) for k, v in metrics.items()}

  def _discriminator_step(
    self,
    state: GanTrainState,
    video: jax.Array,
    reconstruction: jax.Array,
    active: jax.Array,
  ) -> tuple[GanTrainState, Metrics]:
    """One discriminator update with LeCam, applied only when `active`."""
    gan = self.gan

    def update():
      def disc_loss_fn(disc_params):
        disc = nnx.merge(self.disc_graphdef, disc_params)
        real, fake = disc(video), disc(reconstruction)
        adversarial = losses.discriminator_loss(real, fake, gan.loss)
        lecam = losses.lecam_regularizer(real, fake, state.lecam_ema_real, state.lecam_ema_fake)
        return adversarial + gan.lecam_weight * lecam, (adversarial, lecam, real, fake)

      (_, (adversarial, lecam, real, fake)), grads = jax.value_and_grad(disc_loss_fn, has_aux=True)(
        state.disc_params
      )
      updates, opt_state = self.disc_optimizer.update(
        grads, state.disc_opt_state, state.disc_params
      )
      decay = gan.lecam_ema_decay
      mean_real, mean_fake = jnp.mean(real), jnp.mean(fake)
      metrics = {
        'gan_disc_loss': adversarial,
        'gan_lecam': lecam,
        'gan_logits_real': mean_real,
        'gan_logits_fake': mean_fake,
      }
      return (
        optax.apply_updates(state.disc_params, updates),
        opt_state,
        decay * state.lecam_ema_real + (1 - decay) * mean_real,
        decay * state.lecam_ema_fake + (1 - decay) * mean_fake,
        metrics,
      )

    def skip():
      zero = jnp.float32(0.0)
      metrics = {
        'gan_disc_loss': zero,
        'gan_lecam': zero,
        'gan_logits_real': zero,
        'gan_logits_fake': zero,
      }
      return (
        state.disc_params,
        state.disc_opt_state,
        state.lecam_ema_real,
        state.lecam_ema_fake,
        metrics,
      )

    disc_params, opt_state, ema_real, ema_fake, metrics = jax.lax.cond(active, update, skip)
    metrics['gan_active'] = active.astype(jnp.float32)
    return state.replace(
      disc_params=disc_params,
      disc_opt_state=opt_state,
      lecam_ema_real=ema_real,
      lecam_ema_fake=ema_fake,
    ), metrics

  # --- evaluation ------------------------------------------------------------

  def _make_eval_step(self):
    replicated = jax.sharding.NamedSharding(self.mesh, jax.sharding.PartitionSpec())
    with_ssim = min(self.config.data.height, self.config.data.width) >= 11

    def eval_step(params, model_state, video, weights):
      # weights: float32 [batch], 0 for the padding of a last, partial batch.
      model = nnx.merge(self.graphdef, params, model_state)
      out = model(layers.constrain(video))
      recon = jnp.clip(out.reconstruction, -1.0, 1.0)
      sums = {
        'psnr': jnp.sum(weights * eval_metrics.psnr(video, recon)),
        'count': jnp.sum(weights),
        'recon_l1': jnp.sum(weights * jnp.mean(jnp.abs(recon - video), axis=(1, 2, 3, 4))),
      }
      if with_ssim:
        sums['ssim'] = jnp.sum(weights * eval_metrics.ssim(video, recon))
      codes = out.quantizer.codes
      code_weights = jnp.broadcast_to(weights.reshape((-1,) + (1,) * (codes.ndim - 1)), codes.shape)
      counts = quantizers.code_counts(codes, self.codebook_size, code_weights)
      return sums, counts, video[:NUM_SAMPLE_CLIPS], recon[:NUM_SAMPLE_CLIPS]

    return jax.jit(eval_step, out_shardings=replicated)

  def evaluate(
    self,
    state: TrainState,
    batches: Iterable[Mapping[str, np.ndarray]],
    *,
    step: int,
    sample_dir: str | None,
  ) -> dict[str, float]:
    """PSNR, SSIM, L1 and codebook usage/perplexity over the eval batches.

    Uses the EMA parameters when kept. Writes `sample_dir/recon_{step:06d}`
    .gif and .mp4: rows of (original | reconstruction) of the first batch.
    """
    if self._eval_step is None:
      self._eval_step = self._make_eval_step()
    params = state_lib.eval_params(state)
    rules = self.config.logical_axis_rules
    sums = state_lib.EvalSums()
    counts = np.zeros(self.codebook_size, np.float64)
    samples = None
    with sharding.axis_rules(self.mesh, rules):
      for batch in batches:
        if EVAL_MASK not in batch:  # Batches without padding count every clip.
          batch = dict(batch, **{EVAL_MASK: np.ones(len(batch['video']), np.float32)})
        arrays = sharding.global_batch(batch, self.mesh, rules, keys=('video', EVAL_MASK))
        batch_sums, batch_counts, originals, recons = self._eval_step(
          params, state.model_state, arrays['video'], arrays[EVAL_MASK]
        )
        sums.add(batch_sums)
        counts += np.asarray(batch_counts)
        if samples is None:
          samples = (np.asarray(originals), np.asarray(recons))
    results = sums.means()
    usage = quantizers.usage_metrics(jnp.asarray(counts, jnp.float32))
    results.update({key: float(value) for key, value in usage.items()})
    if sample_dir is not None and samples is not None:
      self._write_samples(sample_dir, step, *samples)
    return results

  def _write_samples(
    self, sample_dir: str, step: int, originals: np.ndarray, recons: np.ndarray
  ) -> None:
    from videogen.data import video_io  # Pulls mediapy/Pillow: only when writing.

    os.makedirs(sample_dir, exist_ok=True)
    clips = [clip for pair in zip(originals, recons, strict=True) for clip in pair]
    for suffix in ('gif', 'mp4'):
      video_io.write_grid(
        os.path.join(sample_dir, f'recon_{step:06d}.{suffix}'),
        clips,
        fps=SAMPLE_FPS,
        columns=2,
      )

  # --- accounting ------------------------------------------------------------

  def step_cost(self, batch_size: int) -> StepCost:
    """Conv FLOPs of one step: 3x the forward (forward + backward).

    With the GAN on, the discriminator adds ~12 forward passes per clip
    (generator loss and its adaptive weight, each forward + backward; the
    discriminator update on real and fake clips); counted as if the GAN had
    started.
    """
    data = self.config.data
    frames = (data.num_frames, data.height, data.width)
    flops = 3.0 * self.abstract_model.flops(*frames)
    if self.gan.enabled:
      flops += 12.0 * self.abstract_disc.flops(*frames)
    return StepCost(flops=flops * batch_size, tokens=0, frames=batch_size * data.num_frames)

  def describe(self, state: TrainState) -> str:
    count = state_lib.count_params(state.params)
    model = self.config.model
    data = self.config.data
    latent = self.latent_shape
    text = (
      f'TokenizerTask: {model.variant} {model.quantizer} tokenizer, {count:,} parameters, '
      f'{self.codebook_size} codes, {data.num_frames}x{data.height}x{data.width} -> '
      f'{"x".join(map(str, latent))} tokens ({math.prod(latent)} per clip)'
    )
    if self.gan.enabled:
      disc_count = state_lib.count_params(state.disc_params)
      text += f', discriminator {disc_count:,} parameters from step {self.gan.start_step}'
    return text
