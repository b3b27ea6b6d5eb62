"""FVD: I3D with random weights, Fréchet distance vs scipy, statistics caching."""

import jax
import numpy as np
import pytest
from flax import nnx
from scipy import linalg

from tests import helpers
from videogen.eval import convert_i3d, fvd, i3d


@pytest.fixture(scope='module')
def weights_file(tmp_path_factory):
  path = str(tmp_path_factory.mktemp('i3d') / 'i3d.safetensors')
  i3d.save_weights(path, helpers.random_i3d_weights())
  return path


@pytest.fixture(scope='module')
def embedder(weights_file):
  # A small protocol (9 frames at 32x32) keeps the full network fast on CPU.
  return fvd.I3DEmbedder.from_weights(weights_file, batch_size=3, num_frames=9, resolution=32)


def _videos(seed, count):
  rng = np.random.default_rng(seed)
  return rng.integers(0, 256, (count, 10, 24, 20, 3), dtype=np.uint8)


def test_embedder_shape_determinism_and_batch_independence(embedder):
  videos = _videos(0, 3)
  videos[2] = videos[0]
  features = embedder(videos)
  assert features.shape == (3, 400) and features.dtype == np.float64
  assert np.all(np.isfinite(features))
  np.testing.assert_array_equal(features, embedder(videos))
  np.testing.assert_allclose(features[2], features[0], rtol=1e-5, atol=1e-6)
  assert not np.allclose(features[0], features[1])
  # A partial batch is padded and gives the same features.
  np.testing.assert_allclose(embedder(videos[:1]), features[:1], rtol=1e-5, atol=1e-6)


def test_fvd_of_a_set_with_itself_is_zero(embedder):
  real = fvd.FeatureStats.from_features(embedder(_videos(1, 6)))
  # A different distribution: dark clips.
  other = fvd.FeatureStats.from_features(embedder(_videos(2, 6) // 8))
  self_distance = fvd.fvd(real, real)
  assert abs(self_distance) <= 1e-6 * np.trace(real.cov)
  assert fvd.fvd(real, other) > 1e3 * max(abs(self_distance), 1e-12)


def test_evaluate_fvd_caches_real_statistics(embedder, tmp_path):
  cache = fvd.stats_path(str(tmp_path), 'noise', 'test', 6)
  real = [_videos(3, 3), _videos(4, 3), _videos(5, 3)]
  generated = _videos(6, 6) // 8
  first = fvd.evaluate_fvd(embedder, iter(real), generated, cache_path=cache, num_videos=6)
  assert (first.num_real, first.num_generated) == (6, 6) and first.fvd > 0

  def unused():
    raise AssertionError('real videos read despite the cache')
    yield

  second = fvd.evaluate_fvd(embedder, unused(), generated, cache_path=cache, num_videos=6)
  assert second == first


def _scipy_frechet(mu1, s1, mu2, s2):
  covmean = linalg.sqrtm(s1 @ s2)
  return float(np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean.real))


@pytest.mark.parametrize('dim', [8, 64])
def test_frechet_distance_matches_scipy(dim):
  rng = np.random.default_rng(dim)
  mix = rng.normal(size=(dim, dim))
  a = rng.normal(size=(500, dim)) @ mix
  b = rng.normal(size=(400, dim)) @ (mix + 0.3 * rng.normal(size=(dim, dim))) + 0.5
  stats_a = fvd.FeatureStats.from_features(a)
  stats_b = fvd.FeatureStats.from_features(b)
  expected = _scipy_frechet(stats_a.mean, stats_a.cov, stats_b.mean, stats_b.cov)
  got = fvd.frechet_distance(stats_a, stats_b)
  assert abs(got - expected) <= 1e-6 * abs(expected)
  np.testing.assert_allclose(fvd.frechet_distance(stats_b, stats_a), got, rtol=1e-9)


def test_statistics_cache_roundtrip(tmp_path):
  path = fvd.stats_path(str(tmp_path / 'cache'), 'shapes', 'test', 8)
  assert path.endswith('fvd_i3d_shapes_test_n8_f16_r224.npz')
  features = np.random.default_rng(0).normal(size=(8, 5))
  calls = []

  def compute():
    calls.append(1)
    return fvd.FeatureStats.from_features(features)

  first = fvd.cached_statistics(path, compute)
  second = fvd.cached_statistics(path, compute)
  assert len(calls) == 1 and second.count == 8
  np.testing.assert_array_equal(first.cov, second.cov)
  with np.load(path, allow_pickle=False) as data:
    assert sorted(data.files) == ['count', 'cov', 'mean']


def test_fvd_available(tmp_path, weights_file):
  available, reason = fvd.fvd_available('')
  assert not available and 'convert_i3d' in reason
  available, reason = fvd.fvd_available(str(tmp_path / 'missing.safetensors'))
  assert not available and 'does not exist' in reason
  bad = str(tmp_path / 'bad.npz')
  np.savez(bad, something=np.zeros(3))
  available, reason = fvd.fvd_available(bad)
  assert not available and 'missing' in reason
  assert fvd.fvd_available(weights_file) == (
    True,
    f'FVD with I3D weights {weights_file}',
  )


def test_resize_matrix_is_tf1_bilinear():
  # TF1 resize_bilinear(align_corners=False) samples input i * in / out.
  np.testing.assert_allclose(fvd.resize_matrix(2, 4), [[1, 0], [0.5, 0.5], [0, 1], [0, 1]])
  np.testing.assert_allclose(fvd.resize_matrix(4, 2), [[1, 0, 0, 0], [0, 0, 1, 0]])
  np.testing.assert_allclose(fvd.resize_matrix(5, 5), np.eye(5))


def test_preprocess_range_frames_and_errors():
  videos = np.full((1, 17, 8, 8, 3), 255, np.uint8)
  out = fvd.preprocess(videos, resolution=12)
  assert out.shape == (1, 16, 12, 12, 3)
  np.testing.assert_allclose(out, 1.0)
  with pytest.raises(ValueError, match='at least 16 frames'):
    fvd.preprocess(videos[:, :9])


def test_convert_maps_published_names():
  weights = helpers.random_i3d_weights(1)
  # Variables as the kinetics-i3d checkpoint names and shapes them.
  tf_variables = {'global_step': np.int64(7)}
  for key, value in weights.items():
    shape = (1, 1, 1, 1, -1) if '/bn/' in key else value.shape
    tf_variables['RGB/inception_i3d/' + convert_i3d.tf_name(key)] = value.reshape(shape)
  assert 'RGB/inception_i3d/Mixed_5b/Branch_2/Conv3d_0a_3x3/conv_3d/w' in tf_variables
  assert 'RGB/inception_i3d/Mixed_3b/Branch_3/Conv3d_0b_1x1/batch_norm/moving_variance' in (
    tf_variables
  )
  assert 'RGB/inception_i3d/Logits/Conv3d_0c_1x1/conv_3d/b' in tf_variables
  converted = convert_i3d.convert(tf_variables)
  assert converted.keys() == weights.keys()
  for key in weights:
    np.testing.assert_array_equal(converted[key], weights[key])
  del tf_variables['RGB/inception_i3d/Conv3d_1a_7x7/conv_3d/w']
  with pytest.raises(ValueError, match='missing'):
    convert_i3d.convert(tf_variables)


def test_standard_protocol_shapes():
  """The standard 16x224x224 input gives 400 logits (shapes only, no compute)."""
  graphdef, state = nnx.split(i3d.abstract_model())
  video = jax.ShapeDtypeStruct((2, fvd.NUM_FRAMES, fvd.RESOLUTION, fvd.RESOLUTION, 3), np.float32)
  logits = jax.eval_shape(lambda s, v: nnx.merge(graphdef, s)(v), state, video)
  assert logits.shape == (2, 400)
  uint8_video = jax.ShapeDtypeStruct((2, 17, 64, 64, 3), np.uint8)
  assert jax.eval_shape(fvd.preprocess, uint8_video).shape == (2, 16, 224, 224, 3)
