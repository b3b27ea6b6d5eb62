"""Clip operations shared by the dataset builders and the input pipeline.

All numpy (Pillow for images): they run in grain's reader threads and in
TFDS generators, never under jit.
"""

from __future__ import annotations

import io
from typing import Sequence

import numpy as np
from PIL import Image


def frame_indices(
  num_stored: int, num_frames: int, frame_stride: int, start: int = 0
) -> np.ndarray:
  """Indices of `num_frames` frames `frame_stride` apart from `start`.

  A clip shorter than the span holds its last frame: indices past the end
  are clamped to `num_stored - 1`.

  Returns:
    int [num_frames].
  """
  indices = start + frame_stride * np.arange(num_frames)
  return np.minimum(indices, num_stored - 1)


def max_start(num_stored: int, num_frames: int, frame_stride: int) -> int:
  """The last start index at which a whole clip fits (0 if none does)."""
  return max(0, num_stored - ((num_frames - 1) * frame_stride + 1))


def decode_frames(encoded: Sequence[bytes], indices: np.ndarray | None = None) -> np.ndarray:
  """Decodes the frames at `indices` (all when None) of a clip stored as images.

  Only the frames asked for are decoded, each once: a 2 s crop of a long
  video costs 2 s of decoding, not the whole video.

  Args:
    encoded: PNG/JPEG bytes per stored frame, as a TFDS Video feature keeps them.
    indices: int [num_frames] frame indices (repeats allowed).

  Returns:
    uint8 [num_frames, H, W, C] (C = 1 for grayscale frames).
  """
  if indices is None:
    indices = np.arange(len(encoded))
  unique, inverse = np.unique(indices, return_inverse=True)
  frames = []
  for index in unique:
    with Image.open(io.BytesIO(encoded[index])) as image:
      frame = np.asarray(image.convert('RGB') if image.mode in ('P', 'RGBA', 'CMYK') else image)
    frames.append(frame[..., None] if frame.ndim == 2 else frame)
  return np.stack(frames)[inverse.reshape(-1)]


def center_crop_box(
  height: int, width: int, target_height: int, target_width: int
) -> tuple[int, int, int, int]:
  """(top, left, crop height, crop width): the centred crop of the target's aspect."""
  # Compare aspect ratios exactly in integers: h/w > th/tw <=> h*tw > th*w.
  if height * target_width > target_height * width:  # Too tall: crop rows.
    crop_height, crop_width = max(1, round(width * target_height / target_width)), width
  else:  # Too wide (or exact): crop columns.
    crop_height, crop_width = (
      height,
      max(1, round(height * target_width / target_height)),
    )
  return (height - crop_height) // 2, (width - crop_width) // 2, crop_height, crop_width


def resize_video(video: np.ndarray, height: int, width: int) -> np.ndarray:
  """Centre-crops to the target aspect ratio, then resizes every frame.

  Pillow's bilinear filter widens with the scale factor, so downscaling is
  antialiased. A clip already `height` x `width` is returned unchanged.

  Args:
    video: uint8 [time, H, W, 3].
    height: output height.
    width: output width.

  Returns:
    uint8 [time, height, width, 3].
  """
  if video.shape[1:3] == (height, width):
    return video
  top, left, crop_height, crop_width = center_crop_box(
    video.shape[1], video.shape[2], height, width
  )
  video = video[:, top : top + crop_height, left : left + crop_width]
  if video.shape[1:3] == (height, width):
    return np.ascontiguousarray(video)
  return np.stack(
    [
      np.asarray(Image.fromarray(frame).resize((width, height), Image.Resampling.BILINEAR))
      for frame in video
    ]
  )


def normalize(video: np.ndarray) -> np.ndarray:
  """uint8 [..., 3] -> float32 in [-1, 1] (0 -> -1, 255 -> 1)."""
  return video.astype(np.float32) * np.float32(2.0 / 255.0) - np.float32(1.0)


def label_to_words(label: str) -> str:
  """A class name as words: 'ApplyEyeMakeup' -> 'apply eye makeup', 'sea_lion' -> 'sea lion'."""
  words = []
  current = ''
  for char in label.replace('_', ' ').replace('-', ' '):
    if char == ' ':
      words.append(current)
      current = ''
    elif char.isupper() and current and not current[-1].isupper():
      words.append(current)
      current = char
    else:
      current += char
  words.append(current)
  return ' '.join(word.lower() for word in words if word)
