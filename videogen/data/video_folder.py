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

from videogen.data import config as config_lib
from videogen.data import transforms, video_io

CAPTION_FILES = ('captions.csv', 'captions.jsonl')
_LOG_EVERY = 50  # Videos between progress lines while decoding.


@dataclasses.dataclass(frozen=True)
class SkippedFile:
  """A video left out of a build, and why."""

  path: str
  reason: str


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


def video_folder_config(data: ml_collections.ConfigDict) -> VideoFolderConfig:
  """The builder config that `config.data` asks for.

  Depends on settings only (not the folder's content), so a dataset built
  from a folder stays loadable where the folder is absent (a training host
  reading data_dir from a bucket).
  """
  source_dir = pathlib.Path(data.source_dir).expanduser().absolute()
  height, width = config_lib.stored_size(data)
  settings = dict(
    source_dir=os.fspath(source_dir),
    height=height,
    width=width,
    max_frames=data.source_num_frames,
    min_frames=config_lib.clip_span(data),
    test_fraction=float(data.test_fraction),
  )
  digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()
  slug = re.sub(r'[^A-Za-z0-9]+', '_', source_dir.name).strip('_')[:40] or 'videos'
  frames = data.source_num_frames or 'all'
  return VideoFolderConfig(
    name=f'{slug}_{height}x{width}_{frames}f_{digest[:10]}',
    description=f'Videos and captions from {source_dir}.',
    **settings,
  )


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


@dataclasses.dataclass(frozen=True)
class _Prepared:
  """A decoded, resized clip waiting in the scratch dir."""

  key: str
  path: str
  caption: str
  array_file: str


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

  def _download_and_prepare(self, dl_manager, download_config=None):
    # Decoded clips wait in a scratch dir between the split scan and writing;
    # TFDS writes the dataset itself into an `incomplete.*` dir and renames
    # it into place only when everything succeeded.
    with tempfile.TemporaryDirectory(prefix='videogen_video_folder_') as scratch:
      self._scratch_dir = scratch
      return super()._download_and_prepare(dl_manager, download_config)

  def _prepare_clip(self, scan: FolderScan, row: CaptionRow, index: int) -> _Prepared | SkippedFile:
    """Decodes one video into the scratch dir; a SkippedFile if unusable."""
    config = self.builder_config
    frames = []
    try:
      for frame in video_io.iter_frames(scan.source_dir / row.path):
        frames.append(transforms.resize_video(frame[None], config.height, config.width)[0])
        if len(frames) == config.max_frames:
          break
    except video_io.VideoReadError as error:
      return SkippedFile(row.path, f'unreadable: {error.reason}')
    if len(frames) < config.min_frames:
      return SkippedFile(
        row.path, f'too short: {len(frames)} frames, a clip needs {config.min_frames}'
      )
    array_file = os.path.join(self._scratch_dir, f'{index:08d}.npy')
    np.save(array_file, np.stack(frames), allow_pickle=False)
    return _Prepared(f'{index:08d}', row.path, row.caption, array_file)

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    del dl_manager  # Everything is local.
    config = self.builder_config
    scan = scan_folder(config.source_dir)
    skipped = [SkippedFile(path, 'no caption row') for path in scan.uncaptioned]
    prepared = []
    for index, row in enumerate(scan.rows):
      result = self._prepare_clip(scan, row, index)
      if isinstance(result, SkippedFile):
        logging.warning('Skipping %s: %s', result.path, result.reason)
        skipped.append(result)
      else:
        prepared.append(result)
      if (index + 1) % _LOG_EVERY == 0:
        logging.info('Decoded %d of %d videos.', index + 1, len(scan.rows))
    self.info.metadata['skipped'] = [dataclasses.asdict(item) for item in skipped]
    self.info.metadata['source_dir'] = os.fspath(scan.source_dir)
    self.info.metadata['fingerprint'] = folder_fingerprint(scan)
    try:
      splits = assign_splits([item.path for item in prepared], config.test_fraction)
    except ValueError as error:
      details = '; '.join(f'{item.path}: {item.reason}' for item in skipped) or 'none'
      raise ValueError(
        f'Video folder {scan.source_dir}: {error} Usable: {len(prepared)}. Skipped: {details}.'
      ) from error
    return {
      split: self._generate_examples([prepared[i] for i in indices])
      for split, indices in splits.items()
    }

  def _generate_examples(self, items: list[_Prepared]):
    for item in items:
      video = np.load(item.array_file, allow_pickle=False)
      yield (
        item.key,
        {
          'video': video_io.encode_png_frames(video),
          'caption': item.caption,
          'path': item.path,
        },
      )
