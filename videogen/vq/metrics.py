"""Pixel-space reconstruction metrics for videos: PSNR and SSIM.

Both take videos `[batch, time, height, width, 3]` and return one value per
example (`[batch]`), so callers can average over a dataset or look at the
worst clips. Inputs are float videos in [-1, 1], the range the data pipeline
and the tokenizer use, so the default dynamic range `max_val` is 2.0 (the
distance from -1 to 1). Pass `max_val=255.0` for uint8-valued videos or 1.0
for videos in [0, 1]; the result is the same PSNR/SSIM as for the same clip in
any other range with the matching `max_val`.

Both functions are pure `jnp` and can be jitted or called inside a jitted
eval step.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

# Dynamic range of videos in [-1, 1].
DEFAULT_MAX_VAL = 2.0


def mse(a: jax.Array, b: jax.Array) -> jax.Array:
  """Mean squared error per example.

  Args:
    a: [batch, time, height, width, channels].
    b: same shape as `a`.

  Returns:
    float32 [batch].
  """
  a = jnp.asarray(a, jnp.float32)
  b = jnp.asarray(b, jnp.float32)
  return jnp.mean(jnp.square(a - b), axis=tuple(range(1, a.ndim)))


def psnr(a: jax.Array, b: jax.Array, max_val: float = DEFAULT_MAX_VAL) -> jax.Array:
  """Peak signal-to-noise ratio per example, in dB.

  The MSE is taken over every pixel of the clip (all frames together), the
  convention of `tf.image.psnr` applied to a whole video; identical clips give
  `inf`.

  Args:
    a: [batch, time, height, width, 3], values in [-1, 1] by default.
    b: same shape as `a`.
    max_val: the dynamic range of the values (2.0 for [-1, 1]).

  Returns:
    float32 [batch].
  """
  error = mse(a, b)
  return 10.0 * jnp.log10(jnp.float32(max_val) ** 2 / error)


def gaussian_window(size: int = 11, sigma: float = 1.5) -> jax.Array:
  """Normalised 1-D Gaussian window, float32 [size]."""
  coords = jnp.arange(size, dtype=jnp.float32) - (size - 1) / 2.0
  window = jnp.exp(-0.5 * jnp.square(coords / sigma))
  return window / jnp.sum(window)


def _filter_valid(images: jax.Array, window: jax.Array) -> jax.Array:
  """Separable Gaussian filter with 'VALID' padding.

  Args:
    images: [n, height, width] float32.
    window: [size] float32.

  Returns:
    [n, height - size + 1, width - size + 1].
  """
  size = window.shape[0]
  kernel_h = window.reshape(size, 1, 1, 1)  # HWIO
  kernel_w = window.reshape(1, size, 1, 1)
  x = images[..., None]
  dims = ('NHWC', 'HWIO', 'NHWC')
  x = jax.lax.conv_general_dilated(
    x,
    kernel_h,
    (1, 1),
    'VALID',
    dimension_numbers=dims,
    precision=jax.lax.Precision.HIGHEST,
  )
  x = jax.lax.conv_general_dilated(
    x,
    kernel_w,
    (1, 1),
    'VALID',
    dimension_numbers=dims,
    precision=jax.lax.Precision.HIGHEST,
  )
  return x[..., 0]


def ssim(
  a: jax.Array,
  b: jax.Array,
  max_val: float = DEFAULT_MAX_VAL,
  filter_size: int = 11,
  filter_sigma: float = 1.5,
  k1: float = 0.01,
  k2: float = 0.03,
) -> jax.Array:
  """Structural similarity per example: per-frame SSIM averaged over frames.

  Follows Wang et al. (2004) with the constants of `tf.image.ssim`: an
  11x11 Gaussian window (sigma 1.5) applied with 'VALID' padding,
  C1 = (k1 * max_val)^2, C2 = (k2 * max_val)^2. The SSIM map is averaged over
  pixels and colour channels of each frame, then over frames.

  Args:
    a: [batch, time, height, width, channels], values in [-1, 1] by default;
      height and width must be at least `filter_size`.
    b: same shape as `a`.
    max_val: the dynamic range of the values (2.0 for [-1, 1]).
    filter_size: side of the Gaussian window.
    filter_sigma: standard deviation of the Gaussian window.
    k1: luminance stabiliser.
    k2: contrast stabiliser.

  Returns:
    float32 [batch]; 1.0 for identical clips.
  """
  a = jnp.asarray(a, jnp.float32)
  b = jnp.asarray(b, jnp.float32)
  if a.shape != b.shape or a.ndim != 5:
    raise ValueError(
      f'ssim expects two videos [B, T, H, W, C] of one shape, got {a.shape} and {b.shape}'
    )
  batch, time, height, width, channels = a.shape
  if min(height, width) < filter_size:
    raise ValueError(
      f'Frames {height}x{width} are smaller than the {filter_size}x'
      f'{filter_size} SSIM window; pass a smaller filter_size.'
    )
  window = gaussian_window(filter_size, filter_sigma)

  # Every (example, frame, channel) is an independent 2-D image.
  def planes(video):
    return jnp.moveaxis(video, -1, 2).reshape(-1, height, width)

  x, y = planes(a), planes(b)
  mu_x = _filter_valid(x, window)
  mu_y = _filter_valid(y, window)
  sigma_xx = _filter_valid(x * x, window) - mu_x * mu_x
  sigma_yy = _filter_valid(y * y, window) - mu_y * mu_y
  sigma_xy = _filter_valid(x * y, window) - mu_x * mu_y
  c1 = (k1 * max_val) ** 2
  c2 = (k2 * max_val) ** 2
  luminance = (2.0 * mu_x * mu_y + c1) / (mu_x * mu_x + mu_y * mu_y + c1)
  contrast_structure = (2.0 * sigma_xy + c2) / (sigma_xx + sigma_yy + c2)
  ssim_map = luminance * contrast_structure
  per_plane = jnp.mean(ssim_map, axis=(1, 2)).reshape(batch, time, channels)
  return jnp.mean(per_plane, axis=(1, 2))
