"""Decoding a time range of a video, seeking to its start, and cutting windows.

`decode_range` seeks to the keyframe before `start` and decodes from there,
frame-accurately, so a 5 s clip of an hour of video costs 5 s of decoding,
not the hour. Two decoders give the same pixels:

* PyAV (`pip install 'videogen[av]'`), used when installed (except for
  GIFs, whose variable frame durations ffmpeg's reader evens out): libav* in
  this process. On one core it decoded 720p H.264 clips resized to 128x128 at
  38.7 clip frames/s against ffmpeg's 25.5 (benchmarks/video_decode.py).
* ffmpeg (imageio-ffmpeg's binary, always there): `-ss` ahead of `-i`,
  RGB frames through a pipe.

Frames are read lazily (`open_range`) or through a callback
(`decode_range`), so memory holds what the caller keeps (e.g. frames
already resized). `gs://` and other remote files are copied to
a temporary file first.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import shutil
import tempfile
from typing import Callable, Iterator

import numpy as np

from videogen.data import video_io


@dataclasses.dataclass(frozen=True)
class DecodedRange:
  """What `decode_range` read.

  Attributes:
    num_frames: frames passed to the callback.
    fps: the video's frame rate.
    duration: the whole file's duration in seconds (0 when unknown).
  """

  num_frames: int
  fps: float
  duration: float


@contextlib.contextmanager
def local_copy(path: str) -> Iterator[str]:
  """`path` itself when local; a temporary copy of a `gs://` (or other remote) file."""
  if '://' not in path:
    yield path
    return
  from etils import epath  # pylint: disable=g-import-not-at-top  # Remote files only.

  suffix = os.path.splitext(path)[1]
  with tempfile.NamedTemporaryFile(suffix=suffix) as file:
    with epath.Path(path).open('rb') as remote:
      shutil.copyfileobj(remote, file)
    file.flush()
    yield file.name


_TIME_TOLERANCE = 1e-6  # Seconds: frame timestamps are rationals; ranges are decimals.


@functools.cache
def pyav_available() -> bool:
  """Whether PyAV (the `av` extra) is installed."""
  try:
    import av  # noqa: F401, PLC0415  # pylint: disable=g-import-not-at-top,unused-import
  except ImportError:
    return False
  return True


@dataclasses.dataclass
class FrameStream:
  """An open range of a video (`open_range`): its rate, and its frames read lazily.

  Attributes:
    fps: the video's frame rate.
    duration: the whole file's duration in seconds (0 when unknown).
    frames: uint8 [height, width, 3] RGB frames of the range, decoded as they
      are read; raises VideoReadError where the file cannot be decoded.
  """

  fps: float
  duration: float
  frames: Iterator[np.ndarray]


@contextlib.contextmanager
def open_range(
  path: str,
  *,
  start: float | None = None,
  end: float | None = None,
  decoder: str = 'auto',
) -> Iterator[FrameStream]:
  """Opens `[start, end)` seconds of a video for reading frame by frame.

  Args:
    path: a video file (local or `gs://`).
    start: first second; None = the beginning.
    end: last second (exclusive); None = the end.
    decoder: 'pyav', 'ffmpeg', or 'auto' (PyAV when installed).

  Yields:
    FrameStream; the decoder is closed when the context exits, read to the end or not.

  Raises:
    FileNotFoundError: a local `path` does not exist.
    VideoReadError: the file is empty or not decodable.
  """
  if decoder not in ('auto', 'pyav', 'ffmpeg'):
    raise ValueError(f"decoder must be 'auto', 'pyav' or 'ffmpeg', got {decoder!r}.")
  if '://' not in path:
    if not os.path.isfile(path):
      raise FileNotFoundError(f'No video file at {path}.')
    if os.path.getsize(path) == 0:
      raise video_io.VideoReadError(path, 'the file is empty')
  # GIFs hold frames of varying duration that ffmpeg's reader turns into a
  # constant rate; PyAV would return the stored frames: keep ffmpeg for them.
  gif = path.lower().endswith('.gif')
  use_pyav = decoder == 'pyav' or (decoder == 'auto' and pyav_available() and not gif)
  with local_copy(path) as local:
    opener = _open_pyav if use_pyav else _open_ffmpeg
    with opener(path, local, start, end) as stream:
      yield stream


def decode_range(
  path: str,
  on_frame: Callable[[np.ndarray], bool | None],
  *,
  start: float | None = None,
  end: float | None = None,
  decoder: str = 'auto',
) -> DecodedRange:
  """Decodes the frames of `[start, end)` seconds of a video (`open_range`), one at a time.

  Args:
    path: a video file (local or `gs://`).
    on_frame: called with each uint8 [height, width, 3] RGB frame; returning
      True stops decoding.
    start: first second; None = the beginning.
    end: last second (exclusive); None = the end.
    decoder: 'pyav', 'ffmpeg', or 'auto' (PyAV when installed).

  Returns:
    DecodedRange (frames decoded, fps, file duration).
  """
  count = 0
  with open_range(path, start=start, end=end, decoder=decoder) as stream:
    for frame in stream.frames:
      count += 1
      if on_frame(frame):
        break
  return DecodedRange(count, stream.fps, stream.duration)


@contextlib.contextmanager
def _open_pyav(path, local, start, end) -> Iterator[FrameStream]:
  import av  # pylint: disable=g-import-not-at-top

  errors = (av.error.FFmpegError, OSError, ValueError)
  try:
    container = av.open(local)
  except errors as error:
    raise video_io.VideoReadError(path, _reason(error)) from error
  with container:
    try:
      if not container.streams.video:
        raise video_io.VideoReadError(path, 'no video stream')
      stream = container.streams.video[0]
      fps = float(stream.average_rate or stream.guessed_rate or 0.0)
      duration = container.duration / av.time_base if container.duration else 0.0
      if start and stream.time_base:
        container.seek(int(start / stream.time_base), stream=stream, backward=True)
    except errors as error:
      raise video_io.VideoReadError(path, _reason(error)) from error

    def frames() -> Iterator[np.ndarray]:
      try:
        # A frame belongs to [start, end) by its timestamp, as with ffmpeg's -ss/-t.
        for frame in container.decode(stream):
          time_s = frame.time if frame.time is not None else 0.0
          if start and time_s < start - _TIME_TOLERANCE:
            continue  # Between the keyframe and the range's start.
          if end is not None and time_s >= end - _TIME_TOLERANCE:
            return
          yield frame.to_ndarray(format='rgb24')
      except errors as error:
        raise video_io.VideoReadError(path, _reason(error)) from error

    yield FrameStream(fps, duration, frames())


@contextlib.contextmanager
def _open_ffmpeg(path, local, start, end) -> Iterator[FrameStream]:
  import imageio_ffmpeg  # pylint: disable=g-import-not-at-top

  input_params = ['-ss', f'{start:.6f}'] if start else []
  output_params = ['-t', f'{end - (start or 0.0):.6f}'] if end is not None else []
  errors = (RuntimeError, OSError, StopIteration, KeyError)
  try:
    reader = imageio_ffmpeg.read_frames(
      local, input_params=input_params, output_params=output_params
    )
    meta = next(reader)
    width, height = meta['size']
  except errors as error:
    raise video_io.VideoReadError(path, _reason(error)) from error

  def frames() -> Iterator[np.ndarray]:
    try:
      for raw in reader:
        yield np.frombuffer(raw, np.uint8).reshape(height, width, 3)
    except errors as error:
      raise video_io.VideoReadError(path, _reason(error)) from error

  try:
    yield FrameStream(float(meta.get('fps') or 0.0), float(meta.get('duration') or 0.0), frames())
  finally:
    reader.close()


def _reason(error: BaseException) -> str:
  lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
  return lines[-1] if lines else type(error).__name__


def window_starts(
  num_frames: int, fps: float, clip_seconds: float, stride_seconds: float, min_frames: int
) -> list[tuple[int, int]]:
  """(first, last + 1) frame of each window of a decoded video.

  Windows are `clip_seconds` long, every `stride_seconds` (0 = back to back);
  the last window must fit whole, and a window shorter than `min_frames`
  frames (one training clip) is dropped.

  Args:
    num_frames: frames decoded.
    fps: their frame rate.
    clip_seconds: window length in seconds (> 0).
    stride_seconds: seconds between window starts; 0 = `clip_seconds`.
    min_frames: the fewest frames a window may have.
  """
  length = max(1, round(clip_seconds * fps))
  stride = max(1, round((stride_seconds or clip_seconds) * fps))
  if length < min_frames:
    return []
  return [(first, first + length) for first in range(0, num_frames - length + 1, stride)]
