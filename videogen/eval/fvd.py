"""Fréchet Video Distance (FVD) with the Kinetics-400 I3D network.

Protocol (fixed; FVDs are comparable only under the same one):
- Embedding: the RGB I3D of deepmind/kinetics-i3d (`videogen.eval.i3d`),
  weights converted from the published checkpoint or the TF-Hub module
  `deepmind/i3d-kinetics-400/1` (`videogen.eval.convert_i3d`); the feature is
  the 400-d time-averaged logits (`RGB/inception_i3d/Mean` in the TF-Hub graph),
  as in the reference FVD code (Unterthiner et al., 2019).
- Clips: the first `NUM_FRAMES` = 16 frames of every video; shorter videos are
  an error.
- Resizing: every frame to `RESOLUTION` = 224x224 with bilinear interpolation
  as TF1 `tf.image.resize_bilinear` computes it (align_corners=False, no
  half-pixel centres), the reference code's resize; values are then in
  [-1, 1] (uint8 input is mapped with x / 127.5 - 1).
- Videos: `NUM_VIDEOS` = 2048 real and 2048 generated, or all of a smaller
  split; the count is stored with the statistics and should be reported.
- Distance: ||mu_r - mu_g||^2 + Tr(S_r + S_g - 2 (S_r S_g)^(1/2)) in float64.
  The trace of the matrix square root is taken from the eigenvalues of the
  symmetric PSD matrix S_r^(1/2) S_g S_r^(1/2) (similar to S_r S_g), which
  matches `scipy.linalg.sqrtm` without its complex round-off.
- Real statistics (mean, covariance, count) are cached per dataset, split and
  protocol as npz (`stats_path`, `cached_statistics`).

Without converted weights FVD is unavailable; `fvd_available` says why, so
`videogen eval` can report every other metric.
"""

from __future__ import annotations

import dataclasses
import io
import os
from typing import Callable, Iterable

import jax
import jax.numpy as jnp
import numpy as np
from etils import epath
from flax import nnx

from videogen.eval import i3d

NUM_FRAMES = 16
RESOLUTION = 224
NUM_VIDEOS = 2048
# Where `default_weights_path` looks when no path is configured.
WEIGHTS_ENV = 'VIDEOGEN_I3D_WEIGHTS'


def default_weights_path() -> str:
  """The I3D weights file named by $VIDEOGEN_I3D_WEIGHTS ('' when unset)."""
  return os.environ.get(WEIGHTS_ENV, '')


def fvd_available(weights_path: str | None) -> tuple[bool, str]:
  """Whether FVD can be computed with `weights_path`, and why (not).

  Returns:
    (available, reason): reason names the file when available, otherwise what
    is missing and how to make it (a phrase to follow 'FVD unavailable: ').
  """
  how = (
    'convert the kinetics-i3d checkpoint with `python -m '
    'videogen.eval.convert_i3d` and pass the file (or set '
    f'${WEIGHTS_ENV})'
  )
  if not weights_path:
    return False, f'no I3D weights file given; {how}.'
  if not os.path.exists(weights_path):
    return (
      False,
      f'I3D weights file {weights_path} does not exist; {how}.',
    )
  try:
    i3d.check_weights(i3d.read_weights(weights_path))
  except (OSError, ValueError) as e:
    return False, f'cannot use {weights_path}: {e}'
  return True, f'FVD with I3D weights {weights_path}'


def resize_matrix(in_size: int, out_size: int) -> np.ndarray:
  """Linear map of TF1 `resize_bilinear` (align_corners=False) along one axis.

  Output pixel i samples the input at i * in_size / out_size (no half-pixel
  offset), interpolating between its two neighbours.

  Returns:
    float32 [out_size, in_size]; rows sum to 1.
  """
  source = np.arange(out_size, dtype=np.float64) * (in_size / out_size)
  lower = np.minimum(np.floor(source).astype(np.int64), in_size - 1)
  upper = np.minimum(lower + 1, in_size - 1)
  weight = source - lower
  matrix = np.zeros((out_size, in_size), np.float64)
  rows = np.arange(out_size)
  np.add.at(matrix, (rows, lower), 1.0 - weight)
  np.add.at(matrix, (rows, upper), weight)
  return matrix.astype(np.float32)


def preprocess(
  videos: jax.Array,
  num_frames: int = NUM_FRAMES,
  resolution: int = RESOLUTION,
) -> jax.Array:
  """Videos as the I3D of the FVD protocol sees them.

  Args:
    videos: uint8 [batch, time, height, width, 3] in [0, 255] or float in
      [-1, 1]; time >= num_frames.
    num_frames: frames kept from the start of each clip.
    resolution: output height and width.

  Returns:
    float32 [batch, num_frames, resolution, resolution, 3] in [-1, 1].
  """
  if videos.shape[1] < num_frames:
    raise ValueError(f'FVD needs clips of at least {num_frames} frames, got {videos.shape[1]}.')
  if videos.dtype == jnp.uint8 or videos.dtype == np.uint8:
    x = jnp.asarray(videos[:, :num_frames], jnp.float32) / 127.5 - 1.0
  else:
    x = jnp.asarray(videos[:, :num_frames], jnp.float32)
  _, _, height, width, _ = x.shape
  # Resizing is linear, so resizing values in [-1, 1] equals resizing pixels.
  rows = jnp.asarray(resize_matrix(height, resolution))
  cols = jnp.asarray(resize_matrix(width, resolution))
  x = jnp.einsum('oh,bthwc->btowc', rows, x, precision=jax.lax.Precision.HIGHEST)
  x = jnp.einsum('pw,btowc->btopc', cols, x, precision=jax.lax.Precision.HIGHEST)
  # Decoded samples can overshoot [-1, 1]; the reference code requires the range.
  return jnp.clip(x, -1.0, 1.0)


class I3DEmbedder:
  """Embeds videos with I3D under the FVD protocol, one jitted batch at a time."""

  def __init__(
    self,
    model: i3d.I3D,
    *,
    batch_size: int = 16,
    num_frames: int = NUM_FRAMES,
    resolution: int = RESOLUTION,
  ):
    """Wraps `model`; tests may lower `num_frames`/`resolution` (not FVD then)."""
    self.batch_size = batch_size
    self.num_frames = num_frames
    self.resolution = resolution
    graphdef, self._state = nnx.split(model)

    def embed(state, videos):
      video = preprocess(videos, num_frames, resolution)
      return nnx.merge(graphdef, state)(video)

    self._embed = jax.jit(embed)

  @classmethod
  def from_weights(cls, weights_path: str, **kwargs) -> I3DEmbedder:
    return cls(i3d.load_weights(weights_path), **kwargs)

  def __call__(self, videos: np.ndarray) -> np.ndarray:
    """I3D features of videos.

    Args:
      videos: uint8 [n, time, height, width, 3] or float in [-1, 1].

    Returns:
      float64 [n, 400].
    """
    videos = np.asarray(videos)
    count = videos.shape[0]
    # Pad to whole batches so one compiled shape serves every call.
    padded = -count % self.batch_size
    if padded:
      videos = np.concatenate([videos, np.zeros((padded,) + videos.shape[1:], videos.dtype)])
    features = [
      np.asarray(self._embed(self._state, videos[start : start + self.batch_size]))
      for start in range(0, videos.shape[0], self.batch_size)
    ]
    return np.concatenate(features)[:count].astype(np.float64)

  def embed_batches(
    self, batches: Iterable[np.ndarray], max_videos: int = NUM_VIDEOS
  ) -> np.ndarray:
    """Features of up to `max_videos` videos from an iterable of batches."""
    features, seen = [], 0
    for batch in batches:
      batch = np.asarray(batch)[: max_videos - seen]
      features.append(self(batch))
      seen += batch.shape[0]
      if seen >= max_videos:
        break
    if not features:
      raise ValueError('No videos to embed.')
    return np.concatenate(features)


@dataclasses.dataclass(frozen=True)
class FeatureStats:
  """Gaussian statistics of features.

  Attributes:
    mean: float64 [dim].
    cov: float64 [dim, dim] (unbiased, rows = observations).
    count: number of videos.
  """

  mean: np.ndarray
  cov: np.ndarray
  count: int

  @classmethod
  def from_features(cls, features: np.ndarray) -> FeatureStats:
    """Statistics of features [n, dim] (n >= 2), computed in float64."""
    features = np.asarray(features, np.float64)
    if features.ndim != 2 or features.shape[0] < 2:
      raise ValueError(f'Need features [n >= 2, dim], got {features.shape}.')
    return cls(features.mean(axis=0), np.cov(features, rowvar=False), features.shape[0])

  def save(self, path: str) -> None:
    """Writes an npz (works for gs:// paths too)."""
    buffer = io.BytesIO()
    np.savez(buffer, mean=self.mean, cov=self.cov, count=np.int64(self.count))
    target = epath.Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(buffer.getvalue())

  @classmethod
  def load(cls, path: str) -> FeatureStats:
    with np.load(io.BytesIO(epath.Path(path).read_bytes()), allow_pickle=False) as data:
      return cls(data['mean'], data['cov'], int(data['count']))


def _sqrt_psd(matrix: np.ndarray) -> np.ndarray:
  """Symmetric square root of a symmetric PSD matrix (negative round-off clipped)."""
  values, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
  return (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T


def frechet_distance(a: FeatureStats, b: FeatureStats) -> float:
  """Fréchet distance between the Gaussians of `a` and `b`, in float64."""
  mean_a, mean_b = np.asarray(a.mean, np.float64), np.asarray(b.mean, np.float64)
  cov_a, cov_b = np.asarray(a.cov, np.float64), np.asarray(b.cov, np.float64)
  if mean_a.shape != mean_b.shape or cov_a.shape != cov_b.shape:
    raise ValueError(f'Statistics of different dimension: {mean_a.shape} vs {mean_b.shape}.')
  root_a = _sqrt_psd(cov_a)
  middle = root_a @ cov_b @ root_a
  eigenvalues = np.linalg.eigvalsh((middle + middle.T) / 2)
  trace_sqrt = np.sum(np.sqrt(np.clip(eigenvalues, 0.0, None)))
  distance = np.sum(np.square(mean_a - mean_b)) + np.trace(cov_a) + np.trace(cov_b)
  return float(distance - 2.0 * trace_sqrt)


def fvd(real: FeatureStats, generated: FeatureStats) -> float:
  """FVD from real and generated I3D feature statistics."""
  return frechet_distance(real, generated)


def stats_path(
  cache_dir: str,
  dataset: str,
  split: str,
  num_videos: int = NUM_VIDEOS,
  num_frames: int = NUM_FRAMES,
  resolution: int = RESOLUTION,
) -> str:
  """Cache file of real statistics for one dataset, split and protocol."""
  name = f'fvd_i3d_{dataset}_{split}_n{num_videos}_f{num_frames}_r{resolution}.npz'
  return os.path.join(cache_dir, name)


def cached_statistics(path: str, compute: Callable[[], FeatureStats]) -> FeatureStats:
  """Loads statistics from `path`, or computes and saves them there first."""
  if epath.Path(path).exists():
    return FeatureStats.load(path)
  stats = compute()
  stats.save(path)
  return stats


@dataclasses.dataclass(frozen=True)
class FvdResult:
  """An FVD and the numbers of videos behind it."""

  fvd: float
  num_real: int
  num_generated: int


def evaluate_fvd(
  embedder: I3DEmbedder,
  real_batches: Iterable[np.ndarray],
  generated_videos: np.ndarray,
  *,
  cache_path: str | None = None,
  num_videos: int = NUM_VIDEOS,
) -> FvdResult:
  """FVD of generated videos against real ones.

  Usage: `evaluate_fvd(I3DEmbedder.from_weights(path), batches, samples,
  cache_path=stats_path(cache_dir, dataset, split, num_videos))` after
  `fvd_available(path)` said yes.

  Args:
    embedder: the I3D embedder (protocol defaults for a real FVD).
    real_batches: batches of real videos, uint8 or float in [-1, 1]
      [batch, time >= 16, height, width, 3]; read only when `cache_path`
      does not exist yet, up to `num_videos` videos.
    generated_videos: [n, time >= 16, height, width, 3], same value ranges.
    cache_path: npz of the real statistics (`stats_path`); None: no cache.
    num_videos: most real and most generated videos used.

  Returns:
    The FVD and the numbers of real and generated videos behind it.
  """

  def real_stats() -> FeatureStats:
    return FeatureStats.from_features(embedder.embed_batches(real_batches, num_videos))

  real = cached_statistics(cache_path, real_stats) if cache_path else real_stats()
  generated = FeatureStats.from_features(embedder(np.asarray(generated_videos)[:num_videos]))
  return FvdResult(fvd(real, generated), real.count, generated.count)
