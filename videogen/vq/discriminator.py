"""A 3D convolutional discriminator for the tokenizer's adversarial loss.

StyleGAN-like, as in MAGVIT-v2 but without blur pooling: per level a 3x3x3
conv, leaky ReLU, and a stride-2 conv (time, height, width), with a residual
1x1x1 path; then global average pooling and a two-layer head to one logit
per clip. It reuses the tokenizer's causal convolution (fast on CPU, and a
1-frame clip is a valid input).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import ml_collections
from flax import nnx

from videogen.parallel import sharding
from videogen.vq import layers


def _leaky_relu(x: jax.Array) -> jax.Array:
  return jax.nn.leaky_relu(x, 0.2)


class DiscriminatorBlock(nnx.Module):
  """conv -> lrelu -> stride-2 conv -> lrelu, plus a strided 1x1x1 skip."""

  def __init__(self, in_channels: int, out_channels: int, *, dtype: jnp.dtype, rngs: nnx.Rngs):
    self.conv = layers.CausalConv3d(in_channels, out_channels, dtype=dtype, rngs=rngs)
    self.down = layers.CausalConv3d(
      out_channels, out_channels, strides=(2, 2, 2), dtype=dtype, rngs=rngs
    )
    self.skip = layers.CausalConv3d(
      in_channels, out_channels, (1, 1, 1), (2, 2, 2), dtype=dtype, rngs=rngs
    )

  def __call__(self, x: jax.Array) -> jax.Array:
    """x: [b, t, h, w, in] -> [b, (t - 1) // 2 + 1, h / 2, w / 2, out]."""
    h = self.down(_leaky_relu(self.conv(x)))
    return layers.constrain((_leaky_relu(h) + self.skip(x)) / math.sqrt(2.0))

  def flops(self, shape: layers.Shape3) -> tuple[float, layers.Shape3]:
    conv, _ = self.conv.flops(shape)
    down, out = self.down.flops(shape)
    skip, _ = self.skip.flops(shape)
    return conv + down + skip, out


class Discriminator(nnx.Module):
  """Clip -> one real/fake logit.

  Args:
    config: `config.loss.gan` (disc_channels, disc_channel_multipliers).
    dtype: compute dtype of the convolutions.
    rngs: parameter initialisation keys.
  """

  def __init__(
    self,
    config: ml_collections.ConfigDict,
    *,
    dtype: jnp.dtype = jnp.float32,
    rngs: nnx.Rngs,
  ):
    channels = [config.disc_channels * m for m in config.disc_channel_multipliers]
    self.conv_in = layers.CausalConv3d(3, channels[0], dtype=dtype, rngs=rngs)
    blocks = []
    current = channels[0]
    for width in channels:
      blocks.append(DiscriminatorBlock(current, width, dtype=dtype, rngs=rngs))
      current = width
    self.blocks = nnx.List(blocks)
    init = sharding.with_logical(nnx.initializers.lecun_normal(), ('conv_in', 'conv_out'))
    bias = sharding.with_logical(nnx.initializers.zeros, ('conv_out',))
    self.dense = nnx.Linear(current, current, kernel_init=init, bias_init=bias, rngs=rngs)
    self.logit = nnx.Linear(current, 1, kernel_init=init, bias_init=bias, rngs=rngs)

  def __call__(self, video: jax.Array) -> jax.Array:
    """video: float [batch, T, H, W, 3] in [-1, 1] -> float32 logits [batch]."""
    x = _leaky_relu(self.conv_in(video))
    for block in self.blocks:
      x = block(x)
    pooled = jnp.mean(x.astype(jnp.float32), axis=(1, 2, 3))
    return self.logit(_leaky_relu(self.dense(pooled)))[:, 0]

  def flops(self, num_frames: int, height: int, width: int) -> float:
    """Forward FLOPs of one clip of [T, H, W] (convolutions only)."""
    flops, _ = layers.sum_flops([self.conv_in, *self.blocks], (num_frames, height, width))
    return flops
