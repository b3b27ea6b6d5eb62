"""Reads `.safetensors` files into numpy without torch, bfloat16 included.

`safetensors.numpy` cannot return bfloat16 tensors (numpy has no such
dtype), and released T5 checkpoints are often stored in bfloat16. The
format is simple (an 8-byte little-endian header length, a JSON header of
name -> dtype, shape, byte offsets, then raw little-endian data), so this
module reads it directly: local files are memory-mapped, so loading an XXL
encoder touches each tensor once, and remote paths (e.g. `gs://`) are read
whole through `etils.epath`. Writing uses the `safetensors` library.
"""

from __future__ import annotations

import json
import math
import os
import struct
from typing import Mapping

import ml_dtypes
import numpy as np
import safetensors.numpy
from etils import epath

_DTYPES = {
  'F64': np.float64,
  'F32': np.float32,
  'F16': np.float16,
  'BF16': ml_dtypes.bfloat16,
  'I64': np.int64,
  'I32': np.int32,
  'I16': np.int16,
  'I8': np.int8,
  'U8': np.uint8,
  'BOOL': np.bool_,
}
_MAX_HEADER_BYTES = 100 * 1024 * 1024  # The format's own limit; larger means corrupt.


class SafetensorsFile:
  """Random access to the tensors of one `.safetensors` file.

  Attributes:
    path: the file.
    names: tensor names in the file.
  """

  def __init__(self, path: str | os.PathLike[str]):
    self.path = str(path)
    if os.path.exists(self.path):
      self._buffer = np.memmap(self.path, dtype=np.uint8, mode='r')
    else:
      self._buffer = np.frombuffer(epath.Path(self.path).read_bytes(), dtype=np.uint8)
    if self._buffer.size < 8:
      raise ValueError(f'{self.path} is not a safetensors file (too short).')
    (header_size,) = struct.unpack('<Q', self._buffer[:8].tobytes())
    if header_size > min(_MAX_HEADER_BYTES, self._buffer.size - 8):
      raise ValueError(f'{self.path} is not a safetensors file (bad header size).')
    header = json.loads(self._buffer[8 : 8 + header_size].tobytes())
    header.pop('__metadata__', None)
    self._data_start = 8 + header_size
    self._entries: dict[str, dict] = header
    self.names = tuple(header)

  def dtype_name(self, name: str) -> str:
    """The safetensors dtype code of `name`, e.g. 'F32' or 'BF16'."""
    return self._entry(name)['dtype']

  def shape(self, name: str) -> tuple[int, ...]:
    return tuple(self._entry(name)['shape'])

  def get(self, name: str) -> np.ndarray:
    """The tensor `name` as a (read-only, possibly memory-mapped) numpy array."""
    entry = self._entry(name)
    code = entry['dtype']
    if code not in _DTYPES:
      raise ValueError(f'{self.path}: tensor {name!r} has unsupported dtype {code}.')
    dtype = np.dtype(_DTYPES[code])
    begin, end = entry['data_offsets']
    shape = tuple(entry['shape'])
    if end - begin != math.prod(shape) * dtype.itemsize:
      raise ValueError(
        f'{self.path}: tensor {name!r} has {end - begin} bytes, but shape {shape} '
        f'of {code} needs {math.prod(shape) * dtype.itemsize}; the file is corrupt.'
      )
    start = self._data_start + begin
    return self._buffer[start : self._data_start + end].view(dtype).reshape(shape)

  def _entry(self, name: str) -> dict:
    try:
      return self._entries[name]
    except KeyError:
      raise KeyError(f'{self.path} has no tensor {name!r}.') from None


def save_file(
  tensors: Mapping[str, np.ndarray],
  path: str | os.PathLike[str],
  metadata: Mapping[str, str] | None = None,
) -> None:
  """Writes float/int numpy tensors to `path` (local or remote) as safetensors.

  Args:
    tensors: name -> array (float32/float16/int; not bfloat16).
    path: destination file.
    metadata: string metadata; HF writes {'format': 'pt'} and so do we by default.
  """
  arrays = {name: np.ascontiguousarray(value) for name, value in tensors.items()}
  data = safetensors.numpy.save(arrays, metadata=dict(metadata or {'format': 'pt'}))
  epath.Path(path).write_bytes(data)
