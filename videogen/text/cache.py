"""Caption embedding cache: run a large frozen T5 once per caption, not every step.

A cache directory holds

  meta.json               what the embeddings were computed with (encoder
                          fingerprint, max_length, embed_dim, storage dtype)
  chunk-<digest>.npz      captions (unicode array), embeddings [n, L, D], mask [n, L]

npz files are written without pickles and read with `allow_pickle=False`.
Chunks are named by a digest of their contents and written to a temporary
name, then renamed, so several processes can fill one cache: identical work
gives the same file, different work different files. Everything is held in
host memory after opening (N captions * L * D * itemsize bytes).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from typing import Iterable, Sequence

import jax
import numpy as np
from etils import epath

from videogen.text import checkpoint
from videogen.text.encoder import T5Encoder

META_NAME = 'meta.json'
_STORAGE_DTYPES = ('float32', 'float16')


def encoder_fingerprint(encoder: T5Encoder) -> str:
  """A digest of the encoder's config, tokenizer and a sample of its weights.

  Cheap to compute for an XXL encoder (a few small slices leave the device),
  and different for any two checkpoints one would plausibly swap.
  """
  digest = hashlib.sha256()
  digest.update(json.dumps(checkpoint.config_to_hf_dict(encoder.config), sort_keys=True).encode())
  digest.update(str(encoder.network.dtype).encode())
  if encoder.tokenizer is not None:
    digest.update(encoder.tokenizer.model_proto)
  network = encoder.network
  samples = [
    network.final_norm[...],
    network.token_embedding[...][:8],
    network.layers.wo[...][:, :8, :8],
    network.layers.query[...][:, :8, :1],
  ]
  for sample in samples:
    digest.update(np.asarray(jax.device_get(sample), np.float32).tobytes())
  return digest.hexdigest()


class EmbeddingCache:
  """Caption -> (embeddings [L, D], mask [L]), computed by `encoder` on a miss."""

  def __init__(
    self,
    directory: str | epath.PathLike,
    encoder: T5Encoder,
    max_length: int,
    *,
    storage_dtype: str = 'float32',
    batch_size: int = 64,
    writable: bool = True,
  ):
    """Opens (or creates) a cache directory.

    Args:
      directory: where the cache lives.
      encoder: computes embeddings for captions not yet cached.
      max_length: L, tokens per caption.
      storage_dtype: 'float32' or 'float16' (halves memory and disk).
      batch_size: captions per encoder call when filling misses.
      writable: False to keep new embeddings in memory only (e.g. on every
        process but one).

    Raises:
      ValueError: the directory was filled by another encoder or max_length.
    """
    if storage_dtype not in _STORAGE_DTYPES:
      raise ValueError(f'storage_dtype must be one of {_STORAGE_DTYPES}, got {storage_dtype!r}.')
    self.directory = epath.Path(directory)
    self.encoder = encoder
    self.max_length = max_length
    self.batch_size = batch_size
    self.writable = writable
    self._dtype = np.dtype(storage_dtype)
    self._entries: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    meta = {
      'fingerprint': encoder_fingerprint(encoder),
      'max_length': max_length,
      'embed_dim': encoder.embed_dim,
      'storage_dtype': storage_dtype,
    }
    meta_file = self.directory / META_NAME
    if meta_file.exists():
      existing = json.loads(meta_file.read_text())
      changed = sorted(k for k in meta if existing.get(k) != meta[k])
      if changed:
        raise ValueError(
          f'The embedding cache {self.directory} was computed with different {changed}; '
          'point the cache elsewhere or delete it.'
        )
      for chunk in sorted(self.directory.glob('chunk-*.npz')):
        self._read_chunk(chunk)
    elif writable:
      self.directory.mkdir(parents=True, exist_ok=True)
      meta_file.write_text(json.dumps(meta, indent=2) + '\n')

  def __len__(self) -> int:
    return len(self._entries)

  def __contains__(self, caption: str) -> bool:
    return caption in self._entries

  def precompute(self, captions: Iterable[str]) -> int:
    """Computes and stores every caption not yet cached; returns how many."""
    missing = sorted({c for c in captions if c not in self._entries})
    for start in range(0, len(missing), self.batch_size):
      self._compute(missing[start : start + self.batch_size])
    return len(missing)

  def lookup(self, captions: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Embeddings of a batch of captions, computing (and storing) missing ones.

    Args:
      captions: B captions.

    Returns:
      embeddings float32 [B, L, D] and mask int32 [B, L].
    """
    self.precompute(captions)
    if not len(captions):
      return (
        np.zeros((0, self.max_length, self.encoder.embed_dim), np.float32),
        np.zeros((0, self.max_length), np.int32),
      )
    embeddings = np.stack([self._entries[c][0] for c in captions]).astype(np.float32)
    mask = np.stack([self._entries[c][1] for c in captions])
    return embeddings, mask

  def _compute(self, captions: list[str]) -> None:
    embeddings, mask = self.encoder.encode_text(captions, self.max_length)
    embeddings = np.asarray(embeddings).astype(self._dtype)
    mask = np.asarray(mask, np.int32)
    for i, caption in enumerate(captions):
      self._entries[caption] = (embeddings[i], mask[i])
    if self.writable:
      self._write_chunk(captions, embeddings, mask)

  def _write_chunk(self, captions: list[str], embeddings: np.ndarray, mask: np.ndarray) -> None:
    digest = hashlib.sha256('\n'.join(captions).encode()).hexdigest()[:24]
    buffer = io.BytesIO()
    np.savez(
      buffer,
      captions=np.array(captions, dtype=np.str_),
      embeddings=embeddings,
      mask=mask,
    )
    final = self.directory / f'chunk-{digest}.npz'
    temporary = self.directory / f'.tmp-{digest}-{os.getpid()}.npz'
    temporary.write_bytes(buffer.getvalue())
    temporary.replace(final)

  def _read_chunk(self, path: epath.Path) -> None:
    with np.load(io.BytesIO(path.read_bytes()), allow_pickle=False) as data:
      captions, embeddings, mask = data['captions'], data['embeddings'], data['mask']
    for i, caption in enumerate(captions.tolist()):
      self._entries[caption] = (embeddings[i], mask[i])
