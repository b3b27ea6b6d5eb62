"""`config.text` -> a ready `T5Encoder` (a real checkpoint or the offline default)."""

from __future__ import annotations

from typing import Any, Iterable, Sequence

import jax
import ml_collections
from etils import epath

from videogen.text import checkpoint
from videogen.text.cache import EmbeddingCache
from videogen.text.config import DEFAULT_DIR_NAME
from videogen.text.default import ensure_default_from_config
from videogen.text.encoder import T5Encoder

CACHE_DIR_NAME = 'text_cache'


def encoder_dir(text_config: ml_collections.ConfigDict, workdir: str | epath.PathLike) -> str:
  """The checkpoint directory `text_config` selects: `path`, or `<workdir>/text_encoder`."""
  return text_config.path or str(epath.Path(workdir) / DEFAULT_DIR_NAME)


def load_text_encoder(
  text_config: ml_collections.ConfigDict,
  *,
  workdir: str | epath.PathLike,
  captions: Iterable[str] | None = None,
  mesh: jax.sharding.Mesh | None = None,
  rules: Sequence[Sequence[Any]] | None = None,
) -> T5Encoder:
  """Loads the text encoder `text_config` names.

  Args:
    text_config: `config.text` (see `videogen.text.config.text_config`).
    workdir: the transformer workdir; the offline default lives in
      `<workdir>/text_encoder/`.
    captions: the dataset's training captions, to build the offline default
      when it is not there yet (ignored when `text_config.path` is set).
      None when only loading (sampling): the default must already exist.
    mesh, rules: shard the parameters on load (see `T5Encoder.from_pretrained`).

  Raises:
    FileNotFoundError: the default does not exist and no captions were given,
      or the named checkpoint is missing files.
  """
  directory = encoder_dir(text_config, workdir)
  if not text_config.path:
    if captions is not None:
      ensure_default_from_config(directory, captions, text_config.default_model)
    elif not (epath.Path(directory) / checkpoint.CONFIG_NAME).exists():
      raise FileNotFoundError(
        f'No default text encoder in {directory}; it is built from the dataset '
        'captions when training starts (pass captions=...), or set text.path.'
      )
  return T5Encoder.from_pretrained(
    directory,
    text_config.dtype,
    tokenizer_path=text_config.tokenizer_path or None,
    mesh=mesh,
    rules=rules,
  )


def open_embedding_cache(
  text_config: ml_collections.ConfigDict,
  encoder: T5Encoder,
  *,
  workdir: str | epath.PathLike,
  writable: bool = True,
) -> EmbeddingCache | None:
  """The caption embedding cache when `text_config.cache_embeddings`, else None.

  Lives in `text_config.cache_dir`, default `<workdir>/text_cache/`.
  """
  if not text_config.cache_embeddings:
    return None
  directory = text_config.cache_dir or str(epath.Path(workdir) / CACHE_DIR_NAME)
  return EmbeddingCache(directory, encoder, text_config.max_length, writable=writable)
