"""The offline default T5, `config.text` loading and the caption embedding cache."""

import itertools
import json
import time

import numpy as np
import pytest

from videogen.text import (
  EmbeddingCache,
  T5Encoder,
  load_text_encoder,
  open_embedding_cache,
)
from videogen.text.config import text_config
from videogen.text.default import ensure_default_t5

CAPTIONS = [
  f'a {c} {s} moving {m}'
  for c, s, m in itertools.product(('red', 'green', 'blue'), ('square', 'circle'), ('left', 'up'))
]
SIZES = dict(d_model=32, num_layers=1, num_heads=2, d_kv=8, d_ff=64, max_vocab_size=128)


@pytest.fixture(scope='module')
def default_dir(tmp_path_factory):
  return ensure_default_t5(tmp_path_factory.mktemp('t5') / 'text_encoder', CAPTIONS, **SIZES)


@pytest.fixture(scope='module')
def encoder(default_dir):
  return T5Encoder.from_pretrained(default_dir)


def test_default_layout_vocab_and_idempotence(default_dir, encoder):
  config = json.loads(open(f'{default_dir}/config.json').read())
  assert (
    config['architectures'] == ['T5EncoderModel'] and config['feed_forward_proj'] == 'gated-gelu'
  )
  # The embedding is sized from the trained tokenizer, not from max_vocab_size.
  assert config['vocab_size'] == encoder.tokenizer.vocab_size < SIZES['max_vocab_size']
  weights = open(f'{default_dir}/model.safetensors', 'rb').read()
  start = time.perf_counter()
  assert ensure_default_t5(default_dir, reversed(CAPTIONS), **SIZES) == default_dir
  assert time.perf_counter() - start < 1.0
  assert open(f'{default_dir}/model.safetensors', 'rb').read() == weights
  with pytest.raises(ValueError, match=r"different \['d_model'\]"):
    ensure_default_t5(default_dir, CAPTIONS, **{**SIZES, 'd_model': 64})
  with pytest.raises(ValueError, match='captions_sha256'):
    ensure_default_t5(default_dir, CAPTIONS[:-1], **SIZES)


def test_default_is_deterministic(default_dir, tmp_path):
  again = ensure_default_t5(tmp_path / 'again', CAPTIONS[::-1] + CAPTIONS, **SIZES)
  for name in ('model.safetensors', 'spiece.model', 'config.json'):
    assert open(f'{again}/{name}', 'rb').read() == open(f'{default_dir}/{name}', 'rb').read()
  with pytest.raises(ValueError, match='no non-empty captions'):
    ensure_default_t5(tmp_path / 'empty', [], **SIZES)


def test_encode_text_distinct_captions(encoder):
  embeddings, mask = encoder.encode_text(CAPTIONS, max_length=8)
  assert embeddings.shape == (len(CAPTIONS), 8, encoder.embed_dim) and mask.shape == (
    len(CAPTIONS),
    8,
  )
  pooled = np.asarray((embeddings * mask[..., None]).sum(1))
  distances = np.linalg.norm(pooled[:, None] - pooled[None], axis=-1)
  assert np.all(distances[~np.eye(len(CAPTIONS), dtype=bool)] > 1e-3)
  empty, empty_mask = encoder.encode_text([], max_length=8)
  assert empty.shape == (0, 8, encoder.embed_dim) and empty_mask.shape == (0, 8)


def test_load_text_encoder_from_config(tmp_path):
  config = text_config()
  config.default_model.update(SIZES)
  with pytest.raises(FileNotFoundError, match='No default text encoder'):
    load_text_encoder(config, workdir=tmp_path)
  encoder = load_text_encoder(config, workdir=tmp_path, captions=CAPTIONS)
  assert (tmp_path / 'text_encoder' / 'spiece.model').exists()
  assert encoder.embed_dim == SIZES['d_model']
  again = load_text_encoder(config, workdir=tmp_path)  # Sampling: no captions needed.
  np.testing.assert_array_equal(
    np.asarray(again.encode_text(CAPTIONS[:2])[0]),
    np.asarray(encoder.encode_text(CAPTIONS[:2])[0]),
  )
  config.path = str(tmp_path / 'missing')
  with pytest.raises(FileNotFoundError, match='missing'):
    load_text_encoder(config, workdir=tmp_path)


def test_embedding_cache(encoder, tmp_path):
  config = text_config()
  assert open_embedding_cache(config, encoder, workdir=tmp_path) is None
  config.cache_embeddings = True
  config.max_length = 8
  cache = open_embedding_cache(config, encoder, workdir=tmp_path)
  assert cache.precompute(CAPTIONS[:4]) == 4 and len(cache) == 4
  batch = [CAPTIONS[5], CAPTIONS[0], CAPTIONS[5]]  # One miss (repeated), one hit.
  embeddings, mask = cache.lookup(batch)
  expected, expected_mask = encoder.encode_text(batch, max_length=8)
  np.testing.assert_allclose(embeddings, np.asarray(expected), atol=1e-6)
  np.testing.assert_array_equal(mask, np.asarray(expected_mask))
  assert len(cache) == 5

  reopened = EmbeddingCache(tmp_path / 'text_cache', encoder, 8)
  assert len(reopened) == 5 and CAPTIONS[5] in reopened
  np.testing.assert_array_equal(reopened.lookup(batch)[0], embeddings)
  assert reopened.lookup([])[0].shape == (0, 8, encoder.embed_dim)
  with pytest.raises(ValueError, match=r"different \['max_length'\]"):
    EmbeddingCache(tmp_path / 'text_cache', encoder, 16)
