"""Every attention backend against XLA (Pallas kernels in interpret mode on CPU)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from videogen.transformer import attention

ON_GPU = jax.default_backend() == 'gpu'


def _qkv(batch=2, q_length=24, kv_length=24, heads=4, kv_heads=2, head_dim=16, seed=0):
  keys = jax.random.split(jax.random.key(seed), 3)
  q = jax.random.normal(keys[0], (batch, q_length, heads, head_dim))
  k = jax.random.normal(keys[1], (batch, kv_length, kv_heads, head_dim))
  v = jax.random.normal(keys[2], (batch, kv_length, kv_heads, head_dim))
  return q, k, v


def _padding_mask(batch, length, lengths):
  return jnp.arange(length)[None, :] < jnp.asarray(lengths)[:, None]


@pytest.mark.parametrize('causal', [True, False])
def test_xla_matches_plain_softmax(causal):
  q, k, v = _qkv()
  mask = None if causal else _padding_mask(2, 24, [7, 24])
  out = attention.dot_product_attention(q, k, v, causal=causal, kv_mask=mask, backend='xla')
  expected = attention.reference_attention(q, k, v, causal=causal, kv_mask=mask)
  np.testing.assert_allclose(out, expected, atol=1e-5)


@pytest.mark.parametrize('kv_heads', [1, 2, 4])
def test_xla_values_and_gradients_match_jax_nn(kv_heads):
  # The 'xla' backend is hand-written (heads-major); jax.nn's own is the definition.
  q, k, v = _qkv(q_length=24, kv_length=24, heads=4, kv_heads=kv_heads)
  mask = _padding_mask(2, 24, [24, 19])  # Causal and padded at once (every row keeps key 0).
  cotangent = jax.random.normal(jax.random.key(1), q.shape)

  def loss(attend, q, k, v):
    return jnp.sum(attend(q, k, v) * cotangent)

  def ours(q, k, v):
    return attention.dot_product_attention(q, k, v, causal=True, kv_mask=mask, backend='xla')

  def theirs(q, k, v):
    return jax.nn.dot_product_attention(
      q, k, v, mask=mask[:, None, None, :], is_causal=True, implementation='xla'
    )

  np.testing.assert_allclose(ours(q, k, v), theirs(q, k, v), atol=1e-5)
  for got, want in zip(
    jax.grad(loss, argnums=(1, 2, 3))(ours, q, k, v),
    jax.grad(loss, argnums=(1, 2, 3))(theirs, q, k, v),
    strict=True,
  ):
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_heads_major_cache_layout_matches_xla():
  # One decoding query against a partly filled cache, grouped-query heads.
  q, k, v = _qkv(q_length=1, kv_length=24)
  mask = _padding_mask(2, 24, [5, 17])
  out = attention.dot_product_attention(
    q, jnp.swapaxes(k, 1, 2), jnp.swapaxes(v, 1, 2), kv_mask=mask, kv_layout='bhtd'
  )
  expected = attention.dot_product_attention(q, k, v, kv_mask=mask, backend='xla')
  np.testing.assert_allclose(out, expected, atol=1e-5)
  with pytest.raises(ValueError, match='bhtd'):
    attention.dot_product_attention(q, k, v, causal=True, kv_layout='bhtd')


@pytest.mark.parametrize('kernel', ['splash', 'mha'])
def test_pallas_causal_matches_xla(kernel):
  # 24 is not a tile multiple: exercises the padding of the sequence.
  q, k, v = _qkv()
  out = attention.dot_product_attention(
    q, k, v, causal=True, backend='pallas', pallas_kernel=kernel, interpret=True
  )
  expected = attention.dot_product_attention(q, k, v, causal=True, backend='xla')
  np.testing.assert_allclose(out, expected, atol=2e-6)


def test_splash_tiles_divide_the_aligned_length_and_match_xla():
  # 1280 positions (the 17x128x128 clips' tokens) take 5 tiles of 256, not 512
  # padded to 1536; 600 takes 5 causal tiles of 128 (blocks skipped, blocks
  # partly masked, the last one padded).
  assert [attention._block_size(n, 128, 512) for n in (192, 600, 1280, 5120)] == [
    256, 128, 256, 512,
  ]  # fmt: skip
  q, k, v = _qkv(batch=1, q_length=600, kv_length=600)
  out = attention.dot_product_attention(
    q, k, v, causal=True, backend='pallas', pallas_kernel='splash', interpret=True
  )
  expected = attention.dot_product_attention(q, k, v, causal=True, backend='xla')
  np.testing.assert_allclose(out, expected, atol=2e-6)


def test_splash_key_padding_mask_and_cross_lengths_match_xla():
  # Cross-attention shape: 24 video queries over 10 text keys, ragged text.
  q, k, v = _qkv(q_length=24, kv_length=10)
  mask = _padding_mask(2, 10, [3, 10])
  out = attention.dot_product_attention(
    q, k, v, kv_mask=mask, backend='pallas', pallas_kernel='splash', interpret=True
  )
  expected = attention.dot_product_attention(q, k, v, kv_mask=mask, backend='xla')
  np.testing.assert_allclose(out, expected, atol=2e-6)


def test_pallas_gradients_match_xla():
  q, k, v = _qkv(batch=1, q_length=16, kv_length=16)

  def loss(q, k, v, **kwargs):
    return jnp.sum(attention.dot_product_attention(q, k, v, causal=True, **kwargs) ** 2)

  expected = jax.grad(loss, argnums=(0, 1, 2))(q, k, v, backend='xla')
  for kernel in ('splash', 'mha'):
    grads = jax.grad(loss, argnums=(0, 1, 2))(
      q, k, v, backend='pallas', pallas_kernel=kernel, interpret=True
    )
    for got, want in zip(grads, expected, strict=True):
      np.testing.assert_allclose(got, want, atol=2e-5, err_msg=kernel)


def test_gpu_kernel_rejects_key_mask():
  q, k, v = _qkv()
  with pytest.raises(ValueError, match='no key padding mask'):
    attention.dot_product_attention(
      q,
      k,
      v,
      kv_mask=_padding_mask(2, 24, [5, 24]),
      backend='pallas',
      pallas_kernel='mha',
      interpret=True,
    )
  assert not attention.supports_kv_mask('pallas', platform='gpu')
  assert attention.supports_kv_mask('pallas', platform='tpu')


def test_auto_resolves_by_platform():
  assert attention.resolve_backend('auto', jnp.float32, platform='cpu') == 'xla'
  assert attention.resolve_backend('auto', jnp.bfloat16, platform='cpu') == 'xla'
  assert attention.resolve_backend('auto', jnp.bfloat16, platform='gpu') == 'cudnn'
  assert attention.resolve_backend('auto', jnp.float32, platform='gpu') == 'xla'
  assert attention.resolve_backend('auto', jnp.float32, platform='tpu') == 'pallas'
  if jax.default_backend() == 'cpu':
    assert attention.resolve_backend('auto') == 'xla'
  with pytest.raises(ValueError, match='Unknown attention backend'):
    attention.resolve_backend('flash')


def test_pallas_on_cpu_without_interpret_names_the_fix():
  if jax.default_backend() != 'cpu':
    pytest.skip('checks the CPU error message')
  q, k, v = _qkv()
  with pytest.raises(ValueError, match='interpret=True'):
    attention.dot_product_attention(q, k, v, causal=True, backend='pallas')


@pytest.mark.skipif(not ON_GPU, reason='cuDNN flash attention needs an NVIDIA GPU; CPU-only here')
def test_cudnn_matches_xla():
  q, k, v = (x.astype(jnp.bfloat16) for x in _qkv(head_dim=64))
  mask = _padding_mask(2, 24, [9, 24])
  for causal, kv_mask in ((True, None), (False, mask)):
    out = attention.dot_product_attention(q, k, v, causal=causal, kv_mask=kv_mask, backend='cudnn')
    expected = attention.dot_product_attention(
      q, k, v, causal=causal, kv_mask=kv_mask, backend='xla'
    )
    np.testing.assert_allclose(out.astype(jnp.float32), expected.astype(jnp.float32), atol=2e-2)


def test_cudnn_off_gpu_raises_clearly():
  if ON_GPU:
    pytest.skip('this is the off-GPU behaviour')
  q, k, v = _qkv()
  with pytest.raises(ValueError, match='needs an NVIDIA GPU'):
    attention.dot_product_attention(q, k, v, causal=True, backend='cudnn')
