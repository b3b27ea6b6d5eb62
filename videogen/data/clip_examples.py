"""From one caption row or manifest row to the stored clips it gives (or why none).

Shared by the in-process `video_folder` build and its Apache Beam build, so
both decode, cut and key every clip the same way:

* a folder video without a range or windowing is decoded whole (as before
  manifests existed), key `<row index:08d>`;
* a time range is decoded by seeking to it (`clip_decode`), and a video cut
  into `clip_seconds` windows gives one clip per window, keys
  `<row index:08d>_<window:05d>`, stored path `<video>#t=<start>,<end>`;
  windows stream out as the video is decoded (`iter_clips`), so an hour of
  video costs the memory of a window, and a file that fails half-way keeps
  the clips before the failure (the rest is reported as skipped);
* with `scene_detect`, a video cut into windows is first split at its scene
  cuts (`scenes`): windows never cross a cut, and scenes shorter than one
  window are left out and reported.

TFDS orders records by a hash of their key, so equal keys and contents mean
equal record files.
"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Iterator

import numpy as np

from videogen.data import clip_decode, transforms, video_io
from videogen.data import manifest as manifest_lib
from videogen.data import scenes as scenes_lib


@dataclasses.dataclass(frozen=True)
class SkippedFile:
  """A video (or manifest row) left out of a build, and why.

  Attributes:
    path: the video as the caption file or manifest names it.
    reason: why it was left out.
    row: the manifest row (1-based), or 0 for a file of a folder.
  """

  path: str
  reason: str
  row: int = 0


@dataclasses.dataclass(frozen=True)
class ClipSettings:
  """What decoding needs from the builder config (picklable for Beam workers).

  Attributes:
    height: stored frame height.
    width: stored frame width.
    max_frames: frames kept per clip; 0 = all.
    min_frames: a clip with fewer frames is skipped.
    clip_seconds: window length for clips without a range; 0 = whole.
    clip_stride_seconds: seconds between windows; 0 = clip_seconds.
    from_manifest: clips come from a manifest (split by video location).
    scene_detect: split windowed videos at scene cuts with this detector; '' = off.
    scene_threshold: the detector's cut threshold.
  """

  height: int
  width: int
  max_frames: int
  min_frames: int
  clip_seconds: float
  clip_stride_seconds: float
  from_manifest: bool
  scene_detect: str = ''
  scene_threshold: float = scenes_lib.DEFAULT_THRESHOLD


@dataclasses.dataclass(frozen=True)
class DecodedClip:
  """A stored clip.

  Attributes:
    key: the record key.
    path: what the record's `path` feature says.
    caption: its caption.
    video: uint8 [T, height, width, 3].
    split_name: the name its split is decided by (all clips of a video share it).
  """

  key: str
  path: str
  caption: str
  video: np.ndarray
  split_name: str


@dataclasses.dataclass
class RowReport:
  """What one row left out, filled in while `iter_clips` reads it.

  Attributes:
    skipped: the row, when it gave no clip (and why); or, when decoding
      failed after some clips, the rest of its video (`<video>#t=<from>,`).
    short_scenes: its scenes (`scene_detect`) left out as shorter than one
      window, each named `<video>#t=<start>,<end>`.
    clips: the clips it gave.
  """

  skipped: SkippedFile | None = None
  short_scenes: list[SkippedFile] = dataclasses.field(default_factory=list)
  clips: int = 0


def _is_plain(settings: ClipSettings, clip: manifest_lib.ClipRow) -> bool:
  return (
    not settings.from_manifest
    and clip.start is None
    and clip.end is None
    and not settings.clip_seconds
  )


def split_name(settings: ClipSettings, clip: manifest_lib.ClipRow) -> str:
  """What decides the split of a clip: its video (as written in a folder, by location in a manifest)."""
  return clip.location if settings.from_manifest else clip.path


def iter_clips(
  settings: ClipSettings, clip: manifest_lib.ClipRow, index: int, report: RowReport
) -> Iterator[DecodedClip]:
  """The stored clips of one row (`index`: its position among the rows), as they are cut.

  A video cut into windows is read once, front to back, and each window is
  given out as soon as its last frame is decoded: memory holds one window
  (more with overlapping strides), however long the video. What the row
  leaves out goes to `report`.
  """
  if _is_plain(settings, clip):
    decoded = _decode_whole(settings, clip, index)
  elif clip.start is None and clip.end is None and settings.clip_seconds > 0:
    yield from _iter_windows(settings, clip, index, report)
    return
  else:
    decoded = _decode_range(settings, clip, index)
  if isinstance(decoded, SkippedFile):
    report.skipped = decoded
  else:
    report.clips += 1
    yield decoded


def _too_short(settings: ClipSettings, clip: manifest_lib.ClipRow, frames: int) -> SkippedFile:
  return SkippedFile(
    clip.path, f'too short: {frames} frames, a clip needs {settings.min_frames}', clip.row
  )


def _decode_whole(
  settings: ClipSettings, clip: manifest_lib.ClipRow, index: int
) -> DecodedClip | SkippedFile:
  frames = []
  try:
    for frame in video_io.iter_frames(clip.location):
      frames.append(transforms.resize_video(frame[None], settings.height, settings.width)[0])
      if len(frames) == settings.max_frames:
        break
  except video_io.VideoReadError as error:
    return SkippedFile(clip.path, f'unreadable: {error.reason}')
  if len(frames) < settings.min_frames:
    return _too_short(settings, clip, len(frames))
  return DecodedClip(
    f'{index:08d}', clip.path, clip.caption, np.stack(frames), split_name(settings, clip)
  )


def _unreadable(clip: manifest_lib.ClipRow, error: Exception) -> SkippedFile:
  reason = error.reason if isinstance(error, video_io.VideoReadError) else str(error)
  return SkippedFile(clip.path, f'unreadable: {reason}', clip.row)


def _decode_range(
  settings: ClipSettings, clip: manifest_lib.ClipRow, index: int
) -> DecodedClip | SkippedFile:
  """One clip of a time range, decoded by seeking to its start."""
  frames = []

  def keep(frame: np.ndarray) -> bool:
    frames.append(transforms.resize_video(frame[None], settings.height, settings.width)[0])
    return len(frames) == settings.max_frames

  try:
    decoded = clip_decode.decode_range(clip.location, keep, start=clip.start, end=clip.end)
  except (video_io.VideoReadError, FileNotFoundError) as error:
    return _unreadable(clip, error)
  if clip.end is not None and decoded.duration and decoded.fps:
    if clip.end > decoded.duration + 1.0 / decoded.fps:
      return SkippedFile(
        clip.path,
        f'bad range: ends at {clip.end:.3f} s, after the video ({decoded.duration:.3f} s)',
        clip.row,
      )
  if len(frames) < settings.min_frames:
    return _too_short(settings, clip, len(frames))
  start = clip.start or 0.0
  if clip.end is not None:
    finish = clip.end
  else:
    finish = start + len(frames) / decoded.fps if decoded.fps else 0.0
  ranged = clip.start is not None or clip.end is not None
  return DecodedClip(
    f'{index:08d}_00000',
    f'{clip.path}#t={start:.3f},{finish:.3f}' if ranged else clip.path,
    clip.caption,
    np.stack(frames),
    split_name(settings, clip),
  )


def _iter_windows(
  settings: ClipSettings, clip: manifest_lib.ClipRow, index: int, report: RowReport
) -> Iterator[DecodedClip]:
  """`clip_seconds` windows of a whole video (within its scenes), streamed."""
  scene_split = bool(settings.scene_detect)
  # Scene detection reads the file a second time: one local copy of a remote file serves both.
  local_file = clip_decode.local_copy if scene_split else contextlib.nullcontext
  decoded = 0
  try:
    with local_file(clip.location) as local:
      scenes = None
      if scene_split:
        scenes = scenes_lib.detect_scenes(local, settings.scene_detect, settings.scene_threshold)
      with clip_decode.open_range(local) as stream:
        if stream.fps <= 0:
          raise video_io.VideoReadError(clip.path, 'no frame rate to cut windows of seconds by')
        cutter = _WindowCutter(settings, clip, index, stream.fps, scenes)
        for frame in stream.frames:
          decoded += 1
          window = cutter.add(frame)
          if window is not None:
            report.clips += 1
            yield window
  except (video_io.VideoReadError, FileNotFoundError) as error:
    if not report.clips:
      report.skipped = _unreadable(clip, error)
      return
    # The clips cut so far stay; the undecodable rest of the video is reported.
    rest = f'{clip.path}#t={decoded / cutter.fps:.3f},' if cutter.fps else clip.path
    report.skipped = dataclasses.replace(_unreadable(clip, error), path=rest)
    return
  short_scenes = cutter.finish()
  if report.clips:
    report.short_scenes += short_scenes
  else:  # The row is left out whole (its short scenes with it).
    scenes_note = f' in any of its {cutter.num_parts} scenes' if scenes is not None else ''
    report.skipped = SkippedFile(
      clip.path,
      f'too short: {decoded} frames, no window of {settings.clip_seconds} s with '
      f'{settings.min_frames} frames{scenes_note}',
      clip.row,
    )


class _WindowCutter:
  """Cuts frames, fed one at a time, into `clip_seconds` windows every `clip_stride_seconds`.

  Windows start at each scene's first frame (the video's, without scenes) and
  must fit whole in it; frames no window needs are neither resized nor kept.
  """

  def __init__(self, settings, clip, index, fps: float, scenes):
    self.settings, self.clip, self.index, self.fps = settings, clip, index, fps
    self.length = max(1, round(settings.clip_seconds * fps))
    self.stride = max(1, round((settings.clip_stride_seconds or settings.clip_seconds) * fps))
    self.usable = self.length >= settings.min_frames
    # (first, last + 1) frame of each scene; the last scene ends where the video does.
    self.scenes = scenes is not None
    if scenes is None:
      self.parts = [(0, None)]
    else:
      self.parts = [(round(scene.start * fps), round(scene.end * fps)) for scene in scenes]
      self.parts[-1] = (self.parts[-1][0], None)
    self.part = -1
    self.num_frames = 0
    self.next_start = 0  # First frame of the next window.
    self.buffer: list[np.ndarray] = []  # Resized frames from `buffer_start` on.
    self.buffer_start = 0
    self.part_windows = 0
    self.short: list[SkippedFile] = []
    self.num_parts = 0
    self.offset = 0  # Windows given out.

  def _enter(self, part: int) -> None:
    self._close_part()
    self.part = part
    self.next_start = self.buffer_start = self.parts[part][0]
    self.buffer = []
    self.part_windows = 0

  def _close_part(self) -> None:
    """Records the current scene as too short when it gave no window."""
    if self.part < 0 or not self.scenes:
      return
    first, last = self.parts[self.part]
    last = self.num_frames if last is None else min(last, self.num_frames)
    if last <= first:
      return
    self.num_parts += 1
    if not self.part_windows:
      self.short.append(
        SkippedFile(
          f'{self.clip.path}#t={first / self.fps:.3f},{last / self.fps:.3f}',
          f'scene of {last - first} frames, shorter than one window of '
          f'{self.settings.clip_seconds} s with {self.settings.min_frames} frames',
          self.clip.row,
        )
      )

  def add(self, frame: np.ndarray) -> DecodedClip | None:
    """Takes the next decoded frame; returns the window it completes, if any."""
    number = self.num_frames
    self.num_frames += 1
    part = self.part
    while part + 1 < len(self.parts) and number >= self.parts[part + 1][0]:
      part += 1
    if part != self.part:
      self._enter(part)
    if part < 0 or not self.usable or number < self.next_start:
      return None
    last = self.parts[part][1]
    if last is not None and number >= last:
      return None  # Past its scene (scenes from the detector are contiguous; kept safe).
    settings = self.settings
    if not self.buffer:
      self.buffer_start = number
    self.buffer.append(transforms.resize_video(frame[None], settings.height, settings.width)[0])
    if number + 1 - self.next_start < self.length:
      return None
    if last is not None and self.next_start + self.length > last:
      return None
    first = self.next_start
    frames = self.buffer[first - self.buffer_start : first - self.buffer_start + self.length]
    window = np.stack(frames[: settings.max_frames] if settings.max_frames else frames)
    self.next_start += self.stride
    drop = min(self.next_start - self.buffer_start, len(self.buffer))
    self.buffer = self.buffer[drop:]
    self.buffer_start += drop
    self.part_windows += 1
    clip = DecodedClip(
      f'{self.index:08d}_{self.offset:05d}',
      f'{self.clip.path}#t={first / self.fps:.3f},{(first + self.length) / self.fps:.3f}',
      self.clip.caption,
      window,
      split_name(settings, self.clip),
    )
    self.offset += 1
    return clip

  def finish(self) -> list[SkippedFile]:
    """The scenes too short for a window, once every frame is in."""
    self._close_part()
    self.part = -1
    return self.short


def to_example(clip: DecodedClip) -> tuple[str, dict[str, object]]:
  """(key, TFDS example) of a stored clip."""
  return clip.key, {
    'video': video_io.encode_png_frames(clip.video),
    'caption': clip.caption,
    'path': clip.path,
  }


SHORT_SCENES_DIR = 'short_scenes'  # Under a Beam build's skipped_dir.


@dataclasses.dataclass(frozen=True)
class BeamDecode:
  """A Beam worker's step: (row index, row) -> (key, example) per stored clip.

  A skipped row is counted (`videogen/skipped_rows`) and written as
  `<skipped_dir>/<index>.json` for the build report; a row's scenes too
  short for a window, as a list in `<skipped_dir>/<SHORT_SCENES_DIR>/<index>.json`.
  """

  settings: ClipSettings
  skipped_dir: str

  def __call__(self, item: tuple[int, manifest_lib.ClipRow]):
    import json  # noqa: PLC0415

    import apache_beam as beam  # noqa: PLC0415  # pylint: disable=g-import-not-at-top
    from etils import epath  # noqa: PLC0415

    index, clip = item
    report = RowReport()
    # A generator: Beam writes each clip as it is cut, so a long video never sits in memory.
    for decoded in iter_clips(self.settings, clip, index, report):
      yield to_example(decoded)
    beam.metrics.Metrics.counter('videogen', 'clips').inc(report.clips)
    if report.skipped is not None:
      beam.metrics.Metrics.counter('videogen', 'skipped_rows').inc()
      path = epath.Path(self.skipped_dir) / f'{index:08d}.json'
      path.write_text(json.dumps(dataclasses.asdict(report.skipped)))
    if report.short_scenes:
      beam.metrics.Metrics.counter('videogen', 'short_scenes').inc(len(report.short_scenes))
      folder = epath.Path(self.skipped_dir) / SHORT_SCENES_DIR
      folder.mkdir(parents=True, exist_ok=True)
      scenes = [dataclasses.asdict(scene) for scene in report.short_scenes]
      (folder / f'{index:08d}.json').write_text(json.dumps(scenes))
