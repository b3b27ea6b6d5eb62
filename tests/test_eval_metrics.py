"""PSNR and SSIM against known values and an independent scipy reference."""

import jax
import numpy as np
import pytest
from scipy import signal

from videogen.vq import metrics


def _reference_ssim(a, b, max_val, size=11, sigma=1.5):
  """Straightforward per-frame, per-channel SSIM with scipy (float64)."""
  coords = np.arange(size) - (size - 1) / 2
  g = np.exp(-0.5 * (coords / sigma) ** 2)
  window = np.outer(g, g) / np.sum(g) ** 2
  c1, c2 = (0.01 * max_val) ** 2, (0.03 * max_val) ** 2
  result = []
  for video_a, video_b in zip(a, b, strict=True):
    values = []
    for frame_a, frame_b in zip(video_a, video_b, strict=True):
      for c in range(frame_a.shape[-1]):
        x = frame_a[..., c].astype(np.float64)
        y = frame_b[..., c].astype(np.float64)
        filt = lambda z: signal.correlate2d(z, window, mode='valid')
        mx, my = filt(x), filt(y)
        sxx = filt(x * x) - mx * mx
        syy = filt(y * y) - my * my
        sxy = filt(x * y) - mx * my
        s = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx**2 + my**2 + c1) * (sxx + syy + c2))
        values.append(s.mean())
    result.append(np.mean(values))
  return np.array(result)


def _videos(seed, shape=(2, 3, 16, 20, 3)):
  rng = np.random.default_rng(seed)
  # Smooth-ish content so SSIM is far from 0 and 1.
  base = rng.uniform(-1, 1, shape).astype(np.float32)
  base = (base + np.roll(base, 1, axis=2) + np.roll(base, 1, axis=3)) / 3
  noisy = np.clip(base + rng.normal(0, 0.2, shape), -1, 1).astype(np.float32)
  return base, noisy


def test_psnr_identical_is_inf():
  a, _ = _videos(0)
  assert np.all(np.isinf(np.asarray(metrics.psnr(a, a))))


def test_psnr_known_noise_level_per_example():
  rng = np.random.default_rng(1)
  a = rng.uniform(-0.5, 0.5, (2, 2, 8, 8, 3)).astype(np.float32)
  signs = rng.choice([-1.0, 1.0], size=a.shape).astype(np.float32)
  # A +-sigma perturbation has MSE exactly sigma^2.
  sigmas = np.array([0.1, 0.02], np.float32).reshape(2, 1, 1, 1, 1)
  b = a + sigmas * signs
  expected = 10 * np.log10(2.0**2 / sigmas.ravel() ** 2)
  np.testing.assert_allclose(metrics.psnr(a, b), expected, rtol=1e-4)
  # The same clip in [0, 255] with max_val=255 gives the same PSNR.
  np.testing.assert_allclose(
    metrics.psnr((a + 1) * 127.5, (b + 1) * 127.5, max_val=255.0), expected, rtol=1e-4
  )


def test_ssim_identical_is_one():
  a, _ = _videos(2)
  np.testing.assert_allclose(metrics.ssim(a, a), [1.0, 1.0], atol=1e-5)


def test_ssim_constant_frames_known_value():
  # Flat frames: SSIM is the luminance term (2xy + C1) / (x^2 + y^2 + C1).
  a = np.full((1, 2, 12, 12, 3), 0.5, np.float32)
  b = np.full((1, 2, 12, 12, 3), -0.25, np.float32)
  c1 = (0.01 * 2.0) ** 2
  expected = (2 * 0.5 * -0.25 + c1) / (0.25 + 0.0625 + c1)
  np.testing.assert_allclose(metrics.ssim(a, b), [expected], rtol=1e-5)


@pytest.mark.parametrize('max_val', [2.0, 255.0])
def test_ssim_matches_scipy_reference(max_val):
  a, b = _videos(3)
  if max_val == 255.0:
    a, b = (a + 1) * 127.5, (b + 1) * 127.5
  expected = _reference_ssim(a, b, max_val)
  got = jax.jit(lambda x, y: metrics.ssim(x, y, max_val=max_val))(a, b)
  assert got.shape == (2,)
  np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
  assert 0.05 < float(expected.min()) < 0.95


def test_ssim_rejects_frames_smaller_than_window():
  a = np.zeros((1, 1, 8, 8, 3), np.float32)
  with pytest.raises(ValueError, match='smaller than'):
    metrics.ssim(a, a)
