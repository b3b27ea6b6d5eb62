"""Reading and writing video files, and tiling clips into a grid.

Decoding and MP4 encoding go through mediapy with the ffmpeg binary that
imageio-ffmpeg ships (0.7.0; 0.8's ffmpeg breaks `mediapy.read_video`). GIFs
are written with Pillow alone: with at most 256 colours (shapes clips) they
are lossless.
"""

from __future__ import annotations

import functools
import html
import io
import os
import pathlib
from typing import Iterator, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

VIDEO_SUFFIXES = ('.mp4', '.webm', '.gif', '.avi', '.mov', '.mkv', '.m4v')
_GRID_GAP = 2  # Black pixels between tiles.
_LABEL_LINE_HEIGHT = 11  # Pixels per text line under a tile (Pillow's default font).


class VideoReadError(RuntimeError):
  """A file that is not a decodable video (or has no frames).

  Attributes:
    path: the file.
    reason: what went wrong, e.g. ffmpeg's last error line.
  """

  def __init__(self, path: str | os.PathLike[str], reason: str):
    super().__init__(f'Cannot read video {path}: {reason}')
    self.path = os.fspath(path)
    self.reason = reason


@functools.cache
def _mediapy():
  """mediapy, pointed at imageio-ffmpeg's binary (once, on first use)."""
  import imageio_ffmpeg  # pylint: disable=g-import-not-at-top
  import mediapy  # pylint: disable=g-import-not-at-top

  mediapy.set_ffmpeg(imageio_ffmpeg.get_ffmpeg_exe())
  return mediapy


def show_videos(videos, titles=None, *, fps: float = 8, height: int = 128, columns: int = 4):
  """Shows videos in a notebook (`mediapy.show_videos` with a working ffmpeg).

  Args:
    videos: uint8 or float ([-1, 1]) videos [T, H, W, 3]; a list, an array
      [N, T, H, W, 3], or a {title: video} dict.
    titles: one title per video (ignored for a dict).
    fps: frames per second.
    height: display height in pixels (small clips are upscaled, unsmoothed).
    columns: videos per row.
  """
  if isinstance(videos, dict):
    titles, videos = list(videos), list(videos.values())
  videos = [to_uint8(np.asarray(v)) for v in videos]
  _mediapy().show_videos(videos, titles, fps=fps, height=height, columns=columns, codec='gif')


def show_rows(
  rows: Sequence[Sequence[np.ndarray]],
  column_titles: Sequence[str] | None = None,
  row_titles: Sequence[str] | None = None,
  *,
  fps: float = 8,
  height: int = 128,
) -> None:
  """Shows videos side by side in a notebook, one row per example.

  E.g. original | condition | result for each clip, the column titles above
  the first row and each row's title (a caption) at its left.

  Args:
    rows: rows of videos [T, H, W, 3], uint8 or float in [-1, 1].
    column_titles: one title per video of a row.
    row_titles: one title per row.
    fps: frames per second.
    height: display height in pixels (small clips are upscaled, unsmoothed).
  """
  from IPython import display  # pylint: disable=g-import-not-at-top

  if row_titles is not None and len(row_titles) != len(rows):
    raise ValueError(f'Got {len(row_titles)} row titles for {len(rows)} rows.')
  cells = []
  for index, row in enumerate(rows):
    videos = [to_uint8(np.asarray(video)) for video in row]
    titles = list(column_titles) if column_titles is not None and index == 0 else None
    table = _mediapy().show_videos(
      videos, titles, fps=fps, height=height, columns=len(videos), codec='gif', return_html=True
    )
    label = html.escape(row_titles[index]) if row_titles is not None else ''
    cells.append(f'<tr><td style="max-width:12em; padding:4px;">{label}</td><td>{table}</td></tr>')
  display.display(display.HTML(f'<table>{"".join(cells)}</table>'))


def to_uint8(video: np.ndarray) -> np.ndarray:
  """uint8 video from uint8 (unchanged) or float in [-1, 1] (clipped, rounded).

  Args:
    video: [..., height, width, 3], uint8 or float in [-1, 1].

  Returns:
    uint8 array of the same shape.
  """
  video = np.asarray(video)
  if video.dtype == np.uint8:
    return video
  if not np.issubdtype(video.dtype, np.floating):
    raise ValueError(f'Expected uint8 or float video, got dtype {video.dtype}.')
  return np.round((np.clip(video, -1.0, 1.0) + 1.0) * 127.5).astype(np.uint8)


def iter_frames(path: str | os.PathLike[str]) -> Iterator[np.ndarray]:
  """Decodes a video file frame by frame (memory stays at one frame).

  Args:
    path: the file (mp4, webm, gif, avi, ...).

  Yields:
    uint8 [height, width, 3] RGB frames.

  Raises:
    FileNotFoundError: `path` does not exist.
    VideoReadError: the file is empty or not a decodable video.
  """
  path = pathlib.Path(path)
  if not path.is_file():
    raise FileNotFoundError(f'No video file at {path}.')
  if path.stat().st_size == 0:
    raise VideoReadError(path, 'the file is empty')
  try:
    with _mediapy().VideoReader(os.fspath(path), output_format='rgb') as reader:
      yield from reader
  except (RuntimeError, ValueError, OSError) as error:
    raise VideoReadError(path, _last_line(str(error))) from error


def read_video(path: str | os.PathLike[str], max_frames: int = 0) -> np.ndarray:
  """Decodes a video file (mp4, webm, gif, avi, ...).

  Args:
    path: the file.
    max_frames: stop after this many frames; 0 = all.

  Returns:
    uint8 [time, height, width, 3] (RGB).

  Raises:
    FileNotFoundError: `path` does not exist.
    VideoReadError: the file is empty, corrupt, or has no frames.
  """
  frames = []
  for frame in iter_frames(path):
    frames.append(frame)
    if len(frames) == max_frames:
      break
  if not frames:
    raise VideoReadError(path, 'no frames decoded')
  return np.stack(frames).astype(np.uint8, copy=False)


def _last_line(message: str) -> str:
  """The informative tail of an ffmpeg error (its banner comes first)."""
  lines = [line.strip() for line in message.strip().splitlines() if line.strip()]
  return lines[-1] if lines else 'unknown error'


def write_video(path: str | os.PathLike[str], video: np.ndarray, fps: float = 8) -> pathlib.Path:
  """Writes a clip as MP4 (H.264 via ffmpeg) or GIF (Pillow), by suffix.

  Args:
    path: ends in '.mp4' or '.gif'; parent folders are created.
    video: [time, height, width, 3], uint8 or float in [-1, 1].
    fps: frames per second.

  Returns:
    The path written.
  """
  path = pathlib.Path(path)
  video = to_uint8(video)
  if video.ndim != 4 or video.shape[-1] != 3:
    raise ValueError(f'Expected video [time, height, width, 3], got shape {video.shape}.')
  path.parent.mkdir(parents=True, exist_ok=True)
  suffix = path.suffix.lower()
  if suffix == '.gif':
    frames = [Image.fromarray(frame) for frame in video]
    frames[0].save(
      path,
      save_all=True,
      append_images=frames[1:],
      duration=int(round(1000 / fps)),
      loop=0,
    )
  elif suffix == '.mp4':
    # H.264 with yuv420p needs even sides: pad with black on the bottom/right.
    pad_rows, pad_cols = video.shape[1] % 2, video.shape[2] % 2
    if pad_rows or pad_cols:
      video = np.pad(video, ((0, 0), (0, pad_rows), (0, pad_cols), (0, 0)))
    _mediapy().write_video(os.fspath(path), video, fps=fps)
  else:
    raise ValueError(f"Cannot write {path}: the suffix must be '.mp4' or '.gif'.")
  return path


def encode_png_frames(video: np.ndarray) -> list[bytes]:
  """Lossless PNG bytes per frame of uint8 [time, H, W, 3], for TFDS Video features.

  Pillow at compression level 1 is ~5x faster than TensorFlow's encoder that
  TFDS would otherwise run per frame.
  """
  frames = []
  for frame in video:
    buffer = io.BytesIO()
    Image.fromarray(frame).save(buffer, format='png', compress_level=1)
    frames.append(buffer.getvalue())
  return frames


def pad_frames(video: np.ndarray, num_frames: int) -> np.ndarray:
  """Repeats the last frame so that `video` [time, ...] has `num_frames` frames."""
  if video.shape[0] >= num_frames:
    return video
  tail = np.repeat(video[-1:], num_frames - video.shape[0], axis=0)
  return np.concatenate([video, tail], axis=0)


def _wrap(text: str, font: ImageFont.ImageFont, max_width: int) -> list[str]:
  """Greedy word wrap of `text` into lines at most `max_width` pixels wide."""
  lines: list[str] = []
  for word in text.split():
    candidate = f'{lines[-1]} {word}' if lines else word
    if lines and font.getlength(candidate) <= max_width:
      lines[-1] = candidate
    else:
      lines.append(word)
  return lines or ['']


def grid(
  videos: Sequence[np.ndarray],
  columns: int,
  labels: Sequence[str] | None = None,
) -> np.ndarray:
  """Tiles clips into one clip, row by row, with optional text under each.

  Args:
    videos: clips [time_i, height_i, width_i, 3], uint8 or float in [-1, 1];
      shorter clips hold their last frame, smaller ones are padded with black.
    columns: tiles per row.
    labels: one caption per clip, wrapped to the tile width.

  Returns:
    uint8 [max time, rows * tile height + gaps, columns * tile width + gaps, 3].
  """
  if not videos:
    raise ValueError('write_grid needs at least one video.')
  if labels is not None and len(labels) != len(videos):
    raise ValueError(f'Got {len(labels)} labels for {len(videos)} videos.')
  videos = [to_uint8(video) for video in videos]
  num_frames = max(video.shape[0] for video in videos)
  tile_height = max(video.shape[1] for video in videos)
  tile_width = max(video.shape[2] for video in videos)
  font = ImageFont.load_default()
  wrapped = [_wrap(label, font, tile_width) for label in labels] if labels else None
  label_height = max(len(lines) for lines in wrapped) * _LABEL_LINE_HEIGHT if wrapped else 0
  columns = max(1, min(columns, len(videos)))
  rows = -(-len(videos) // columns)
  cell_height, cell_width = tile_height + label_height, tile_width
  out = np.zeros(
    (
      num_frames,
      rows * cell_height + (rows - 1) * _GRID_GAP,
      columns * cell_width + (columns - 1) * _GRID_GAP,
      3,
    ),
    np.uint8,
  )
  for index, video in enumerate(videos):
    top = (index // columns) * (cell_height + _GRID_GAP)
    left = (index % columns) * (cell_width + _GRID_GAP)
    video = pad_frames(video, num_frames)
    out[:, top : top + video.shape[1], left : left + video.shape[2]] = video
    if wrapped:
      strip = Image.new('RGB', (cell_width, label_height))
      draw = ImageDraw.Draw(strip)
      for line_index, line in enumerate(wrapped[index]):
        draw.text((1, line_index * _LABEL_LINE_HEIGHT), line, fill=(255, 255, 255), font=font)
      label_top = top + tile_height
      out[:, label_top : label_top + label_height, left : left + cell_width] = np.asarray(strip)
  return out


def write_grid(
  path: str | os.PathLike[str],
  videos: Sequence[np.ndarray],
  fps: float = 8,
  columns: int = 4,
  labels: Sequence[str] | None = None,
) -> pathlib.Path:
  """Writes clips side by side as one MP4 or GIF (see `grid` and `write_video`).

  Args:
    path: ends in '.mp4' or '.gif'.
    videos: clips [time_i, height_i, width_i, 3], uint8 or float in [-1, 1].
    fps: frames per second.
    columns: tiles per row.
    labels: optional caption per clip, drawn under it.

  Returns:
    The path written.
  """
  return write_video(path, grid(videos, columns, labels), fps=fps)


def write_rows(
  path: str | os.PathLike[str],
  rows: Sequence[Sequence[np.ndarray]],
  column_titles: Sequence[str],
  row_titles: Sequence[str] | None = None,
  *,
  fps: float = 8,
  height: int = 128,
) -> pathlib.Path:
  """Writes videos side by side as one MP4 or GIF, one row per example: the file
  form of `show_rows` (e.g. original | condition | result for each clip).

  Every tile is labelled with its column's title; the first tile of a row also
  with the row's title (a caption).

  Args:
    path: ends in '.mp4' or '.gif'.
    rows: rows of videos [T, H, W, 3], uint8 or float in [-1, 1], one per column.
    column_titles: one title per video of a row.
    row_titles: one title per row.
    fps: frames per second.
    height: tile height in pixels (small clips are upscaled by a whole factor, unsmoothed).

  Returns:
    The path written.
  """
  if row_titles is not None and len(row_titles) != len(rows):
    raise ValueError(f'Got {len(row_titles)} row titles for {len(rows)} rows.')
  videos, labels = [], []
  for index, row in enumerate(rows):
    if len(row) != len(column_titles):
      raise ValueError(f'Row {index} has {len(row)} videos for {len(column_titles)} columns.')
    for column, video in enumerate(row):
      video = to_uint8(np.asarray(video))
      scale = max(1, height // video.shape[1])
      videos.append(video.repeat(scale, axis=1).repeat(scale, axis=2))
      title = column_titles[column]
      labels.append(f'{title}: {row_titles[index]}' if column == 0 and row_titles else title)
  return write_grid(path, videos, fps=fps, columns=len(column_titles), labels=labels)
