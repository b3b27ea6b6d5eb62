"""The video tokenizer: causal 3D-CNN encoder, quantizer, mirrored decoder.

Shapes: a clip of T = 1 + temporal_downsample * k frames of H x W pixels maps
to latents of 1 + k frames of H / spatial_downsample x W / spatial_downsample,
one token each; decoding gives back exactly T frames. A 1-frame clip (an
image) is encoded on its own, so images and videos share one model.

Layout (MAGVIT-v2): conv_in -> per level: residual blocks, then a strided
downsample (space at the first levels, space and time at the deepest ones)
-> bottom residual blocks -> norm, swish, 1x1x1 conv to the quantizer's
dimension. The decoder mirrors it with depth-to-space upsampling.
"""

from __future__ import annotations

import math

import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
from flax import nnx

from videogen.parallel import (
  compilation,
  sharding,  # noqa: F401  (turns eager sharding off)
)
from videogen.vq import layers, quantizers

Shape3 = layers.Shape3


def _log2(value: int, what: str) -> int:
  exponent = int(round(math.log2(value))) if value > 0 else -1
  if value < 1 or 2**exponent != value:
    raise ValueError(f'{what} must be a power of 2, got {value}')
  return exponent


def resampling_schedule(config: ml_collections.ConfigDict) -> list[tuple[int, int]]:
  """(time_stride, space_stride) of each downsampling slot, shallowest first.

  There is one slot between consecutive levels (len(channel_multipliers) - 1).
  Space is halved at the first log2(spatial_downsample) slots and time at the
  last log2(temporal_downsample) ones, so the costly full-resolution levels
  run on few channels and temporal mixing happens on small feature maps.
  """
  slots = len(config.channel_multipliers) - 1
  space = _log2(config.spatial_downsample, 'model.spatial_downsample')
  time = _log2(config.temporal_downsample, 'model.temporal_downsample')
  if max(space, time) > slots:
    raise ValueError(
      f'model.channel_multipliers {tuple(config.channel_multipliers)} gives {slots} '
      f'downsampling slots, but spatial_downsample={config.spatial_downsample} and '
      f'temporal_downsample={config.temporal_downsample} need {max(space, time)}; '
      'add levels to channel_multipliers.'
    )
  return [(2 if i >= slots - time else 1, 2 if i < space else 1) for i in range(slots)]


class Encoder(nnx.Module):
  """video [b, T, H, W, 3] -> latents [b, t, h, w, latent_dim] (float32)."""

  def __init__(
    self,
    config: ml_collections.ConfigDict,
    latent_dim: int,
    *,
    dtype: jnp.dtype,
    rngs: nnx.Rngs,
  ):
    channels = [config.channels * m for m in config.channel_multipliers]
    groups = config.norm_groups
    schedule = resampling_schedule(config)
    self.conv_in = layers.CausalConv3d(3, channels[0], dtype=dtype, rngs=rngs)
    blocks = []
    current = channels[0]
    for level, width in enumerate(channels):
      for _ in range(config.num_res_blocks):
        blocks.append(layers.ResBlock(current, width, groups, dtype=dtype, rngs=rngs))
        current = width
      if level < len(schedule):
        time_stride, space_stride = schedule[level]
        blocks.append(
          layers.Downsample(
            current,
            channels[level + 1],
            time_stride,
            space_stride,
            dtype=dtype,
            rngs=rngs,
          )
        )
        current = channels[level + 1]
    for _ in range(config.num_res_blocks):
      blocks.append(layers.ResBlock(current, current, groups, dtype=dtype, rngs=rngs))
    self.blocks = nnx.List(blocks)
    self.norm_out = layers.GroupNormSwish(current, groups, rngs=rngs)
    self.conv_out = layers.CausalConv3d(current, latent_dim, (1, 1, 1), dtype=dtype, rngs=rngs)

  def __call__(self, video: jax.Array) -> jax.Array:
    """video: [batch, T, H, W, 3] -> [batch, t, h, w, latent_dim] float32."""
    x = layers.constrain(self.conv_in(video))
    for block in self.blocks:
      x = block(x)
    x = self.conv_out(self.norm_out(x))
    return layers.constrain(x.astype(jnp.float32))

  def flops(self, shape: Shape3) -> tuple[float, Shape3]:
    return layers.sum_flops([self.conv_in, *self.blocks, self.conv_out], shape)


class Decoder(nnx.Module):
  """quantized latents [b, t, h, w, latent_dim] -> video [b, T, H, W, 3]."""

  def __init__(
    self,
    config: ml_collections.ConfigDict,
    latent_dim: int,
    *,
    dtype: jnp.dtype,
    rngs: nnx.Rngs,
  ):
    channels = [config.channels * m for m in config.channel_multipliers]
    groups = config.norm_groups
    schedule = resampling_schedule(config)
    current = channels[-1]
    self.conv_in = layers.CausalConv3d(latent_dim, current, dtype=dtype, rngs=rngs)
    blocks = []
    for _ in range(config.num_res_blocks):
      blocks.append(layers.ResBlock(current, current, groups, dtype=dtype, rngs=rngs))
    for level in reversed(range(len(channels))):
      for _ in range(config.num_res_blocks):
        blocks.append(layers.ResBlock(current, channels[level], groups, dtype=dtype, rngs=rngs))
        current = channels[level]
      if level > 0:
        time_stride, space_stride = schedule[level - 1]
        blocks.append(
          layers.Upsample(
            current,
            channels[level - 1],
            time_stride,
            space_stride,
            dtype=dtype,
            rngs=rngs,
          )
        )
        current = channels[level - 1]
    self.blocks = nnx.List(blocks)
    self.norm_out = layers.GroupNormSwish(current, groups, rngs=rngs)
    self.conv_out = layers.CausalConv3d(current, 3, dtype=dtype, rngs=rngs)

  def features(self, latents: jax.Array) -> jax.Array:
    """Everything but the last conv: [b, t, h, w, d] -> [b, T, H, W, channels]."""
    x = layers.constrain(self.conv_in(latents))
    for block in self.blocks:
      x = block(x)
    return self.norm_out(x)

  def __call__(self, latents: jax.Array) -> jax.Array:
    """latents: [batch, t, h, w, latent_dim] -> [batch, T, H, W, 3] float32."""
    return self.conv_out(self.features(latents)).astype(jnp.float32)

  def flops(self, shape: Shape3) -> tuple[float, Shape3]:
    return layers.sum_flops([self.conv_in, *self.blocks, self.conv_out], shape)


@flax.struct.dataclass
class AutoencoderOutput:
  """What a training forward pass returns.

  Attributes:
    reconstruction: float32 [batch, T, H, W, 3], not clipped.
    quantizer: the quantizer's output (codes, loss, metrics).
    features: float [batch, T, H, W, c], input of the decoder's last conv
      (for the GAN's adaptive weight).
  """

  reconstruction: jax.Array
  quantizer: quantizers.QuantizerOutput
  features: jax.Array


class VideoAutoencoder(nnx.Module):
  """Encoder + quantizer + decoder.

  Args:
    config: `config.model` (see `videogen.vq.config.model_config`).
    dtype: activation (compute) dtype of the convolutions; parameters, norms,
      latents and the quantizer stay float32.
    rngs: parameter initialisation keys.
  """

  def __init__(
    self,
    config: ml_collections.ConfigDict,
    *,
    dtype: jnp.dtype = jnp.float32,
    rngs: nnx.Rngs,
  ):
    self.temporal_downsample = config.temporal_downsample
    self.spatial_downsample = config.spatial_downsample
    resampling_schedule(config)  # Validates the sizes before building anything.
    self.quantizer = quantizers.create_quantizer(config, rngs=rngs)
    dim = self.quantizer.dim
    self.encoder = Encoder(config, dim, dtype=dtype, rngs=rngs)
    self.decoder = Decoder(config, dim, dtype=dtype, rngs=rngs)

  def __call__(
    self,
    video: jax.Array,
    *,
    step: jax.Array | int = 0,
    train: bool = False,
    rng: jax.Array | None = None,
  ) -> AutoencoderOutput:
    """Reconstructs `video` through the quantizer.

    Args:
      video: [batch, T, H, W, 3] in [-1, 1].
      step: the train step (for the quantizer's loss schedules).
      train: update the quantizer's codebook statistics (VQ's EMA).
      rng: key for codebook restarts when `train`.

    Returns:
      An AutoencoderOutput.
    """
    latents = self.encoder(video)
    quantized = self.quantizer(latents, step=step, train=train, rng=rng)
    features = self.decoder.features(quantized.quantized)
    reconstruction = self.decoder.conv_out(features).astype(jnp.float32)
    return AutoencoderOutput(reconstruction, quantized, features)

  def encode(self, video: jax.Array) -> jax.Array:
    """video: [batch, T, H, W, 3] in [-1, 1] -> int32 codes [batch, t, h, w]."""
    return self.quantizer(self.encoder(video)).codes

  def decode(self, codes: jax.Array) -> jax.Array:
    """codes: int32 [batch, t, h, w] -> float32 [batch, T, H, W, 3] in [-1, 1]."""
    latents = self.quantizer.codes_to_embeddings(codes)
    return jnp.clip(self.decoder(latents), -1.0, 1.0)

  def latent_shape(self, num_frames: int, height: int, width: int) -> Shape3:
    """(t, h, w) of the codes of a [T, H, W] clip; raises on sizes that do not fit."""
    if (num_frames - 1) % self.temporal_downsample or num_frames < 1:
      raise ValueError(
        f'{num_frames} frames do not tokenize: the tokenizer needs 1 + '
        f'{self.temporal_downsample} * k frames (e.g. 1, '
        f'{1 + self.temporal_downsample}, {1 + 4 * self.temporal_downsample}).'
      )
    if height % self.spatial_downsample or width % self.spatial_downsample:
      raise ValueError(
        f'Frames of {height}x{width} do not tokenize: height and width must be '
        f'multiples of spatial_downsample={self.spatial_downsample}.'
      )
    return (
      1 + (num_frames - 1) // self.temporal_downsample,
      height // self.spatial_downsample,
      width // self.spatial_downsample,
    )

  def num_frames_for(self, latent_frames: int) -> int:
    """Frames T that `latent_frames` latent frames decode to."""
    return 1 + (latent_frames - 1) * self.temporal_downsample

  def flops(self, num_frames: int, height: int, width: int) -> float:
    """Forward conv FLOPs (encoder + decoder) of one clip of [T, H, W]."""
    encoder_flops, latent = self.encoder.flops((num_frames, height, width))
    decoder_flops, _ = self.decoder.flops(latent)
    return encoder_flops + decoder_flops


def create_model(
  config: ml_collections.ConfigDict, rng: jax.Array, *, dtype: jnp.dtype = jnp.float32
) -> VideoAutoencoder:
  """Builds and initialises a model under one jit.

  Eager construction compiles every initializer separately (slow on CPU);
  this compiles one function.

  Args:
    config: `config.model`.
    rng: parameter key.
    dtype: activation dtype.
  """

  def build(key):
    return VideoAutoencoder(config, dtype=dtype, rngs=nnx.Rngs(params=key))

  graphdef = nnx.graphdef(nnx.eval_shape(lambda: build(jax.random.key(0))))
  state = compilation.run_once(lambda key: nnx.state(build(key)), rng)
  return nnx.merge(graphdef, state)
