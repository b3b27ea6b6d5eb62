"""Sentencepiece tokenization with T5's conventions.

T5 ids: pad 0, eos 1 (appended to every prompt), unk 2, no bos. A batch is
right-padded with 0 to `max_length`; a prompt longer than `max_length - 1`
pieces is cut there and still ends with eos (as HF's T5 tokenizer does), with
one warning per tokenizer the first time it happens.
"""

from __future__ import annotations

import warnings
from typing import Sequence

import numpy as np
import sentencepiece as spm
from etils import epath

PAD_ID = 0
EOS_ID = 1
UNK_ID = 2


class SentencePieceTokenizer:
  """Callable `texts -> (ids, mask)` for the data pipeline and the encoder."""

  def __init__(self, model: bytes | str | epath.PathLike):
    """Loads a sentencepiece model.

    Args:
      model: the serialized model proto, or the path of a `.model` file.

    Raises:
      FileNotFoundError: the path does not exist.
      ValueError: the model's special ids are not T5's (pad 0, eos 1).
    """
    if not isinstance(model, bytes):
      path = epath.Path(model)
      if not path.exists():
        raise FileNotFoundError(f'sentencepiece model {path} not found.')
      model = path.read_bytes()
    self.model_proto: bytes = model
    self._processor = spm.SentencePieceProcessor(model_proto=model)
    pad, eos = self._processor.pad_id(), self._processor.eos_id()
    if (pad, eos) != (PAD_ID, EOS_ID):
      raise ValueError(
        f'Not a T5 sentencepiece model: pad_id={pad}, eos_id={eos}; T5 needs '
        f'pad_id={PAD_ID}, eos_id={EOS_ID}.'
      )
    self._warned_truncation = False

  @property
  def vocab_size(self) -> int:
    """Number of pieces (ids are in [0, vocab_size))."""
    return self._processor.get_piece_size()

  def encode(self, texts: Sequence[str]) -> list[list[int]]:
    """Piece ids of each text, without eos or padding."""
    return self._processor.encode(list(texts), out_type=int)

  def decode(self, ids: np.ndarray | Sequence[Sequence[int]]) -> list[str]:
    """Texts of a batch of ids [batch, length]; stops at the first eos, skips pad."""
    texts = []
    for row in np.asarray(ids).tolist() if isinstance(ids, np.ndarray) else ids:
      row = list(row)
      if EOS_ID in row:
        row = row[: row.index(EOS_ID)]
      texts.append(self._processor.decode([i for i in row if i != PAD_ID]))
    return texts

  def __call__(self, texts: Sequence[str], max_length: int) -> tuple[np.ndarray, np.ndarray]:
    """Tokenizes a batch with eos, right padding and truncation.

    Args:
      texts: B prompts (B may be 0).
      max_length: L, tokens per row, eos included; at least 1.

    Returns:
      ids: int32 [B, L], pad 0.
      mask: int32 [B, L], 1 for real tokens (eos included), 0 for padding.
    """
    if isinstance(texts, str):
      raise TypeError('texts must be a sequence of strings, not one string.')
    if max_length < 1:
      raise ValueError(f'max_length must be at least 1 (room for eos), got {max_length}.')
    ids = np.full((len(texts), max_length), PAD_ID, np.int32)
    mask = np.zeros((len(texts), max_length), np.int32)
    truncated = 0
    for row, pieces in enumerate(self.encode(texts)):
      if len(pieces) > max_length - 1:
        truncated += 1
        pieces = pieces[: max_length - 1]
      pieces = pieces + [EOS_ID]
      ids[row, : len(pieces)] = pieces
      mask[row, : len(pieces)] = 1
    if truncated and not self._warned_truncation:
      self._warned_truncation = True
      warnings.warn(
        f'{truncated} of {len(texts)} prompts are longer than max_length={max_length} '
        'tokens (eos included) and were truncated; further truncations are not reported.',
        stacklevel=2,
      )
    return ids, mask
