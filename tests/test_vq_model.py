"""Shapes, causality and FLOP accounting of the tokenizer model; the Tokenizer API."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from videogen.parallel import sharding
from videogen.vq import Tokenizer, decode_fn, encode_fn, layers
from videogen.vq import config as vq_config
from videogen.vq.model import VideoAutoencoder, create_model, resampling_schedule

HEIGHT = WIDTH = 16


def tiny_model_config(quantizer: str = 'fsq'):
  config = vq_config.model_config('tiny', quantizer)
  config.channels = 4
  config.channel_multipliers = (1, 2, 2)
  config.spatial_downsample = 4
  config.norm_groups = 2
  return config


@pytest.fixture(scope='module')
def model():
  return create_model(tiny_model_config(), jax.random.key(0))


@pytest.fixture(scope='module')
def forward(model):
  """Jitted (encoder latents, training forward) of a 9-frame batch."""
  return jax.jit(lambda video: (model.encoder(video), model(video)))


@pytest.fixture(scope='module')
def tokenizer(model):
  return Tokenizer.from_model(model, tiny_model_config())


def random_video(frames: int, batch: int = 2, seed: int = 0) -> np.ndarray:
  rng = np.random.default_rng(seed)
  return rng.uniform(-1, 1, (batch, frames, HEIGHT, WIDTH, 3)).astype(np.float32)


def test_schedule_puts_space_first_and_time_last():
  config = tiny_model_config()
  assert resampling_schedule(config) == [(2, 2), (2, 2)]
  config.channel_multipliers = (1, 2, 2, 4)
  config.spatial_downsample = 8
  assert resampling_schedule(config) == [(1, 2), (2, 2), (2, 2)]
  config.spatial_downsample = 4
  assert resampling_schedule(config) == [(1, 2), (2, 2), (2, 1)]
  config.channel_multipliers = (1, 2)
  with pytest.raises(ValueError, match='downsampling slots'):
    resampling_schedule(config)


@pytest.mark.parametrize('in_channels', [3, 96])  # Stacked taps / one conv per tap.
@pytest.mark.parametrize('strides', [(1, 1, 1), (2, 2, 2)])
def test_cpu_conv_path_matches_a_3d_convolution(in_channels, strides):
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(2, 7, 8, 8, in_channels)), jnp.float32)
  kernel = jnp.asarray(rng.normal(size=(3, 3, 3, in_channels, 5)), jnp.float32)
  padding = ((1, 1), (1, 1))
  got = layers._conv3d_as_2d(x, kernel, strides, padding)
  want = jax.lax.conv_general_dilated(
    x, kernel, strides, ((0, 0), *padding), dimension_numbers=('NTHWC', 'THWIO', 'NTHWC')
  )
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * in_channels)


@pytest.mark.parametrize(
  'frames,kt,strides',
  [(17, 3, (1, 1, 1)), (9, 3, (2, 2, 2)), (1, 3, (2, 2, 2)), (9, 5, (1, 2, 2)), (7, 1, (1, 1, 1))],
)
def test_accelerator_conv_path_matches_padding_with_the_first_frame(frames, kt, strides):
  # TPU/GPU: the conv zero-pads time and corrects its first outputs instead of
  # concatenating kt - 1 copies of frame 0; the result is the same.
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(2, frames, 8, 8, 5)), jnp.float32)
  kernel = jnp.asarray(rng.normal(size=(kt, 3, 3, 5, 4)), jnp.float32)
  padding = ((1, 1), (1, 1))
  padded = jnp.concatenate([jnp.repeat(x[:, :1], kt - 1, axis=1), x], axis=1)
  want = layers._conv3d(padded, kernel, strides, ((0, 0), *padding))
  got = layers._replicate_padded_conv3d(x, kernel, strides, padding)
  assert got.shape == want.shape
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def _reference_group_norm_swish(x, groups: int, scale, bias):
  """GroupNorm's definition per frame (channel c in group c // (channels / groups)), then swish."""
  b, t, h, w, c = x.shape
  grouped = x.reshape(b, t, h, w, groups, c // groups)
  mean = grouped.mean(axis=(2, 3, 5), keepdims=True)
  var = grouped.var(axis=(2, 3, 5), keepdims=True)
  y = ((grouped - mean) / jnp.sqrt(var + 1e-6)).reshape(x.shape) * scale + bias
  return y * jax.nn.sigmoid(y)


def test_group_norm_swish_matches_its_definition_and_gradient():
  # Channels with very different means and scales: a channel normalised with another
  # group's statistics (what nnx.GroupNorm did on [b, t, h, w, c]) is far off.
  rng = np.random.default_rng(0)
  x = rng.normal(size=(2, 3, 4, 4, 16)) * np.arange(1, 17) + 10 * np.arange(16)
  x = jnp.asarray(x, jnp.float32)
  norm = layers.GroupNormSwish(16, 4, rngs=nnx.Rngs(0))
  norm.scale[...] = jnp.asarray(rng.uniform(0.5, 2, 16), jnp.float32)
  norm.bias[...] = jnp.asarray(rng.normal(size=16), jnp.float32)
  scale, bias = norm.scale[...], norm.bias[...]
  reference = jax.jit(lambda x: _reference_group_norm_swish(x, 4, scale, bias))
  np.testing.assert_allclose(norm(x), reference(x), rtol=1e-4, atol=1e-5)  # One-pass variance.
  # Gradients through the recomputing (jax.checkpoint) backward equal plain autodiff.
  weights = jnp.asarray(rng.normal(size=x.shape), jnp.float32)
  got = jax.grad(lambda x: jnp.sum(norm(x) * weights))(x)
  want = jax.grad(lambda x: jnp.sum(reference(x) * weights))(x)
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
  # bfloat16 in, bfloat16 out; statistics per frame (frame 0 does not see frame 2).
  assert norm(x.astype(jnp.bfloat16)).dtype == jnp.bfloat16
  changed = x.at[:, 2].multiply(5.0)
  np.testing.assert_array_equal(norm(changed)[:, :2], norm(x)[:, :2])
  np.testing.assert_array_equal(layers.GroupNormSwish(16, 0, rngs=nnx.Rngs(0))(x), nnx.swish(x))


@pytest.mark.parametrize('frames,latent_frames', [(1, 1), (5, 2), (17, 5)])
def test_encode_decode_shapes(tokenizer, frames, latent_frames):
  video = random_video(frames)
  tokens = tokenizer.encode(video)
  assert tokens.shape == (2, latent_frames, 4, 4)
  assert tokens.dtype == jnp.int32
  assert tokenizer.latent_shape(frames, HEIGHT, WIDTH) == (latent_frames, 4, 4)
  assert tokenizer.num_frames_for(latent_frames) == frames
  assert int(tokens.min()) >= 0 and int(tokens.max()) < tokenizer.codebook_size
  decoded = tokenizer.decode(tokens)
  assert decoded.shape == video.shape and decoded.dtype == jnp.float32
  assert float(jnp.max(jnp.abs(decoded))) <= 1.0


def test_forward_reconstruction_shape(forward):
  video = random_video(9)
  _, out = forward(video)
  assert out.reconstruction.shape == video.shape
  assert out.quantizer.codes.shape == (2, 3, 4, 4)
  assert out.features.shape[:-1] == video.shape[:-1]


def test_encoder_is_causal(forward):
  video = random_video(9)
  base, _ = forward(video)
  assert base.shape[1] == 3
  for frame in (1, 4, 5, 8):
    changed = video.copy()
    changed[:, frame] = -changed[:, frame]
    latents, _ = forward(changed)
    first_affected = 1 + (frame - 1) // 4
    np.testing.assert_allclose(
      latents[:, :first_affected],
      base[:, :first_affected],
      atol=1e-5,
      err_msg=f'changing frame {frame} changed latent frames before {first_affected}',
    )
    assert float(jnp.max(jnp.abs(latents[:, first_affected] - base[:, first_affected]))) > 1e-4


def test_decoder_is_causal(model):
  latents = jax.random.normal(jax.random.key(0), (2, 3, 4, 4, model.quantizer.dim))
  decoder = jax.jit(lambda x: model.decoder(x))
  base = decoder(latents)
  assert base.shape[1] == 9
  changed = decoder(latents.at[:, 2].set(-latents[:, 2]))
  # Latent frame 2 decodes to frames 5..8; frames 0..4 must not move.
  np.testing.assert_allclose(changed[:, :5], base[:, :5], atol=1e-5)
  assert float(jnp.max(jnp.abs(changed[:, 5:] - base[:, 5:]))) > 1e-4


def test_image_is_a_one_frame_video(tokenizer):
  video = random_video(5)
  np.testing.assert_array_equal(tokenizer.encode(video[:, :1]), tokenizer.encode(video)[:, :1])


def test_rejects_sizes_that_do_not_tokenize(tokenizer):
  with pytest.raises(ValueError, match='1 \\+ 4 \\* k'):
    tokenizer.encode(random_video(4))
  with pytest.raises(ValueError, match='multiples'):
    tokenizer.latent_shape(5, 10, 16)


def test_uint8_round_trip_and_pure_functions(tokenizer):
  video = np.random.default_rng(1).integers(0, 256, (2, 5, HEIGHT, WIDTH, 3), dtype=np.uint8)
  tokens = tokenizer.encode_uint8(video)
  decoded = tokenizer.decode_uint8(tokens)
  assert decoded.shape == video.shape and decoded.dtype == np.uint8
  np.testing.assert_array_equal(decoded, np.round((tokenizer.decode(tokens) + 1) * 127.5))
  float_video = video.astype(np.float32) / 127.5 - 1.0

  @jax.jit
  def pure(state, video):  # As another stage's jitted step would use them.
    tokens = encode_fn(tokenizer.graphdef, state, video)
    return tokens, decode_fn(tokenizer.graphdef, state, tokens)

  pure_tokens, pure_video = pure(tokenizer.state, float_video)
  np.testing.assert_array_equal(pure_tokens, tokens)
  np.testing.assert_allclose(pure_video, tokenizer.decode(tokens), atol=1e-5)


def test_parameters_carry_logical_axes(model):
  params = nnx.state(model, nnx.Param)
  leaves = jax.tree.leaves(params, is_leaf=lambda x: isinstance(x, nnx.Variable))
  for variable in leaves:
    axes = sharding.param_logical_axes(variable)
    assert axes is not None and len(axes) == variable.ndim, variable
  kernel_axes = sharding.param_logical_axes(model.encoder.conv_in.kernel)
  assert kernel_axes == layers.KERNEL_AXES


def test_analytic_flops_match_xla(model):
  video = jnp.asarray(random_video(5, batch=1))
  lowered = jax.jit(lambda v: model.decoder(model.encoder(v))).lower(video)
  xla_flops = lowered.cost_analysis()['flops']
  analytic = model.flops(5, HEIGHT, WIDTH)
  # XLA also counts norms, activations and bias adds; convs dominate.
  # XLA skips the multiplications with zero padding at frame borders.
  assert 0.9 < analytic / xla_flops < 1.25, (analytic, xla_flops)


def test_sharded_tokenizer_matches_single_device(model):
  from videogen import config_lib
  from videogen.parallel import mesh as mesh_lib

  mesh = mesh_lib.create_mesh(config_lib.mesh_config())
  rules = sharding.DEFAULT_LOGICAL_AXIS_RULES
  graphdef, state = nnx.split(model)
  shardings = sharding.tree_shardings(state, mesh, rules)
  sharded_state = jax.device_put(state, shardings)
  sharded = Tokenizer(graphdef, sharded_state, tiny_model_config(), mesh=mesh, rules=rules)
  single = Tokenizer(graphdef, state, tiny_model_config())
  video = random_video(5, batch=8)
  np.testing.assert_array_equal(sharded.encode(video), single.encode(video))


def test_bfloat16_activations_track_float32(model):
  video = jnp.asarray(random_video(5))
  half = create_model(tiny_model_config(), jax.random.key(0), dtype=jnp.bfloat16)
  quantized = jax.random.uniform(jax.random.key(1), (2, 2, 4, 4, model.quantizer.dim))
  # Compared before rounding to codes, which bf16 noise may flip.
  run = jax.jit(lambda m: (m.encoder(video), m.decoder(quantized)))
  for ours, theirs in zip(run(half), run(model), strict=True):
    assert ours.dtype == jnp.float32  # Latents and outputs stay float32.
    error = float(jnp.mean(jnp.abs(ours - theirs)))
    assert error < 0.05 * float(jnp.mean(jnp.abs(theirs))), error


def test_run_once_initialises_what_an_optimised_jit_does():
  """The unoptimised CPU compile of `create_model` gives bit-identical parameters."""
  config = vq_config.model_config('tiny')

  def build(key):
    return nnx.state(VideoAutoencoder(config, rngs=nnx.Rngs(params=key)))

  key = jax.random.key(3)
  expected = jax.jit(build)(key)
  actual = nnx.state(create_model(config, key))
  assert jax.tree.structure(actual) == jax.tree.structure(expected)
  for got, want in zip(jax.tree.leaves(actual), jax.tree.leaves(expected), strict=True):
    np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
