"""Sentencepiece tokenization with T5 conventions: eos, padding, truncation, bad input."""

import io
import itertools
import warnings

import numpy as np
import pytest
import sentencepiece as spm

from videogen.text import SentencePieceTokenizer
from videogen.text.default import train_sentencepiece

COLORS = ('red', 'green', 'blue', 'yellow', 'cyan', 'magenta', 'white', 'orange')
SHAPES = ('square', 'circle', 'triangle')
MOTIONS = ('left', 'right', 'up', 'down')
CAPTIONS = [f'a {c} {s} moving {m}' for c, s, m in itertools.product(COLORS, SHAPES, MOTIONS)]


@pytest.fixture(scope='module')
def model_proto():
  return train_sentencepiece(CAPTIONS * 2, max_vocab_size=1000)


def test_t5_ids_padding_and_mask(model_proto):
  tokenizer = SentencePieceTokenizer(model_proto)
  # Few distinct captions cannot fill 1000 pieces; the trained size is smaller.
  assert 20 < tokenizer.vocab_size < 1000
  ids, mask = tokenizer(['a red circle moving left', '', 'a blue square moving up'], max_length=8)
  assert ids.dtype == np.int32 and mask.dtype == np.int32 and ids.shape == (3, 8)
  pieces = tokenizer.encode(['a red circle moving left'])[0]
  assert len(pieces) == 5  # BPE learned whole words.
  np.testing.assert_array_equal(ids[0], pieces + [1, 0, 0])
  np.testing.assert_array_equal(mask[0], [1] * 6 + [0] * 2)
  np.testing.assert_array_equal(ids[1], [1] + [0] * 7)  # An empty prompt is just eos.
  assert tokenizer.decode(ids) == [
    'a red circle moving left',
    '',
    'a blue square moving up',
  ]
  # Words never seen fall back to characters or unk (2); never pad or eos.
  unseen = tokenizer.encode(['a purple star'])[0]
  assert 0 not in unseen and 1 not in unseen


def test_truncation_keeps_eos_and_warns_once(model_proto):
  tokenizer = SentencePieceTokenizer(model_proto)
  long = ' and '.join(CAPTIONS[:5])
  with pytest.warns(UserWarning, match='truncated'):
    ids, mask = tokenizer([long, 'a red circle moving left'], max_length=6)
  assert mask.sum(1).tolist() == [6, 6]
  assert ids[0, -1] == 1 and ids[1, -1] == 1
  with warnings.catch_warnings():
    warnings.simplefilter('error')
    tokenizer([long], max_length=6)  # Second truncation: silent.


def test_bad_input(model_proto, tmp_path):
  tokenizer = SentencePieceTokenizer(model_proto)
  ids, mask = tokenizer([], max_length=5)
  assert ids.shape == (0, 5) and mask.shape == (0, 5)
  with pytest.raises(TypeError, match='sequence of strings'):
    tokenizer('a red circle', max_length=5)
  with pytest.raises(ValueError, match='max_length'):
    tokenizer(['a'], max_length=0)
  with pytest.raises(FileNotFoundError, match='not found'):
    SentencePieceTokenizer(tmp_path / 'spiece.model')
  with pytest.raises(ValueError, match='no non-empty captions'):
    train_sentencepiece(['', '  '], max_vocab_size=64)


def test_rejects_non_t5_special_ids():
  buffer = io.BytesIO()
  # sentencepiece's own defaults: unk 0, bos 1, eos 2, no pad.
  spm.SentencePieceTrainer.train(
    sentence_iterator=iter(CAPTIONS),
    model_writer=buffer,
    vocab_size=40,
    hard_vocab_limit=False,
    minloglevel=2,
  )
  with pytest.raises(ValueError, match='Not a T5 sentencepiece model'):
    SentencePieceTokenizer(buffer.getvalue())
