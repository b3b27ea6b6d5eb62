"""The offline default text encoder: a tiny random-init T5 with a caption-trained tokenizer.

The shapes quickstart must run without downloads, so instead of a released
T5 it builds, once, a small T5 encoder whose weights are a seeded random
init, and a sentencepiece model trained on the dataset's captions, and saves
them in the same HF layout as a real checkpoint (config.json,
model.safetensors, spiece.model), so they load through the same
`T5Encoder.from_pretrained`.

Why a random frozen T5 suffices there: shapes captions ("a red circle moving
left") are distinct token sequences, and a random T5 maps distinct sequences
to distinct, deterministic embeddings; the transformer learns to read them.
It carries no language knowledge: prompts with unseen words fall back to
characters and mean nothing to the model. Use a real T5 (`text.path`) for
open-ended prompts.

Building is deterministic (sorted unique captions, one sentencepiece thread,
seeded init), and a `videogen_default.json` stamp records what was built, so
a second call returns at once and a call with other captions or sizes is an
error rather than a silently different encoder under a trained model.
"""

from __future__ import annotations

import hashlib
import io
import json
from typing import Any, Iterable

import ml_collections
import sentencepiece as spm
from etils import epath

from videogen.text import checkpoint
from videogen.text.encoder import T5Encoder
from videogen.text.t5 import T5EncoderConfig
from videogen.text.tokenizer import EOS_ID, PAD_ID, UNK_ID, SentencePieceTokenizer

STAMP_NAME = 'videogen_default.json'


def train_sentencepiece(captions: Iterable[str], max_vocab_size: int) -> bytes:
  """Trains a BPE sentencepiece model with T5's special ids on `captions`.

  BPE, because on a few hundred short captions it learns whole words
  ("circle" is one piece) where unigram stays near characters. Few distinct
  captions cannot support a large vocab; `hard_vocab_limit=False` lets the
  trainer stop short of `max_vocab_size`, so callers must size the embedding
  from the trained model's piece count.

  Args:
    captions: training sentences (deduplicated and sorted here).
    max_vocab_size: upper bound on the number of pieces.

  Returns:
    The serialized model proto.
  """
  sentences = sorted({c.strip() for c in captions if c.strip()})
  if not sentences:
    raise ValueError('Cannot train the default tokenizer: no non-empty captions were given.')
  buffer = io.BytesIO()
  spm.SentencePieceTrainer.train(
    sentence_iterator=iter(sentences),
    model_writer=buffer,
    vocab_size=max_vocab_size,
    hard_vocab_limit=False,
    model_type='bpe',
    character_coverage=1.0,
    pad_id=PAD_ID,
    eos_id=EOS_ID,
    unk_id=UNK_ID,
    bos_id=-1,
    num_threads=1,  # Deterministic merges.
    minloglevel=2,
  )
  return buffer.getvalue()


def _captions_digest(captions: Iterable[str]) -> tuple[str, int]:
  sentences = sorted({c.strip() for c in captions if c.strip()})
  return hashlib.sha256('\n'.join(sentences).encode()).hexdigest(), len(sentences)


def ensure_default_t5(
  out_dir: str | epath.PathLike,
  captions: Iterable[str],
  *,
  seed: int = 0,
  d_model: int = 64,
  num_layers: int = 2,
  num_heads: int = 4,
  d_kv: int = 16,
  d_ff: int = 128,
  feed_forward_proj: str = 'gated-gelu',
  max_vocab_size: int = 256,
) -> str:
  """Builds the default T5 in HF layout in `out_dir` unless it is already there.

  Args:
    out_dir: destination directory (created).
    captions: the dataset's training captions (any order, duplicates fine).
    seed: seeds the random init.
    d_model, num_layers, num_heads, d_kv, d_ff, feed_forward_proj: encoder sizes.
    max_vocab_size: upper bound for the sentencepiece vocab.

  Returns:
    `out_dir` as a string, ready for `T5Encoder.from_pretrained`.

  Raises:
    ValueError: no captions, or `out_dir` holds a default built from other
      captions or sizes.
  """
  directory = epath.Path(out_dir)
  captions = list(captions)
  digest, count = _captions_digest(captions)
  stamp = {
    'captions_sha256': digest,
    'num_captions': count,
    'seed': seed,
    'd_model': d_model,
    'num_layers': num_layers,
    'num_heads': num_heads,
    'd_kv': d_kv,
    'd_ff': d_ff,
    'feed_forward_proj': feed_forward_proj,
    'max_vocab_size': max_vocab_size,
  }
  stamp_file = directory / STAMP_NAME
  needed = (checkpoint.CONFIG_NAME, checkpoint.WEIGHTS_NAME, checkpoint.SPIECE_NAME)
  if stamp_file.exists() and all((directory / name).exists() for name in needed):
    existing = json.loads(stamp_file.read_text())
    if existing == stamp:
      return str(directory)
    changed = sorted(k for k in stamp if existing.get(k) != stamp[k])
    raise ValueError(
      f'{directory} holds a default text encoder built with different {changed}. '
      'A transformer trained on it would silently change conditioning; delete the '
      'directory to rebuild, or use another workdir.'
    )
  if not count:
    raise ValueError('Cannot build the default text encoder: no non-empty captions were given.')
  tokenizer = SentencePieceTokenizer(train_sentencepiece(captions, max_vocab_size))
  config = T5EncoderConfig(
    vocab_size=tokenizer.vocab_size,
    d_model=d_model,
    d_kv=d_kv,
    d_ff=d_ff,
    num_layers=num_layers,
    num_heads=num_heads,
    feed_forward_proj=feed_forward_proj,
  )
  T5Encoder.from_config(config, seed=seed, tokenizer=tokenizer).save_pretrained(directory)
  # The stamp goes last: its presence means every other file is complete.
  stamp_file.write_text(json.dumps(stamp, indent=2) + '\n')
  return str(directory)


def ensure_default_from_config(
  out_dir: str | epath.PathLike,
  captions: Iterable[str],
  model_config: ml_collections.ConfigDict,
) -> str:
  """`ensure_default_t5` with sizes from `text_config().default_model`."""
  values: dict[str, Any] = model_config.to_dict()
  return ensure_default_t5(out_dir, captions, **values)
