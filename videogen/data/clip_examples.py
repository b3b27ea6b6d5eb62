"""From one caption row or manifest row to the stored clips it gives (or why none).

Shared by the in-process `video_folder` build and its Apache Beam build, so
both decode, cut and key every clip the same way:

* a folder video without a range or windowing is decoded whole (as before
  manifests existed), key `<row index:08d>`;
* a time range is decoded by seeking to it (`clip_decode`), and a video cut
  into `clip_seconds` windows gives one clip per window, keys
  `<row index:08d>_<window:05d>`, stored path `<video>#t=<start>,<end>`;
* with `scene_detect`, a video cut into windows is first split at its scene
  cuts (`scenes`): windows never cross a cut, and scenes shorter than one
  window are left out and reported.

TFDS orders records by a hash of their key, so equal keys and contents mean
equal record files.
"""

from __future__ import annotations

import contextlib
import dataclasses

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


@dataclasses.dataclass(frozen=True)
class DecodedRow:
  """What one row gave.

  Attributes:
    clips: its stored clips.
    short_scenes: its scenes (`scene_detect`) left out as shorter than one
      window, each named `<video>#t=<start>,<end>`.
  """

  clips: list[DecodedClip]
  short_scenes: list[SkippedFile] = dataclasses.field(default_factory=list)


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


def decode_clip(
  settings: ClipSettings, clip: manifest_lib.ClipRow, index: int
) -> DecodedRow | SkippedFile:
  """The stored clips of one row (`index`: its position among the rows)."""
  if _is_plain(settings, clip):
    return _decode_whole(settings, clip, index)
  return _decode_range(settings, clip, index)


def _decode_whole(
  settings: ClipSettings, clip: manifest_lib.ClipRow, index: int
) -> DecodedRow | SkippedFile:
  frames = []
  try:
    for frame in video_io.iter_frames(clip.location):
      frames.append(transforms.resize_video(frame[None], settings.height, settings.width)[0])
      if len(frames) == settings.max_frames:
        break
  except video_io.VideoReadError as error:
    return SkippedFile(clip.path, f'unreadable: {error.reason}')
  if len(frames) < settings.min_frames:
    return SkippedFile(
      clip.path, f'too short: {len(frames)} frames, a clip needs {settings.min_frames}'
    )
  return DecodedRow(
    [
      DecodedClip(
        f'{index:08d}', clip.path, clip.caption, np.stack(frames), split_name(settings, clip)
      )
    ]
  )


def _decode_range(
  settings: ClipSettings, clip: manifest_lib.ClipRow, index: int
) -> DecodedRow | SkippedFile:
  """Decodes a time range (seeking to it) or cuts a video into windows (within its scenes)."""
  frames = []
  windowed = clip.start is None and clip.end is None and settings.clip_seconds > 0
  scene_split = windowed and bool(settings.scene_detect)

  def keep(frame: np.ndarray) -> bool:
    frames.append(transforms.resize_video(frame[None], settings.height, settings.width)[0])
    return not windowed and len(frames) == settings.max_frames

  # Scene detection reads the file a second time: one local copy of a remote file serves both.
  local_file = clip_decode.local_copy if scene_split else contextlib.nullcontext
  scenes = None
  try:
    with local_file(clip.location) as local:
      decoded = clip_decode.decode_range(local, keep, start=clip.start, end=clip.end)
      if scene_split:
        scenes = scenes_lib.detect_scenes(local, settings.scene_detect, settings.scene_threshold)
  except (video_io.VideoReadError, FileNotFoundError) as error:
    reason = error.reason if isinstance(error, video_io.VideoReadError) else str(error)
    return SkippedFile(clip.path, f'unreadable: {reason}', clip.row)
  if clip.end is not None and decoded.duration and decoded.fps:
    if clip.end > decoded.duration + 1.0 / decoded.fps:
      return SkippedFile(
        clip.path,
        f'bad range: ends at {clip.end:.3f} s, after the video ({decoded.duration:.3f} s)',
        clip.row,
      )
  short_scenes = []
  if windowed:
    parts = [(0, len(frames))]
    if scenes is not None:
      parts = scenes_lib.scene_spans(scenes, decoded.fps, len(frames))
    spans = []
    for first, last in parts:
      windows = clip_decode.window_starts(
        last - first,
        decoded.fps,
        settings.clip_seconds,
        settings.clip_stride_seconds,
        settings.min_frames,
      )
      spans += [(first + begin, first + finish) for begin, finish in windows]
      if scenes is not None and not windows:
        short_scenes.append(
          SkippedFile(
            f'{clip.path}#t={first / decoded.fps:.3f},{last / decoded.fps:.3f}',
            f'scene of {last - first} frames, shorter than one window of '
            f'{settings.clip_seconds} s with {settings.min_frames} frames',
            clip.row,
          )
        )
    if not spans:
      scenes_note = f' in any of its {len(parts)} scenes' if scenes is not None else ''
      return SkippedFile(
        clip.path,
        f'too short: {len(frames)} frames, no window of {settings.clip_seconds} s with '
        f'{settings.min_frames} frames{scenes_note}',
        clip.row,
      )
  else:
    if len(frames) < settings.min_frames:
      return SkippedFile(
        clip.path,
        f'too short: {len(frames)} frames, a clip needs {settings.min_frames}',
        clip.row,
      )
    spans = [(0, len(frames))]
  start = clip.start or 0.0
  out = []
  for offset, (first, last) in enumerate(spans):
    window = np.stack(frames[first:last])
    if settings.max_frames:
      window = window[: settings.max_frames]
    begin = start + first / decoded.fps if decoded.fps else start
    finish = start + last / decoded.fps if decoded.fps else (clip.end or 0.0)
    if not windowed and clip.end is not None:
      finish = clip.end
    ranged = windowed or clip.start is not None or clip.end is not None
    out.append(
      DecodedClip(
        f'{index:08d}_{offset:05d}',
        f'{clip.path}#t={begin:.3f},{finish:.3f}' if ranged else clip.path,
        clip.caption,
        window,
        split_name(settings, clip),
      )
    )
  return DecodedRow(out, short_scenes)


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
    result = decode_clip(self.settings, clip, index)
    if isinstance(result, SkippedFile):
      beam.metrics.Metrics.counter('videogen', 'skipped_rows').inc()
      path = epath.Path(self.skipped_dir) / f'{index:08d}.json'
      path.write_text(json.dumps(dataclasses.asdict(result)))
      return []
    if result.short_scenes:
      beam.metrics.Metrics.counter('videogen', 'short_scenes').inc(len(result.short_scenes))
      folder = epath.Path(self.skipped_dir) / SHORT_SCENES_DIR
      folder.mkdir(parents=True, exist_ok=True)
      scenes = [dataclasses.asdict(scene) for scene in result.short_scenes]
      (folder / f'{index:08d}.json').write_text(json.dumps(scenes))
    beam.metrics.Metrics.counter('videogen', 'clips').inc(len(result.clips))
    return [to_example(decoded) for decoded in result.clips]
