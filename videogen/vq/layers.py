"""Causal 3D-CNN building blocks of the tokenizer (MAGVIT-v2 style).

Causality in time is what lets one model tokenize images and videos: every
convolution pads only the past (by repeating the first frame), normalisation
is per frame, and temporal resampling keeps the first frame on its own. So the
latents of frames 0..k never depend on later frames, and a 1-frame video is an
image.

Every layer can report its FLOPs and output shape for an input size
(`flops(shape)`), which `VideoAutoencoder.flops` sums for MFU.
"""

from __future__ import annotations

import functools
import math
from typing import Sequence

import einops
import jax
import jax.numpy as jnp
from flax import nnx

from videogen.parallel import platform as platform_lib
from videogen.parallel import sharding

Shape3 = tuple[int, int, int]
ACTIVATION_AXES = ('batch', 'time', 'height', 'width', 'channels')
KERNEL_AXES = ('conv_kernel', 'conv_kernel', 'conv_kernel', 'conv_in', 'conv_out')


def constrain(x: jax.Array) -> jax.Array:
  """Shards a [batch, time, height, width, channels] activation by logical axes.

  A no-op without a mesh or on a 1-device mesh: there the constraints only
  hinder XLA:CPU (measured 4.5x slower train steps on one device).
  """
  mesh = sharding.current_mesh()
  if mesh is None or mesh.size == 1:
    return x
  return sharding.constrain(x, ACTIVATION_AXES)


def causal_conv3d(
  x: jax.Array, kernel: jax.Array, bias: jax.Array | None, strides: Shape3 = (1, 1, 1)
) -> jax.Array:
  """A 3D convolution that only looks at the current and past frames.

  Time is padded at the start with `kt - 1` copies of the first frame (so the
  first frame is convolved with itself alone); height and width get 'SAME'
  zero padding (`k // 2` each side).

  Args:
    x: [batch, time, height, width, in_channels].
    kernel: [kt, kh, kw, in_channels, out_channels].
    bias: [out_channels] or None.
    strides: (time, height, width) strides.

  Returns:
    [batch, (time - 1) // st + 1, ceil-ish(height / sh), ..., out_channels];
    for odd spatial kernels and even sizes, exactly height / sh.
  """
  kt, kh, kw = kernel.shape[:3]
  kernel = kernel.astype(x.dtype)
  strides = tuple(strides)
  spatial_padding = ((kh // 2, kh // 2), (kw // 2, kw // 2))
  if platform_lib.current() == 'cpu':
    if kt > 1:
      x = jnp.concatenate([jnp.repeat(x[:, :1], kt - 1, axis=1), x], axis=1)
    y = _conv3d_as_2d(x, kernel, strides, spatial_padding)
  else:
    y = _replicate_padded_conv3d(x, kernel, strides, spatial_padding)
  if bias is not None:
    y = y + bias.astype(y.dtype)
  return y


def _conv3d(x, kernel, strides, padding):
  return jax.lax.conv_general_dilated(
    x, kernel, strides, padding, dimension_numbers=('NTHWC', 'THWIO', 'NTHWC')
  )


def _replicate_padded_conv3d(
  x: jax.Array,
  kernel: jax.Array,
  strides: Shape3,
  spatial_padding: tuple[tuple[int, int], tuple[int, int]],
) -> jax.Array:
  """The conv of x padded in time with kt - 1 copies of its first frame, without
  writing that padded copy: the convolution zero-pads time itself, and the first
  outputs, whose windows reach into the padding, get the padded taps applied to
  frame 0 added (one small conv of frame 0). Same result; on TPU the padded copy
  of every conv input was 4% of the tokenizer's estimated step time."""
  kt = kernel.shape[0]
  y = _conv3d(x, kernel, strides, ((kt - 1, 0), *spatial_padding))
  if kt == 1:
    return y
  st = strides[0]
  # Output frame j sees padded taps 0 .. kt - 2 - j * st, all copies of frame 0.
  reached = [kt - 1 - j * st for j in range(min(-(-(kt - 1) // st), y.shape[1]))]
  padded_taps = jnp.concatenate([kernel[:taps].sum(axis=0) for taps in reached], axis=-1)
  correction = _conv3d(x[:, :1], padded_taps[None], (1, *strides[1:]), ((0, 0), *spatial_padding))
  correction = einops.rearrange(correction, 'b 1 h w (j c) -> b j h w c', j=len(reached))
  return y.at[:, : len(reached)].add(correction)


# Up to this many input channels x time taps, one 2D conv over time-stacked
# channels beat one 2D conv per tap on XLA:CPU (measured: 18% faster tiny
# train steps; 6% slower at 128 channels, where per-tap convs already fill
# the kernels).
_MAX_STACKED_CHANNELS = 256


def _conv3d_as_2d(
  x: jax.Array,
  kernel: jax.Array,
  strides: Shape3,
  spatial_padding: tuple[tuple[int, int], tuple[int, int]],
) -> jax.Array:
  """A 'VALID'-in-time 3D conv computed with 2D convs over frames.

  XLA:CPU runs 3D convolutions several times slower per FLOP than 2D ones
  (measured ~4x forward, ~2x forward+backward), so on CPU frames fold into
  the batch. Narrow convs stack the `kt` time taps along channels into one 2D
  conv of kt * in channels; wide ones run a 2D conv per tap and sum them.
  Same result either way.

  Args:
    x: [batch, time (already causally padded), height, width, in].
    kernel: [kt, kh, kw, in, out].
    strides: (time, height, width).
    spatial_padding: ((top, bottom), (left, right)).
  """
  kt, in_channels = kernel.shape[0], kernel.shape[3]
  st, sh, sw = strides
  batch, time = x.shape[:2]
  out_time = (time - kt) // st + 1
  taps = [x[:, tap : tap + st * (out_time - 1) + 1 : st] for tap in range(kt)]

  def conv2d(frames: jax.Array, kernel2d: jax.Array) -> jax.Array:
    frames = frames.reshape(batch * out_time, *frames.shape[2:])
    return jax.lax.conv_general_dilated(
      frames, kernel2d, (sh, sw), spatial_padding, dimension_numbers=('NHWC', 'HWIO', 'NHWC')
    )

  if kt * in_channels <= _MAX_STACKED_CHANNELS:
    stacked = einops.rearrange(kernel, 't h w i o -> h w (t i) o')
    y = conv2d(jnp.concatenate(taps, axis=-1), stacked)
  else:
    y = sum(conv2d(frames, kernel[tap]) for tap, frames in enumerate(taps))
  return y.reshape(batch, out_time, *y.shape[1:])


class CausalConv3d(nnx.Module):
  """A `causal_conv3d` layer with logically named parameters."""

  def __init__(
    self,
    in_channels: int,
    out_channels: int,
    kernel_size: Shape3 = (3, 3, 3),
    strides: Shape3 = (1, 1, 1),
    *,
    dtype: jnp.dtype = jnp.float32,
    kernel_init: nnx.Initializer | None = None,
    rngs: nnx.Rngs,
  ):
    kernel_init = kernel_init or nnx.initializers.variance_scaling(1.0, 'fan_in', 'uniform')
    self.kernel = nnx.Param(
      sharding.with_logical(kernel_init, KERNEL_AXES)(
        rngs.params(), (*kernel_size, in_channels, out_channels)
      )
    )
    self.bias = nnx.Param(
      sharding.with_logical(nnx.initializers.zeros, ('conv_out',))(rngs.params(), (out_channels,))
    )
    self.strides = tuple(strides)
    self.dtype = dtype

  def __call__(self, x: jax.Array) -> jax.Array:
    """x: [batch, time, height, width, in] -> [batch, time', height', width', out]."""
    y = causal_conv3d(x.astype(self.dtype), self.kernel[...], self.bias[...], self.strides)
    # Pin every conv output to batch sharding: kernels are sharded over
    # `conv_out` (FSDP), which must not drag activations onto channels.
    return constrain(y)

  def output_shape(self, shape: Shape3) -> Shape3:
    kt, kh, kw = self.kernel.shape[:3]
    st, sh, sw = self.strides
    t, h, w = shape
    return (
      (t - 1) // st + 1,
      (h + 2 * (kh // 2) - kh) // sh + 1,
      (w + 2 * (kw // 2) - kw) // sw + 1,
    )

  def flops(self, shape: Shape3) -> tuple[float, Shape3]:
    """Multiply-add FLOPs of one example at input size `shape` (t, h, w)."""
    out = self.output_shape(shape)
    return 2.0 * math.prod(self.kernel.shape) * math.prod(out), out


def num_groups(channels: int, groups: int) -> int:
  """The largest group count <= `groups` that divides `channels`."""
  return max(g for g in range(1, min(groups, channels) + 1) if channels % g == 0)


class GroupNormSwish(nnx.Module):
  """Per-frame GroupNorm (over height, width and a channel group), then swish.

  Normalising over time too would leak statistics of future frames into the
  past and break causality. `groups=0` leaves only the swish: at the tiny
  sizes of a CPU quickstart, unnormalised blocks reached a given PSNR in far
  fewer steps (measured on shapes).

  Written out rather than `nnx.GroupNorm(reduction_axes=(-3, -2, -1))`: on
  [batch, time, ...] inputs flax 0.12 repeats the group statistics along
  time instead of channels, so channel c got the statistics of group
  c % groups instead of c // group_size. Statistics and normalisation run in
  float32 from the input's dtype, the output keeps that dtype, and the
  backward pass recomputes norm and swish from the input (`jax.checkpoint`)
  instead of saving float32 intermediates the size of the activation: their
  HBM traffic cost the tokenizer's train step on TPU more than the
  recompute (estimated with `videogen compile`).
  """

  def __init__(self, channels: int, groups: int, *, rngs: nnx.Rngs):
    self.groups = num_groups(channels, groups) if groups > 0 else 0
    self.epsilon = 1e-6
    if self.groups:
      self.scale = nnx.Param(
        sharding.with_logical(nnx.initializers.ones, ('channels',))(rngs.params(), (channels,))
      )
      self.bias = nnx.Param(
        sharding.with_logical(nnx.initializers.zeros, ('channels',))(rngs.params(), (channels,))
      )

  def __call__(self, x: jax.Array) -> jax.Array:
    """x: [batch, time, height, width, channels], same shape and dtype out."""
    if not self.groups:
      return nnx.swish(x)
    return _group_norm_swish(x, self.scale[...], self.bias[...], self.groups, self.epsilon)


def _group_mean(per_channel: jax.Array, groups: int, count: int) -> jax.Array:
  """Sums [b, t, c] over each channel group / count, repeated back to [b, t, 1, 1, c]."""
  batch, time, channels = per_channel.shape
  grouped = per_channel.reshape(batch, time, groups, channels // groups)
  mean = jnp.sum(grouped, axis=-1, keepdims=True) / count
  return jnp.broadcast_to(mean, grouped.shape).reshape(batch, time, 1, 1, channels)


@functools.partial(jax.checkpoint, static_argnums=(3, 4))
def _group_norm_swish(
  x: jax.Array, scale: jax.Array, bias: jax.Array, groups: int, epsilon: float
) -> jax.Array:
  count = x.shape[2] * x.shape[3] * (x.shape[4] // groups)
  values = x.astype(jnp.float32)
  mean = _group_mean(jnp.sum(values, axis=(2, 3)), groups, count)
  mean_square = _group_mean(jnp.sum(jnp.square(values), axis=(2, 3)), groups, count)
  rstd = jax.lax.rsqrt(jnp.maximum(mean_square - mean**2, 0.0) + epsilon)
  return nnx.swish((values - mean) * (rstd * scale) + bias).astype(x.dtype)


class ResBlock(nnx.Module):
  """norm, swish -> conv -> norm, swish -> conv, plus a (1x1x1) skip."""

  def __init__(
    self,
    in_channels: int,
    out_channels: int,
    groups: int,
    *,
    dtype: jnp.dtype,
    rngs: nnx.Rngs,
  ):
    self.norm1 = GroupNormSwish(in_channels, groups, rngs=rngs)
    self.conv1 = CausalConv3d(in_channels, out_channels, dtype=dtype, rngs=rngs)
    self.norm2 = GroupNormSwish(out_channels, groups, rngs=rngs)
    self.conv2 = CausalConv3d(out_channels, out_channels, dtype=dtype, rngs=rngs)
    self.skip = (
      CausalConv3d(in_channels, out_channels, (1, 1, 1), dtype=dtype, rngs=rngs)
      if in_channels != out_channels
      else None
    )

  def __call__(self, x: jax.Array) -> jax.Array:
    """x: [batch, time, height, width, in] -> [batch, time, height, width, out]."""
    h = self.conv1(self.norm1(x))
    h = self.conv2(self.norm2(h))
    skip = self.skip(x) if self.skip is not None else x.astype(h.dtype)
    return constrain(skip + h)

  def flops(self, shape: Shape3) -> tuple[float, Shape3]:
    total = self.conv1.flops(shape)[0] + self.conv2.flops(shape)[0]
    if self.skip is not None:
      total += self.skip.flops(shape)[0]
    return total, shape


class Downsample(nnx.Module):
  """A strided causal conv: time stride 2 keeps the first frame on its own.

  With kernel 3 and two replicated-first-frame pads, output frame 0 sees only
  input frame 0 and output frame j sees frames 2j-2..2j, so 1 + 2k frames
  become 1 + k.
  """

  def __init__(
    self,
    in_channels: int,
    out_channels: int,
    time_stride: int,
    space_stride: int,
    *,
    dtype: jnp.dtype,
    rngs: nnx.Rngs,
  ):
    self.conv = CausalConv3d(
      in_channels,
      out_channels,
      strides=(time_stride, space_stride, space_stride),
      dtype=dtype,
      rngs=rngs,
    )

  def __call__(self, x: jax.Array) -> jax.Array:
    """x: [b, t, h, w, in] -> [b, (t - 1) // st + 1, h // ss, w // ss, out]."""
    return constrain(self.conv(x))

  def flops(self, shape: Shape3) -> tuple[float, Shape3]:
    return self.conv.flops(shape)


class Upsample(nnx.Module):
  """Causal conv to `out * st * ss * ss` channels, then depth-to-space.

  Temporal upsampling turns t frames into st * t and drops the first st - 1,
  mirroring `Downsample`: 1 + k latent frames give 1 + st * k frames.
  """

  def __init__(
    self,
    in_channels: int,
    out_channels: int,
    time_stride: int,
    space_stride: int,
    *,
    dtype: jnp.dtype,
    rngs: nnx.Rngs,
  ):
    self.time_stride = time_stride
    self.space_stride = space_stride
    factor = time_stride * space_stride * space_stride
    self.conv = CausalConv3d(in_channels, out_channels * factor, dtype=dtype, rngs=rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    """x: [b, t, h, w, in] -> [b, st * (t - 1) + 1, h * ss, w * ss, out]."""
    x = self.conv(x)
    x = einops.rearrange(
      x,
      'b t h w (st sh sw c) -> b (t st) (h sh) (w sw) c',
      st=self.time_stride,
      sh=self.space_stride,
      sw=self.space_stride,
    )
    return constrain(x[:, self.time_stride - 1 :])

  def flops(self, shape: Shape3) -> tuple[float, Shape3]:
    flops, (t, h, w) = self.conv.flops(shape)
    st, ss = self.time_stride, self.space_stride
    return flops, (st * (t - 1) + 1, h * ss, w * ss)


def sum_flops(layers: Sequence[nnx.Module], shape: Shape3) -> tuple[float, Shape3]:
  """Total FLOPs of `layers` applied in order, and the final shape."""
  total = 0.0
  for layer in layers:
    flops, shape = layer.flops(shape)
    total += flops
  return total, shape
