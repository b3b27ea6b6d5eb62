"""The `video_folder` TFDS builder: a user's videos and captions as array_record.

The folder holds videos (mp4, webm, gif, avi, mov, mkv, m4v; subfolders are
fine) and a caption file naming them by path relative to the folder:

* `captions.csv`: rows `path,caption` (a `path,caption` header is optional;
  quote captions that contain commas), or
* `captions.jsonl`: one `{"path": ..., "caption": ...}` per line.

Each captioned video is decoded frame by frame, centre-cropped to the target
aspect ratio, resized, and cut to `source_num_frames` frames (0 = all).
Files that cannot be used (corrupt, empty, shorter than one clip, or videos
with no caption row) are skipped and listed in the build report, which is
also saved with the dataset (`metadata.json`). Bad input (no folder, no
videos, no caption file, a caption row naming a missing file) is an error
that names the path.

Split: a video goes to `test` when a hash of its relative path falls below
`test_fraction`, so adding videos never moves old ones between splits. If the
hash leaves a split empty, the usable video with the lowest (for test) or
highest (for train) hash moves over; a folder needs two usable videos.

Instead of a caption file, `config.data.manifest` may name a clip manifest
(CSV, JSONL or Parquet; see `videogen.data.manifest` for its columns): one
row per captioned clip, with an optional time range, so one long video gives
many clips. Rows that cannot be used (bad range, missing file, undecodable
stretch) are skipped and reported by row. A clip without a time range can
be cut into windows of `clip_seconds` every `clip_stride_seconds`, all with
its caption; all clips of one video land in the same split. Time ranges and
windows are decoded by seeking to their start (`clip_decode`); a stored
clip's `path` is then `<video>#t=<start>,<end>` (seconds). With
`config.data.scene_detect` (PySceneDetect, the `scenes` extra) a video is
split at its scene cuts first and windows stay within one scene; scenes
shorter than one window are left out and listed in the build report
(`short_scenes`).

The builder config name is `<folder>_<H>x<W>_<frames>f_<hash of the folder
path and settings>`, so other settings build next to it. The build also saves
a fingerprint of the caption file and video sizes: `ensure_built` refuses a
dataset whose folder has changed since, and says which directory to delete
to rebuild it (nothing built is ever deleted automatically).
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import os
import pathlib
import re
import tempfile

import ml_collections
import numpy as np
import tensorflow_datasets as tfds
from absl import logging
from etils import epath

from videogen.data import clip_examples, video_io
from videogen.data import config as config_lib
from videogen.data import manifest as manifest_lib
from videogen.data import scenes as scenes_lib

SkippedFile = clip_examples.SkippedFile  # A video or manifest row left out, and why.

CAPTION_FILES = ('captions.csv', 'captions.jsonl')
_LOG_EVERY = 50  # Videos between progress lines while decoding.


@dataclasses.dataclass(frozen=True)
class CaptionRow:
  """One entry of the caption file.

  Attributes:
    path: the video path relative to the folder, as written.
    caption: its caption.
    line: 1-based line in the caption file (for error messages).
  """

  path: str
  caption: str
  line: int


@dataclasses.dataclass(frozen=True)
class FolderScan:
  """A checked video folder: its caption file, rows, and uncaptioned videos."""

  source_dir: pathlib.Path
  captions_file: pathlib.Path
  rows: list[CaptionRow]
  uncaptioned: list[str]


def _video_files(source_dir: pathlib.Path) -> list[str]:
  """Relative paths of every video file under `source_dir`, sorted."""
  return sorted(
    path.relative_to(source_dir).as_posix()
    for path in source_dir.rglob('*')
    if path.is_file() and path.suffix.lower() in video_io.VIDEO_SUFFIXES
  )


def _read_csv(path: pathlib.Path) -> list[CaptionRow]:
  rows = []
  with path.open(newline='', encoding='utf-8') as file:
    for line, record in enumerate(csv.reader(file), start=1):
      if not record or not any(field.strip() for field in record):
        continue
      if line == 1 and [field.strip().lower() for field in record] == [
        'path',
        'caption',
      ]:
        continue
      if len(record) != 2:
        raise ValueError(
          f'{path}, line {line}: expected 2 fields (path,caption), got {len(record)}; '
          'quote captions that contain commas.'
        )
      rows.append(CaptionRow(record[0].strip(), record[1].strip(), line))
  return rows


def _read_jsonl(path: pathlib.Path) -> list[CaptionRow]:
  rows = []
  with path.open(encoding='utf-8') as file:
    for line, text in enumerate(file, start=1):
      if not text.strip():
        continue
      try:
        record = json.loads(text)
        rows.append(CaptionRow(str(record['path']).strip(), str(record['caption']).strip(), line))
      except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise ValueError(
          f'{path}, line {line}: expected {{"path": ..., "caption": ...}} ({error}).'
        ) from error
  return rows


def scan_folder(source_dir: str | os.PathLike[str]) -> FolderScan:
  """Checks a video folder and reads its captions.

  Raises:
    FileNotFoundError: the folder, its caption file, or a video a caption row
      names does not exist (the message names the path).
    ValueError: the folder has no videos, the caption file has no rows, a row
      is malformed or has an empty caption.
  """
  source_dir = pathlib.Path(source_dir).expanduser().absolute()
  if not source_dir.is_dir():
    raise FileNotFoundError(f'Video folder {source_dir} does not exist (config.data.source_dir).')
  videos = _video_files(source_dir)
  if not videos:
    raise ValueError(
      f'Video folder {source_dir} contains no videos ({", ".join(video_io.VIDEO_SUFFIXES)}).'
    )
  present = [source_dir / name for name in CAPTION_FILES if (source_dir / name).is_file()]
  if not present:
    raise FileNotFoundError(
      f'No caption file in video folder {source_dir}: expected '
      f'{source_dir / CAPTION_FILES[0]} (rows path,caption) or '
      f'{source_dir / CAPTION_FILES[1]} (lines {{"path": ..., "caption": ...}}).'
    )
  if len(present) > 1:
    raise ValueError(f'Video folder {source_dir} has both {present[0]} and {present[1]}; keep one.')
  captions_file = present[0]
  rows = _read_csv(captions_file) if captions_file.suffix == '.csv' else _read_jsonl(captions_file)
  if not rows:
    raise ValueError(f'Caption file {captions_file} lists no videos.')
  for row in rows:
    if not row.caption:
      raise ValueError(f'{captions_file}, line {row.line}: empty caption for {row.path!r}.')
    if not (source_dir / row.path).is_file():
      raise FileNotFoundError(
        f'{captions_file}, line {row.line} names a video that does not exist: '
        f'{source_dir / row.path}'
      )
  captioned = {pathlib.PurePath(row.path).as_posix() for row in rows}
  uncaptioned = [video for video in videos if video not in captioned]
  return FolderScan(source_dir, captions_file, rows, uncaptioned)


@dataclasses.dataclass(eq=False)
class VideoFolderConfig(tfds.core.BuilderConfig):
  """What a video_folder dataset is built from (the name is derived from it)."""

  source_dir: str = ''
  height: int = 64
  width: int = 64
  max_frames: int = 0  # 0 = every frame.
  min_frames: int = 1  # Shorter videos are skipped.
  test_fraction: float = 0.05
  manifest: str = ''  # A clip manifest instead of the folder's caption file.
  manifest_columns: str = ''  # Column-name overrides, 'path=a,caption=b'.
  clip_seconds: float = 0.0  # Cut clips without a time range into windows; 0 = whole.
  clip_stride_seconds: float = 0.0  # Seconds between window starts; 0 = clip_seconds.
  scene_detect: str = ''  # Split windowed videos at scene cuts with this detector; '' = off.
  scene_threshold: float = 0.0  # The scene detector's cut threshold (set with scene_detect).


def video_folder_config(data: ml_collections.ConfigDict) -> VideoFolderConfig:
  """The builder config that `config.data` asks for.

  Depends on settings only (not the folder's content), so a dataset built
  from a folder stays loadable where the folder is absent (a training host
  reading data_dir from a bucket).
  """
  source_dir = pathlib.Path(data.source_dir).expanduser().absolute() if data.source_dir else None
  manifest = _manifest_path(data)
  height, width = config_lib.stored_size(data)
  settings = dict(
    source_dir=os.fspath(source_dir) if source_dir else '',
    height=height,
    width=width,
    max_frames=data.source_num_frames,
    min_frames=config_lib.clip_span(data),
    test_fraction=float(data.test_fraction),
  )
  clips = dict(
    manifest=manifest,
    manifest_columns=data.get('manifest_columns', ''),
    clip_seconds=float(data.get('clip_seconds', 0.0)),
    clip_stride_seconds=float(data.get('clip_stride_seconds', 0.0)),
    scene_detect=data.get('scene_detect', ''),
  )
  if clips['scene_detect']:
    clips['scene_threshold'] = float(data.get('scene_threshold', scenes_lib.DEFAULT_THRESHOLD))
  settings.update({key: value for key, value in clips.items() if value})  # Old names stay.
  digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()
  named = pathlib.Path(manifest).stem if manifest else source_dir.name
  slug = re.sub(r'[^A-Za-z0-9]+', '_', named).strip('_')[:40] or 'videos'
  frames = data.source_num_frames or 'all'
  return VideoFolderConfig(
    name=f'{slug}_{height}x{width}_{frames}f_{digest[:10]}',
    description=f'Videos and captions from {manifest or source_dir}.',
    **settings,
  )


def _manifest_path(data: ml_collections.ConfigDict) -> str:
  manifest = data.get('manifest', '')
  if not manifest or '://' in manifest:
    return manifest
  return os.fspath(pathlib.Path(manifest).expanduser().absolute())


def read_clips(
  config: VideoFolderConfig,
) -> tuple[list[manifest_lib.ClipRow], list[SkippedFile], str]:
  """The clips a build config asks for, the rows left out, and a fingerprint.

  Raises:
    FileNotFoundError, ValueError: the folder or manifest is unusable as a
      whole (see `scan_folder` and `manifest.read_manifest`).
  """
  if config.manifest:
    parsed = manifest_lib.read_manifest(
      config.manifest, base_dir=config.source_dir, columns=config.manifest_columns
    )
    skipped = [SkippedFile(bad.path, bad.reason, bad.row) for bad in parsed.bad_rows]
    return parsed.clips, skipped, manifest_fingerprint(parsed)
  scan = scan_folder(config.source_dir)
  clips = [
    manifest_lib.ClipRow(
      row.path, row.caption, None, None, row.line, os.fspath(scan.source_dir / row.path)
    )
    for row in scan.rows
  ]
  skipped = [SkippedFile(path, 'no caption row') for path in scan.uncaptioned]
  return clips, skipped, folder_fingerprint(scan)


def current_fingerprint(data: ml_collections.ConfigDict) -> str | None:
  """The fingerprint the folder or manifest has now; None when it is not here."""
  config = video_folder_config(data)
  if config.manifest:
    if '://' in config.manifest or not os.path.isfile(config.manifest):
      return None
  elif not os.path.isdir(config.source_dir):
    return None
  return read_clips(config)[2]


def manifest_fingerprint(parsed: manifest_lib.Manifest) -> str:
  """A hash of the manifest and the size of every local video it uses."""
  digest = hashlib.sha256(parsed.path.read_bytes())
  for location in sorted({clip.location for clip in parsed.clips}):
    size = os.path.getsize(location) if '://' not in location else -1
    digest.update(f'{location}:{size};'.encode())
  return digest.hexdigest()


def folder_fingerprint(scan: FolderScan) -> str:
  """A hash of the caption file and the size of every captioned video.

  Saved with the build; a different value later means the folder changed
  since (a replaced video almost always changes size).
  """
  digest = hashlib.sha256(scan.captions_file.read_bytes())
  for row in scan.rows:
    digest.update(f'{row.path}:{(scan.source_dir / row.path).stat().st_size};'.encode())
  return digest.hexdigest()


def _path_hash(path: str) -> float:
  """A stable number in [0, 1) from a relative path (decides its split)."""
  return int(hashlib.sha256(path.encode()).hexdigest()[:12], 16) / float(1 << 48)


def assign_splits(paths: list[str], test_fraction: float) -> dict[str, list[int]]:
  """Indices of `paths` per split, by path hash; both splits non-empty.

  Raises:
    ValueError: fewer than two distinct paths.
  """
  hashes = {path: _path_hash(path) for path in paths}
  test_paths = {path for path, value in hashes.items() if value < test_fraction}
  if len(hashes) < 2:
    raise ValueError('Need at least two usable videos: one per split (train, test).')
  ordered = sorted(hashes, key=hashes.get)
  if not test_paths:
    test_paths = {ordered[0]}
  elif len(test_paths) == len(hashes):
    test_paths.discard(ordered[-1])
  splits = {'train': [], 'test': []}
  for index, path in enumerate(paths):
    splits['test' if path in test_paths else 'train'].append(index)
  return splits


class VideoFolder(tfds.core.GeneratorBasedBuilder):
  """A folder of the user's videos with captions."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'First release.'}

  @tfds.core.utils.classproperty
  @classmethod
  def code_path(cls) -> epath.Path:
    # TFDS would find this file through `importlib_resources`, which it does
    # not install; naming it directly avoids that import.
    return epath.Path(__file__)

  def _info(self) -> tfds.core.DatasetInfo:
    config = self.builder_config
    return tfds.core.DatasetInfo(
      builder=self,
      description=f'Captioned videos from {config.source_dir}.',
      features=tfds.features.FeaturesDict(
        {
          'video': tfds.features.Video(shape=(None, config.height, config.width, 3)),
          'caption': tfds.features.Text(),
          'path': tfds.features.Text(doc='Video path relative to the folder.'),
        }
      ),
      metadata=tfds.core.MetadataDict(),
    )

  _beam_skipped_dir: epath.Path | None = None  # Set by `use_beam`: a Beam build.

  def use_beam(self, skipped_dir: str) -> None:
    """Builds as an Apache Beam pipeline: every row is decoded by a worker.

    Splits are then assigned (by the same path hash) before decoding, so a
    video that turns out unusable leaves its split shorter instead of moving
    another video over. Workers write what they skip to `skipped_dir` (a
    directory every worker can write: local for DirectRunner, gs:// on
    Dataflow); the build collects it into the report.
    """
    self._beam_skipped_dir = epath.Path(skipped_dir)

  def _download_and_prepare(self, dl_manager, download_config=None):
    # Decoded clips wait in a scratch dir between the split scan and writing;
    # TFDS writes the dataset itself into an `incomplete.*` dir and renames
    # it into place only when everything succeeded.
    with tempfile.TemporaryDirectory(prefix='videogen_video_folder_') as scratch:
      self._scratch_dir = scratch
      result = super()._download_and_prepare(dl_manager, download_config)
    if self._beam_skipped_dir:  # The pipeline has run: gather what workers skipped.
      skipped = [SkippedFile(**item) for item in self.info.metadata.get('skipped', [])]
      for path in sorted(self._beam_skipped_dir.glob('*.json')):
        skipped.append(SkippedFile(**json.loads(path.read_text())))
      skipped.sort(key=lambda item: item.row)
      self.info.metadata['skipped'] = [dataclasses.asdict(item) for item in skipped]
      if self.builder_config.scene_detect:
        short_scenes = []
        scenes_dir = self._beam_skipped_dir / clip_examples.SHORT_SCENES_DIR
        for path in sorted(scenes_dir.glob('*.json')) if scenes_dir.exists() else []:
          short_scenes += json.loads(path.read_text())  # One file per row, in row order.
        self.info.metadata['short_scenes'] = short_scenes
    return result

  def _beam_split_generators(self, clips, skipped):
    import apache_beam as beam  # pylint: disable=g-import-not-at-top  # The beam extra.

    self.info.metadata['skipped'] = [dataclasses.asdict(item) for item in skipped]
    splits = assign_splits(
      [clip_examples.split_name(self._settings(), clip) for clip in clips],
      self.builder_config.test_fraction,
    )
    self._beam_skipped_dir.mkdir(parents=True, exist_ok=True)
    decode = clip_examples.BeamDecode(self._settings(), os.fspath(self._beam_skipped_dir))
    return {
      split: (
        beam.Create([(index, clips[index]) for index in indices], reshuffle=True)
        | f'Decode {split}' >> beam.FlatMap(decode)
      )
      for split, indices in splits.items()
    }

  def _settings(self) -> clip_examples.ClipSettings:
    config = self.builder_config
    return clip_examples.ClipSettings(
      height=config.height,
      width=config.width,
      max_frames=config.max_frames,
      min_frames=config.min_frames,
      clip_seconds=config.clip_seconds,
      clip_stride_seconds=config.clip_stride_seconds,
      from_manifest=bool(config.manifest),
      scene_detect=config.scene_detect,
      scene_threshold=config.scene_threshold,
    )

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    del dl_manager  # Everything is local.
    config = self.builder_config
    clips, skipped, fingerprint = read_clips(config)
    self.info.metadata['source_dir'] = config.source_dir
    if config.manifest:
      self.info.metadata['manifest'] = config.manifest
    self.info.metadata['fingerprint'] = fingerprint
    if config.scene_detect:  # Before any decoding: a missing extra is one line, not N skips.
      scenes_lib.require_scenedetect(config.scene_detect)
    if self._beam_skipped_dir:
      return self._beam_split_generators(clips, skipped)
    settings = self._settings()
    prepared = []
    short_scenes = []
    for index, clip in enumerate(clips):
      report = clip_examples.RowReport()
      for decoded in clip_examples.iter_clips(settings, clip, index, report):
        array_file = os.path.join(self._scratch_dir, f'{decoded.key}.npy')
        np.save(array_file, decoded.video, allow_pickle=False)  # Memory holds one clip.
        prepared.append(dataclasses.replace(decoded, video=array_file))
      if report.skipped is not None:
        row = f'row {report.skipped.row}, ' if report.skipped.row else ''
        logging.warning('Skipping %s%s: %s', row, report.skipped.path, report.skipped.reason)
        skipped.append(report.skipped)
      short_scenes += report.short_scenes
      if (index + 1) % _LOG_EVERY == 0:
        logging.info('Decoded %d of %d clips.', index + 1, len(clips))
    skipped.sort(key=lambda item: item.row)  # Manifest rows in order; folder files first.
    self.info.metadata['skipped'] = [dataclasses.asdict(item) for item in skipped]
    if config.scene_detect:
      self.info.metadata['short_scenes'] = [dataclasses.asdict(item) for item in short_scenes]
      logging.info('Left out %d scenes shorter than one window.', len(short_scenes))
    try:
      splits = assign_splits([item.split_name for item in prepared], config.test_fraction)
    except ValueError as error:
      details = '; '.join(f'{item.path}: {item.reason}' for item in skipped) or 'none'
      where = (
        f'Manifest {config.manifest}' if config.manifest else f'Video folder {config.source_dir}'
      )
      raise ValueError(f'{where}: {error} Usable: {len(prepared)}. Skipped: {details}.') from error
    return {
      split: self._generate_examples([prepared[i] for i in indices])
      for split, indices in splits.items()
    }

  def _generate_examples(self, items: list[clip_examples.DecodedClip]):
    for item in items:  # `video` names the scratch file of its frames.
      video = np.load(item.video, allow_pickle=False)
      yield clip_examples.to_example(dataclasses.replace(item, video=video))
