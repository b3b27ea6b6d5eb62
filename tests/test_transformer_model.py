"""The transformer: cached vs full forward, positions, sharding names, configs."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from videogen.parallel import sharding
from videogen.transformer import config as transformer_config
from videogen.transformer import losses, model, sampling
from videogen.transformer.layers import TransformerSpec, rope_split

LATENT = (3, 2, 3)


def _spec(**overrides):
  values = dict(
    vocab_size=32,
    latent_shape=LATENT,
    text_dim=8,
    num_layers=2,
    embed_dim=32,
    num_heads=4,
    num_kv_heads=2,
    mlp_dim=48,
    max_latent_frames=8,
  )
  values.update(overrides)
  return TransformerSpec(**values)


@functools.lru_cache(maxsize=None)
def _build(spec):
  # rbg keys: threefry initialisers take seconds each to compile on CPU.
  return model.init_transformer(spec, jax.random.key(0, impl='unsafe_rbg'))


@functools.partial(jax.jit, static_argnums=0)
def _apply(graphdef, state, args, kwargs):
  return nnx.merge(graphdef, state)(*args, **kwargs)


def _forward(net, *args, **kwargs):
  """net(*args, **kwargs) under jit (eager NNX dispatches op by op), compiled once per shape."""
  graphdef, state = nnx.split(net)
  return _apply(graphdef, state, args, kwargs)


def _inputs(batch=2, seed=1):
  keys = jax.random.split(jax.random.key(seed), 2)
  tokens = jax.random.randint(keys[0], (batch, *LATENT), 0, 32)
  text = jax.random.normal(keys[1], (batch, 5, 8))
  text_mask = jnp.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])[:batch]
  return tokens, text, text_mask


@pytest.mark.parametrize(
  'overrides',
  [
    dict(position='rope3d', scan_layers=True),
    dict(position='learned3d', scan_layers=False, mlp='gelu', qk_norm=False),
  ],
)
def test_cached_decoding_matches_full_forward(overrides):
  spec = _spec(**overrides)
  transformer = _build(spec)
  tokens, text, text_mask = _inputs()
  inputs = model.shift_right(tokens, spec.bos_id)
  offset = jnp.array([0, 4])  # Row 1 sits past the 3 training latent frames.

  @jax.jit
  def both(state):
    net = nnx.merge(graphdef, state)
    full = net(inputs, text, text_mask, frame_offset=offset)
    cached = sampling.cached_logits(
      net, inputs, text, text_mask, prefill_length=5, frame_offset=offset
    )
    return full, cached

  graphdef, state = nnx.split(transformer)
  full, cached = both(state)
  assert full.shape == (2, spec.seq_length, spec.vocab_size) and full.dtype == jnp.float32
  np.testing.assert_allclose(cached, full, atol=1e-4)


def test_rope_depends_only_on_relative_time_and_learned_does_not():
  tokens, text, text_mask = _inputs(batch=1)
  for position, invariant in (('rope3d', True), ('learned3d', False)):
    spec = _spec(position=position)
    net = _build(spec)
    inputs = model.shift_right(tokens, spec.bos_id)
    at_start = _forward(net, inputs, text, text_mask, frame_offset=jnp.array([0]))
    # Offset 5: frames 5..7, all beyond the 3 frames of a training clip.
    beyond = _forward(net, inputs, text, text_mask, frame_offset=jnp.array([5]))
    assert bool(jnp.all(jnp.isfinite(beyond)))
    assert np.allclose(at_start, beyond, atol=1e-4) == invariant, position


def test_text_drop_uses_null_text_and_ignores_the_caption():
  spec = _spec()
  net = _build(spec)
  tokens, text, text_mask = _inputs()
  inputs = model.shift_right(tokens, spec.bos_id)
  drop = jnp.array([True, True])
  dropped = _forward(net, inputs, text, text_mask, text_drop=drop)
  other_text = _forward(net, inputs, text * 3.0 + 1.0, jnp.ones_like(text_mask), text_drop=drop)
  np.testing.assert_allclose(dropped, other_text, atol=1e-5)
  conditional = _forward(net, inputs, text, text_mask)
  assert not np.allclose(dropped, conditional, atol=1e-3)


def test_padding_text_tokens_are_ignored():
  spec = _spec()
  net = _build(spec)
  tokens, text, text_mask = _inputs()
  inputs = model.shift_right(tokens, spec.bos_id)
  changed = text.at[0, 3:].set(100.0)  # Row 0 masks positions 3 and 4.
  np.testing.assert_allclose(
    _forward(net, inputs, changed, text_mask),
    _forward(net, inputs, text, text_mask),
    atol=1e-5,
  )


def test_every_parameter_has_logical_axes_and_layers_are_stacked():
  spec = _spec(position='learned3d')
  abstract = nnx.eval_shape(lambda: _build(spec))
  params = nnx.state(abstract, nnx.Param)
  flat = nnx.to_flat_state(params)
  known = {name for name, _ in sharding.DEFAULT_LOGICAL_AXIS_RULES}
  for path, variable in flat:
    axes = sharding.param_logical_axes(variable)
    assert axes is not None and len(axes) == len(variable.get_value().shape), path
    assert all(a is None or a in known for a in axes), (path, axes)
    if path[0] == 'blocks':
      assert axes[0] == 'layers' and variable.get_value().shape[0] == spec.num_layers, path
  assert model.count_params(abstract) == sum(int(np.prod(v.get_value().shape)) for _, v in flat)


def _remat_grads(policy, params, tokens, text, text_mask):
  spec = _spec(remat_policy=policy, dropout=0.1)
  graphdef = nnx.split(nnx.eval_shape(lambda: model.Transformer(spec, rngs=nnx.Rngs(0))))[0]
  inputs = model.shift_right(tokens, spec.bos_id)

  def loss(params):
    logits = nnx.merge(graphdef, params)(inputs, text, text_mask, dropout_key=jax.random.key(7))
    return losses.token_metrics(logits, tokens.reshape(2, -1), 1e-4)[0]

  return jax.jit(jax.grad(loss))(params)


def test_remat_and_dropout_paths_train():
  tokens, text, text_mask = _inputs()
  params = nnx.state(_build(_spec()), nnx.Param)
  plain = _remat_grads('none', params, tokens, text, text_mask)
  remat = _remat_grads('dots_saveable', params, tokens, text, text_mask)
  for a, b in zip(jax.tree.leaves(plain), jax.tree.leaves(remat), strict=True):
    np.testing.assert_allclose(a, b, atol=1e-5)


def test_bfloat16_compute_keeps_float32_params():
  spec = _spec(dtype='bfloat16')
  net = _build(spec)
  tokens, text, text_mask = _inputs()
  assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(nnx.state(net, nnx.Param)))
  logits = _forward(net, model.shift_right(tokens, spec.bos_id), text, text_mask)
  assert logits.dtype == jnp.float32 and bool(jnp.all(jnp.isfinite(logits)))


def test_token_metrics_values():
  logits = jnp.log(jnp.array([[[0.5, 0.25, 0.25], [0.1, 0.8, 0.1]]]))
  targets = jnp.array([[0, 2]])
  loss, metrics = losses.token_metrics(logits, targets, 0.0)
  expected = -(np.log(0.5) + np.log(0.1)) / 2
  np.testing.assert_allclose(metrics['cross_entropy'], expected, rtol=1e-5)
  np.testing.assert_allclose(metrics['bits_per_token'], expected / np.log(2), rtol=1e-5)
  np.testing.assert_allclose(metrics['accuracy'], 0.5)
  np.testing.assert_allclose(loss, expected, rtol=1e-5)
  _, with_z = losses.token_metrics(logits + 3.0, targets, 0.1)
  np.testing.assert_allclose(with_z['z_loss'], 0.1 * 9.0, rtol=1e-4)


def test_corrupt_inputs_replaces_only_clip_tokens_at_the_given_rate():
  inputs = jnp.full((64, 400), 1005, jnp.int32)  # An id outside the 1000 codes.
  key = jax.random.key(3)
  assert model.corrupt_inputs(inputs, key, 0.0, 10, 1000) is inputs
  out = np.asarray(model.corrupt_inputs(inputs, key, 0.25, 10, 1000))
  np.testing.assert_array_equal(out[:, :10], 1005)  # The prefix and BOS stay.
  replaced = out[:, 10:] != 1005
  assert abs(replaced.mean() - 0.25) < 0.01
  assert out[:, 10:][replaced].min() >= 0 and out[:, 10:][replaced].max() < 1000
  assert len(np.unique(out[:, 10:][replaced])) > 900  # Uniform over the codebook.
  np.testing.assert_array_equal(out, model.corrupt_inputs(inputs, key, 0.25, 10, 1000))
  # One probability per row: rows at 0 stay, the others get the scalar call's draws.
  row_prob = jnp.where(jnp.arange(64) % 2 == 0, 0.25, 0.0)
  per_row = np.asarray(model.corrupt_inputs(inputs, key, row_prob, 10, 1000))
  np.testing.assert_array_equal(per_row[1::2], 1005)
  np.testing.assert_array_equal(per_row[0::2], out[0::2])


def test_variants_and_flop_count():
  sizes = {}
  for variant in transformer_config.VARIANTS:
    config = transformer_config.model_config(variant)
    spec = TransformerSpec.from_config(
      config, vocab_size=4096, latent_shape=(5, 16, 16), text_dim=64
    )
    sizes[variant] = losses.matmul_params_per_token(spec)
  assert sizes['tiny'] < sizes['small'] < sizes['base'] < sizes['large'] < sizes['xl']
  assert sizes['xl'] > 1e9
  spec = _spec(num_layers=1)
  # One layer, batch 1: dense 2*P*N, text, causal self-attention and cross-attention terms.
  n, text_length = spec.seq_length, 5
  expected = (
    2 * losses.matmul_params_per_token(spec) * n
    + 2 * text_length * (8 * 32 + 2 * 32 * 2 * 8)
    + 4 * n * n * 32 / 2
    + 4 * n * text_length * 32
  )
  assert losses.forward_flops(spec, 1, n, text_length) == pytest.approx(expected)
  assert losses.train_step_flops(spec, 2, n, text_length) == pytest.approx(6 * expected)
  # The output layer over the last 3 positions only (a multi-task prefix has none).
  head = 2 * spec.embed_dim * spec.vocab_size * (n - 3)
  assert losses.forward_flops(spec, 1, n, text_length, 3) == pytest.approx(expected - head)
  with pytest.raises(ValueError, match='Unknown transformer variant'):
    transformer_config.model_config('huge')


def test_rope_split_covers_head_dim():
  for head_dim in (8, 16, 64, 128):
    assert sum(rope_split(head_dim)) == head_dim // 2


def test_init_gives_what_an_optimised_jit_does():
  """`init_transformer`'s unoptimised CPU compile gives the same parameters.

  Up to float32 rounding (a few ulp): the truncated normal's float transforms
  may round differently when not optimised; the random bits are the same.
  """
  spec = _spec()
  key = jax.random.key(5)
  expected = jax.jit(lambda k: nnx.split(model.Transformer(spec, rngs=nnx.Rngs(params=k)))[1])(key)
  actual = nnx.split(model.init_transformer(spec, key))[1]
  assert jax.tree.structure(actual) == jax.tree.structure(expected)
  for got, want in zip(jax.tree.leaves(actual), jax.tree.leaves(expected), strict=True):
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-6, atol=1e-7)
