"""The sampler's log-probs equal the training forward pass's, token by token.

No guidance, temperature 1, no filtering: the log-probability the sampler
drew each token with must equal the teacher-forced log-probability of the
same clip under `Transformer.__call__` (the training forward pass). This
catches position, BOS and KV-cache mismatches that "cached = uncached
logits" tests miss, since both of those could share the same error.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from videogen.transformer import model, sampling
from videogen.transformer.layers import TransformerSpec

LATENT = (3, 2, 3)
TOLERANCE = 1e-4


@functools.lru_cache(maxsize=None)
def _model(position):
  spec = TransformerSpec(
    vocab_size=32,
    latent_shape=LATENT,
    text_dim=8,
    num_layers=2,
    embed_dim=32,
    num_heads=4,
    num_kv_heads=2,
    mlp_dim=48,
    max_latent_frames=8,
    position=position,
  )
  return model.init_transformer(spec, jax.random.key(0, impl='unsafe_rbg'))


def _text():
  text = jax.random.normal(jax.random.key(2), (2, 5, 8))
  return text, jnp.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])


@functools.partial(jax.jit, static_argnums=0)
def _teacher_forced(graphdef, state, window_tokens, text, mask, frame_offset):
  """log p(token_i | tokens_<i, text) from the training forward pass: [batch, length]."""
  net = nnx.merge(graphdef, state)
  flat = window_tokens.reshape(window_tokens.shape[0], -1)
  offset = jnp.full((flat.shape[0],), frame_offset, jnp.int32)
  logits = net(model.shift_right(flat, net.spec.bos_id), text, mask, frame_offset=offset)
  log_probs = jax.nn.log_softmax(logits, axis=-1)
  return jnp.take_along_axis(log_probs, flat[..., None], axis=-1)[..., 0]


def _sample(position, **kwargs):
  text, mask = _text()
  return sampling.sample_tokens(
    _model(position),
    text,
    mask,
    latent_shape=LATENT,
    rng=jax.random.key(7),
    temperature=1.0,
    cfg_scale=None,
    return_log_probs=True,
    **kwargs,
  )


def _check_window(position, frames, sampled_log_probs, start, fixed):
  """Compares one window of frames [start, start + t) past its first `fixed` frames."""
  text, mask = _text()
  graphdef, state = nnx.split(_model(position))
  window = frames[:, start : start + LATENT[0]]
  expected = _teacher_forced(graphdef, state, window, text, mask, start)
  per_frame = LATENT[1] * LATENT[2]
  got = sampled_log_probs[:, start : start + LATENT[0]].reshape(2, -1)
  np.testing.assert_allclose(
    got[:, fixed * per_frame :], expected[:, fixed * per_frame :], atol=TOLERANCE
  )
  assert np.all(np.asarray(got[:, fixed * per_frame :]) < 0)


@pytest.mark.parametrize('position', ['rope3d', 'learned3d'])
@pytest.mark.parametrize('use_cache', [True, False])
def test_text_to_video_log_probs_match_teacher_forcing(position, use_cache):
  tokens, log_probs = _sample(position, use_cache=use_cache)
  assert tokens.shape == log_probs.shape == (2, *LATENT)
  _check_window(position, tokens, log_probs, start=0, fixed=0)


@pytest.mark.parametrize('position', ['rope3d', 'learned3d'])
def test_image_to_video_log_probs_match_teacher_forcing(position):
  prefix = (jnp.arange(2 * 2 * 3, dtype=jnp.int32).reshape(2, 1, 2, 3) * 5) % 32
  tokens, log_probs = _sample(position, prefix_tokens=prefix)
  np.testing.assert_array_equal(tokens[:, :1], prefix)
  np.testing.assert_array_equal(log_probs[:, :1], 0.0)  # Given, not drawn.
  _check_window(position, tokens, log_probs, start=0, fixed=1)


def test_long_video_windows_match_teacher_forcing_at_their_offsets():
  """A 5-frame video in windows of 3 carrying 1 frame: windows start at 0 and 2."""
  tokens, log_probs = _sample('rope3d', num_latent_frames=5, window_prefix_frames=1)
  assert tokens.shape == (2, 5, 2, 3)
  _check_window('rope3d', tokens, log_probs, start=0, fixed=0)
  _check_window('rope3d', tokens, log_probs, start=2, fixed=1)


def test_plain_sampling_api_is_unchanged():
  text, mask = _text()
  tokens = sampling.sample_tokens(
    _model('rope3d'), text, mask, latent_shape=LATENT, rng=jax.random.key(7)
  )
  assert isinstance(tokens, jax.Array) and tokens.shape == (2, *LATENT)
  with_log_probs, _ = _sample('rope3d')
  np.testing.assert_array_equal(tokens, with_log_probs)
