"""Clip manifests: one row per captioned clip of a video, in CSV, JSONL or Parquet.

Columns (first header that matches wins; names compare case-insensitively):

| column | meaning | also accepted as |
|---|---|---|
| `path` | the video: relative to the manifest's folder (or `source_dir` when set), absolute, or `gs://...`; without a suffix, `<path>.mp4` (or another video suffix) is used | `video`, `video_path`, `file`, `filename`, `videoid`, `video_id` |
| `caption` | the clip's text | `name` (WebVid), `text`, `title` |
| `start` | clip start, seconds (`12.5`) or `[HH:]MM:SS[.mmm]` (`0:01:02.500`) | `start_time`, `start_sec`, `begin` |
| `end` | clip end, same forms; `end > start` | `end_time`, `end_sec`, `stop` |
| `timestamp` | the range as a pair `[start, end]`, or Panda-70M's list of pairs (with a list of captions: one clip each) | `span` (HD-VILA), `time_range` |
| `clip` | HD-VILA-100M's list of `{"span": [start, end], ...}` per video | `clips` |

Public sets this reads as published: WebVid-10M (`videoid,contentUrl,
duration,page_dir,name`: local files named `<videoid>.mp4`), Panda-70M
(`videoID,url,timestamp,caption,...`), OpenVid-1M (`video,caption,...`),
HD-VILA-100M (`video_id,clip[{span}]` plus a caption column). Other names map
through `config.data.manifest_columns` (`'path=my_file,caption=desc'`).

A row without a time range is the whole video (cut into windows by the
builder when `clip_seconds` is set). Rows that cannot be used (no path or
caption, a malformed or empty range, a missing file) are not errors: they come
back as `BadRow`s naming the row, and the build reports them.
"""

from __future__ import annotations

import ast
import csv
import dataclasses
import json
import math
import os
import pathlib
import re
from typing import Any, Iterator, Mapping

MANIFEST_SUFFIXES = ('.csv', '.jsonl', '.parquet')
_VIDEO_SUFFIXES = ('.mp4', '.webm', '.gif', '.avi', '.mov', '.mkv', '.m4v')

# Canonical column -> accepted names, in order of preference.
COLUMN_ALIASES: dict[str, tuple[str, ...]] = {
  'path': ('path', 'video', 'video_path', 'file', 'filename', 'videoid', 'video_id'),
  'caption': ('caption', 'name', 'text', 'title'),
  'start': ('start', 'start_time', 'start_sec', 'begin'),
  'end': ('end', 'end_time', 'end_sec', 'stop'),
  'timestamp': ('timestamp', 'span', 'time_range'),
  'clip': ('clip', 'clips'),
}
_TIME = re.compile(r'^(?:(\d+):)?(\d{1,2}):(\d{1,2}(?:\.\d*)?)$')


@dataclasses.dataclass(frozen=True)
class ClipRow:
  """One clip a manifest asks for.

  Attributes:
    path: the video as written in the manifest (decides the split).
    caption: its caption.
    start: start in seconds, or None for the start of the video.
    end: end in seconds, or None for its end.
    row: 1-based data row (header excluded; JSONL: line) it came from.
    location: where the video file is (resolved by `read_manifest`).
  """

  path: str
  caption: str
  start: float | None
  end: float | None
  row: int
  location: str = ''


@dataclasses.dataclass(frozen=True)
class BadRow:
  """A manifest row left out, and why."""

  row: int
  path: str
  reason: str


@dataclasses.dataclass(frozen=True)
class Manifest:
  """A parsed manifest: usable clips and rejected rows."""

  path: pathlib.Path
  clips: list[ClipRow]
  bad_rows: list[BadRow]


def parse_time(value: Any) -> float:
  """Seconds from `12.5`, `'12.5'`, `'01:02.5'` or `'0:01:02.500'`.

  Raises:
    ValueError: any other form, a negative or non-finite time.
  """
  if isinstance(value, (int, float)) and not isinstance(value, bool):
    seconds = float(value)
  else:
    text = str(value).strip()
    match = _TIME.match(text)
    if match:
      hours, minutes, secs = match.groups()
      seconds = int(hours or 0) * 3600 + int(minutes) * 60 + float(secs)
    else:
      try:
        seconds = float(text)
      except ValueError:
        raise ValueError(f'time {text!r} is neither seconds nor HH:MM:SS.mmm') from None
  if not math.isfinite(seconds) or seconds < 0:
    raise ValueError(f'time {value!r} must be finite and >= 0')
  return seconds


def parse_column_map(spec: str) -> dict[str, str]:
  """`'path=file,caption=desc'` -> {'path': 'file', 'caption': 'desc'}.

  Raises:
    ValueError: an entry is not `column=name` or names an unknown column.
  """
  mapping = {}
  for entry in filter(None, (part.strip() for part in spec.split(','))):
    column, sep, name = entry.partition('=')
    column = column.strip()
    if not sep or not name.strip() or column not in COLUMN_ALIASES:
      raise ValueError(
        f'config.data.manifest_columns entry {entry!r}: expected column=name with column '
        f'one of {sorted(COLUMN_ALIASES)}.'
      )
    mapping[column] = name.strip()
  return mapping


def _records(path: pathlib.Path) -> Iterator[tuple[int, dict[str, Any] | str]]:
  """(row number, record or the reason it is unreadable) per data row."""
  suffix = path.suffix.lower()
  if suffix == '.csv':
    with path.open(newline='', encoding='utf-8') as file:
      reader = csv.DictReader(file)
      for row, record in enumerate(reader, start=1):
        if None in record:  # More fields than the header names.
          yield (
            row,
            f'{len(reader.fieldnames or []) + len(record[None])} fields, header has {len(reader.fieldnames or [])}',
          )
        elif any(str(value or '').strip() for value in record.values()):
          yield row, record
  elif suffix == '.jsonl':
    with path.open(encoding='utf-8') as file:
      for row, text in enumerate(file, start=1):
        if not text.strip():
          continue
        try:
          record = json.loads(text)
        except json.JSONDecodeError as error:
          yield row, f'not JSON ({error.msg})'
          continue
        yield row, record if isinstance(record, dict) else 'not a JSON object'
  elif suffix == '.parquet':
    import pyarrow.parquet as pq  # pylint: disable=g-import-not-at-top  # TFDS installs it.

    for row, record in enumerate(pq.read_table(path).to_pylist(), start=1):
      yield row, record
  else:
    raise ValueError(f'Manifest {path}: unknown format; use one of {", ".join(MANIFEST_SUFFIXES)}.')


def _resolve_columns(keys: list[str], overrides: Mapping[str, str]) -> dict[str, str]:
  """Canonical column -> the record key holding it (absent when none does)."""
  lowered = {key.lower(): key for key in keys}
  columns = {}
  for column, aliases in COLUMN_ALIASES.items():
    names = (overrides[column],) if column in overrides else aliases
    for name in names:
      if name.lower() in lowered:
        columns[column] = lowered[name.lower()]
        break
  return columns


def _as_list(value: Any) -> Any:
  """Parses Panda-70M's list cells (`"[['0:00:00.000', '0:00:05.005'], ...]"`)."""
  if isinstance(value, str) and value.strip().startswith('['):
    try:
      return ast.literal_eval(value.strip())
    except (ValueError, SyntaxError):
      try:
        return json.loads(value)
      except json.JSONDecodeError:
        return value
  return value


def _present(value: Any) -> bool:
  return value is not None and str(value).strip() != '' and str(value).lower() != 'nan'


def _range(start: Any, end: Any) -> tuple[float | None, float | None]:
  begin = parse_time(start) if _present(start) else None
  finish = parse_time(end) if _present(end) else None
  if begin is not None and finish is not None and finish <= begin:
    raise ValueError(f'end {end!r} is not after start {start!r}')
  return begin, finish


def _clips_of(record: Mapping[str, Any], columns: Mapping[str, str], row: int) -> list[ClipRow]:
  """The clips one record asks for (several for Panda-70M / HD-VILA lists).

  Raises:
    ValueError: what makes the record unusable.
  """
  path = record.get(columns.get('path', ''), '') if 'path' in columns else ''
  if not _present(path):
    raise ValueError(f'no video path (columns tried: {", ".join(COLUMN_ALIASES["path"])})')
  path = str(path).strip()
  caption = _as_list(record.get(columns['caption'])) if 'caption' in columns else None
  spans: list[Any] = []
  if 'clip' in columns:  # HD-VILA: [{'span': [start, end], 'caption'?: ...}, ...]
    for clip in _as_list(record.get(columns['clip'])) or []:
      if not isinstance(clip, Mapping):
        raise ValueError(f'clip entry {clip!r} is not an object with a span')
      span = clip.get('span') or clip.get('timestamp')
      spans.append((span, clip.get('caption', clip.get('text'))))
  elif 'timestamp' in columns and _present(record.get(columns['timestamp'])):
    stamps = _as_list(record.get(columns['timestamp']))
    if isinstance(stamps, (list, tuple)) and stamps and isinstance(stamps[0], (list, tuple)):
      captions = caption if isinstance(caption, list) else [caption] * len(stamps)
      if len(captions) != len(stamps):
        raise ValueError(f'{len(stamps)} time ranges but {len(captions)} captions')
      spans = list(zip(stamps, captions, strict=True))
    else:
      spans = [(stamps, caption)]
  clips = []
  if spans:
    for span, text in spans:
      text = caption if text is None else text
      if not isinstance(span, (list, tuple)) or len(span) != 2:
        raise ValueError(f'time range {span!r} is not a pair [start, end]')
      if isinstance(text, list):
        raise ValueError('a list of captions needs a list of time ranges')
      start, end = _range(*span)
      clips.append(ClipRow(path, str(text or '').strip(), start, end, row))
  else:
    if isinstance(caption, list):
      raise ValueError('a list of captions needs a list of time ranges')
    start, end = _range(
      record.get(columns['start']) if 'start' in columns else None,
      record.get(columns['end']) if 'end' in columns else None,
    )
    clips.append(ClipRow(path, str(caption or '').strip(), start, end, row))
  for clip in clips:
    if not clip.caption or clip.caption.lower() == 'nan':
      raise ValueError('empty caption')
  return clips


def resolve_video(base: str, path: str) -> str:
  """Where a manifest path points: absolute/`gs://` as is, else under `base`.

  A path without a video suffix becomes the first existing `<path><suffix>`
  (`.mp4` first); the result may not exist (the caller reports it).
  """
  if '://' in path or os.path.isabs(path):
    full = path
  else:
    full = os.path.join(base, path)
  if pathlib.PurePath(path).suffix.lower() not in _VIDEO_SUFFIXES and not _exists(full):
    for suffix in _VIDEO_SUFFIXES:
      if _exists(full + suffix):
        return full + suffix
  return full


def _exists(path: str) -> bool:
  if '://' in path:
    from etils import epath  # pylint: disable=g-import-not-at-top  # gs:// via TF's gfile.

    return epath.Path(path).is_file()
  return os.path.isfile(path)


def read_manifest(
  path: str | os.PathLike[str],
  *,
  base_dir: str = '',
  columns: str = '',
  check_files: bool = True,
) -> Manifest:
  """Parses a manifest into clips; unusable rows become `BadRow`s.

  Args:
    path: the manifest (`.csv`, `.jsonl` or `.parquet`).
    base_dir: folder that relative video paths start from; '' = the
      manifest's folder.
    columns: `config.data.manifest_columns` overrides (`'path=f,caption=c'`).
    check_files: report rows whose video file is missing as bad rows.

  Returns:
    A Manifest; `clips[i].location` is where the video file is.

  Raises:
    FileNotFoundError: the manifest does not exist.
    ValueError: an unknown format, a bad `columns` spec, or a manifest that
      has no path or caption column at all.
  """
  manifest = pathlib.Path(path).expanduser().absolute()
  if not manifest.is_file():
    raise FileNotFoundError(f'Manifest {manifest} does not exist (config.data.manifest).')
  overrides = parse_column_map(columns)
  base = base_dir or os.fspath(manifest.parent)
  clips: list[ClipRow] = []
  bad: list[BadRow] = []
  resolved: dict[str, tuple[str, bool]] = {}
  mapping = None
  for row, record in _records(manifest):
    if isinstance(record, str):
      bad.append(BadRow(row, '', record))
      continue
    if mapping is None:
      mapping = _resolve_columns(list(record), overrides)
      missing = [name for name in ('path', 'caption') if name not in mapping]
      if 'caption' in missing and 'clip' in mapping:
        missing.remove('caption')  # HD-VILA clips may carry their own captions.
      if missing:
        raise ValueError(
          f'Manifest {manifest}: no {" or ".join(missing)} column among {sorted(record)}; '
          f'accepted names: {", ".join(f"{m}: {COLUMN_ALIASES[m]}" for m in missing)}, '
          'or map yours with config.data.manifest_columns.'
        )
    try:
      row_clips = _clips_of(record, mapping, row)
    except ValueError as error:
      bad.append(BadRow(row, str(record.get(mapping.get('path', ''), '') or ''), str(error)))
      continue
    written = row_clips[0].path
    if written not in resolved:
      full = resolve_video(base, written)
      resolved[written] = (full, not check_files or _exists(full))
    full, exists = resolved[written]
    if not exists:
      bad.append(BadRow(row, written, f'no video file at {full}'))
      continue
    clips += [dataclasses.replace(clip, location=full) for clip in row_clips]
  return Manifest(manifest, clips, bad)
