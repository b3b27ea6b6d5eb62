"""Pre-tokenized training clips: run the frozen video tokenizer once, not every step.

On CPU the tokenizer's encoder costs more than a small transformer step, so
with `config.tokenizer.cache_tokens` the training split is encoded once into

  <workdir>/token_cache/<key>/tokens-PPPPP-of-NNNNN.npy    int32 [n, t, h, w]
  <workdir>/token_cache/<key>/captions-PPPPP-of-NNNNN.npy  unicode [n]
  <workdir>/token_cache/<key>/done-PPPPP-of-NNNNN.json     written last

(one set per JAX process, each encoding its shard), where <key> is a digest
of everything the tokens depend on (tokenizer checkpoint, data settings,
process count), so a changed setting makes a new cache rather than reusing a
stale one. Training then reads the tokens through the data pipeline's
`batched_iterator` (shuffled, repeated, resumable). Each clip is cached once,
from its first frame (the video pipeline's eval order), so the random
temporal crops of video training are not part of the cache.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from typing import Any, Callable

import jax
import ml_collections
import numpy as np
from etils import epath

CACHE_DIR_NAME = 'token_cache'


def cache_key(config: ml_collections.ConfigDict, process_count: int) -> str:
  """A digest of what the cached tokens depend on."""
  data = config.data
  described = {
    'tokenizer': os.path.abspath(config.tokenizer.checkpoint),
    'data': {
      key: data[key]
      for key in sorted(data.keys())
      if key not in ('worker_count', 'read_threads', 'prefetch_buffer_size')
    },
    'process_count': process_count,
  }
  return hashlib.sha256(json.dumps(described, sort_keys=True, default=str).encode()).hexdigest()[
    :16
  ]


def cache_directory(
  config: ml_collections.ConfigDict,
  workdir: str | os.PathLike,
  process_count: int | None = None,
) -> epath.Path:
  process_count = jax.process_count() if process_count is None else process_count
  return epath.Path(workdir) / CACHE_DIR_NAME / cache_key(config, process_count)


def _shard_name(prefix: str, index: int, count: int, suffix: str) -> str:
  return f'{prefix}-{index:05d}-of-{count:05d}{suffix}'


def build_token_cache(
  config: ml_collections.ConfigDict,
  directory: epath.Path,
  encode: Callable[[np.ndarray], np.ndarray],
  *,
  process_index: int | None = None,
  process_count: int | None = None,
) -> int:
  """Encodes this process's shard of the training split, unless already cached.

  Args:
    config: the training config (data, batch size, seed).
    directory: the cache directory (`cache_directory`).
    encode: video float32 [b, T, H, W, 3] in [-1, 1] -> int tokens [b, t, h, w]
      (numpy, or a JAX array still being computed: see `Tokenizer.device_encoder`).
    process_index, process_count: default from JAX.

  Returns:
    Number of clips this call encoded (0 when the shard was cached).
  """
  from videogen.data import pipeline  # noqa: PLC0415  (TFDS: import only when building)

  index = jax.process_index() if process_index is None else process_index
  count = jax.process_count() if process_count is None else process_count
  done = directory / _shard_name('done', index, count, '.json')
  if done.exists():
    return 0
  directory.mkdir(parents=True, exist_ok=True)
  iterator = pipeline.create_iterator(
    config,
    config.data.train_split,
    train=False,
    process_index=index,
    process_count=count,
    drop_remainder=False,
  )
  tokens, captions, pending = [], [], None
  for batch in iterator:
    # Read the previous batch's tokens only after this one is dispatched, so the
    # devices encode while the host reads and decodes the next clips.
    encoded = encode(batch['video'])
    if pending is not None:
      tokens.append(np.asarray(pending, np.int32))
    pending = encoded
    captions.extend(str(caption) for caption in batch['caption'])
  if pending is not None:
    tokens.append(np.asarray(pending, np.int32))
  tokens = np.concatenate(tokens) if tokens else np.zeros((0,), np.int32)
  for prefix, array in (
    ('tokens', tokens),
    ('captions', np.asarray(captions, dtype=np.str_)),
  ):
    final = directory / _shard_name(prefix, index, count, '.npy')
    temporary = directory / f'.tmp-{final.name}-{os.getpid()}.npy'
    with temporary.open('wb') as f:
      np.save(f, array, allow_pickle=False)
    temporary.replace(final)
  done.write_text(json.dumps({'clips': len(captions), 'shape': list(tokens.shape)}) + '\n')
  return len(captions)


@dataclasses.dataclass
class TokenCacheSource:
  """Random access to every cached clip: {'tokens': int32 [t, h, w], 'caption': str}."""

  directory: str
  process_count: int

  def __post_init__(self):
    directory = epath.Path(self.directory)
    tokens, captions = [], []
    for index in range(self.process_count):
      if not (directory / _shard_name('done', index, self.process_count, '.json')).exists():
        raise FileNotFoundError(
          f'Token cache shard {index} of {self.process_count} is missing in {directory}; '
          'build it with build_token_cache on every process first.'
        )
      tokens.append(
        np.load(
          directory / _shard_name('tokens', index, self.process_count, '.npy'),
          mmap_mode='r',
          allow_pickle=False,
        )
      )
      captions.append(
        np.load(
          directory / _shard_name('captions', index, self.process_count, '.npy'),
          allow_pickle=False,
        )
      )
    self._tokens = tokens
    self._captions = np.concatenate(captions)
    self._offsets = np.cumsum([0] + [len(t) for t in tokens])

  def __len__(self) -> int:
    return int(self._offsets[-1])

  def __getitem__(self, index: int) -> dict[str, Any]:
    shard = int(np.searchsorted(self._offsets, index, side='right') - 1)
    local = index - int(self._offsets[shard])
    return {
      'tokens': np.asarray(self._tokens[shard][local], np.int32),
      'caption': str(self._captions[index]),
    }


@dataclasses.dataclass(frozen=True)
class CaptionFeatures:
  """Per-batch: captions -> text features (like the video pipeline)."""

  text_features: Callable[[list[str]], dict[str, np.ndarray]]

  def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    captions = [str(caption) for caption in batch['caption']]
    return {
      'tokens': np.asarray(batch['tokens'], np.int32),
      'caption': np.asarray(batch['caption'], dtype=str),
      **self.text_features(captions),
    }


def token_iterator(
  config: ml_collections.ConfigDict,
  directory: epath.Path,
  text_features: Callable[[list[str]], dict[str, np.ndarray]],
  *,
  process_count: int | None = None,
):
  """Shuffled, repeated, resumable per-process batches of cached tokens.

  Returns:
    A grain iterator of {'tokens': int32 [b, t, h, w], 'caption': str [b],
    and the arrays of `text_features`}, b = batch_size // process_count.
  """
  from videogen.data import pipeline  # noqa: PLC0415

  count = jax.process_count() if process_count is None else process_count
  return pipeline.batched_iterator(
    TokenCacheSource(str(directory), count),
    batch_size=config.batch_size,
    train=True,
    seed=config.seed,
    batch_fn=CaptionFeatures(text_features),
  )
