"""Clip manifests: columns of the public sets, time ranges, bad rows by row, windows."""

import contextlib
import dataclasses
import json
import pathlib

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from videogen.data import (
  build,
  clip_decode,
  clip_examples,
  manifest,
  shapes,
  sources,
  transforms,
  video_io,
)
from videogen.data import config as data_config_lib

FPS = 8


@pytest.fixture(scope='module')
def videos(tmp_path_factory) -> pathlib.Path:
  """long.mp4: 6 s (48 frames at 8 fps); other.mp4: 3 s."""
  root = tmp_path_factory.mktemp('videos')
  long = np.concatenate([shapes.generate_example(seed, 16, 32, 32).video for seed in range(3)])
  video_io.write_video(root / 'long.mp4', long, fps=FPS)
  video_io.write_video(root / 'other.mp4', shapes.generate_example(9, 24, 32, 32).video, fps=FPS)
  return root


@pytest.mark.parametrize(
  'text, seconds',
  [('12.5', 12.5), (3, 3.0), ('01:02.5', 62.5), ('0:01:02.500', 62.5), ('00:00:05.005', 5.005)],
)
def test_times_in_seconds_or_hh_mm_ss(text, seconds):
  assert manifest.parse_time(text) == pytest.approx(seconds)


@pytest.mark.parametrize('text', ['soon', '-1', '1:2:3:4', 'nan'])
def test_bad_times_are_errors(text):
  with pytest.raises(ValueError):
    manifest.parse_time(text)


def test_csv_rows_with_ranges_and_bad_rows_reported_by_row(videos):
  (videos / 'clips.csv').write_text(
    'path,caption,start,end\n'
    'long.mp4,first,0,2\n'
    'long.mp4,second,00:00:02.000,00:00:04.000\n'
    'long.mp4,reversed,3,2\n'
    'missing.mp4,lost,0,1\n'
    'other.mp4,whole,,\n'
    'long.mp4,,0,1\n'
    'long.mp4,bad time,soon,1\n'
    'long,no suffix,4,6\n'
    'long.mp4,too,many,fields,here\n'
  )
  parsed = manifest.read_manifest(videos / 'clips.csv')
  assert [(c.caption, c.start, c.end, c.row) for c in parsed.clips] == [
    ('first', 0.0, 2.0, 1),
    ('second', 2.0, 4.0, 2),
    ('whole', None, None, 5),
    ('no suffix', 4.0, 6.0, 8),
  ]
  assert parsed.clips[3].location == str(videos / 'long.mp4')
  bad = {row.row: row.reason for row in parsed.bad_rows}
  assert sorted(bad) == [3, 4, 6, 7, 9]
  assert 'not after start' in bad[3]
  assert bad[4] == f'no video file at {videos / "missing.mp4"}'
  assert bad[6] == 'empty caption'
  assert 'neither seconds nor HH:MM:SS' in bad[7]
  assert 'fields' in bad[9]


def test_public_dataset_columns(videos, tmp_path):
  # WebVid-10M: videoid + name, files named <videoid>.mp4.
  (tmp_path / 'webvid.csv').write_text(
    'videoid,contentUrl,duration,page_dir,name\nlong,http://x/1.mp4,PT00H00M06S,d,a dog runs\n'
  )
  webvid = manifest.read_manifest(tmp_path / 'webvid.csv', base_dir=str(videos))
  assert [(c.location, c.caption) for c in webvid.clips] == [
    (str(videos / 'long.mp4'), 'a dog runs')
  ]
  # Panda-70M: one row per video, lists of ranges and captions.
  (tmp_path / 'panda.csv').write_text(
    'videoID,url,timestamp,caption,matching_score\n'
    "long,u,\"[['0:00:00.000', '0:00:02.000'], ['0:00:03.500', '0:00:05.000']]\","
    '"[\'a cat\', \'a hat\']","[0.4, 0.5]"\n'
  )
  panda = manifest.read_manifest(tmp_path / 'panda.csv', base_dir=str(videos))
  assert [(c.start, c.end, c.caption) for c in panda.clips] == [(0, 2, 'a cat'), (3.5, 5, 'a hat')]
  # OpenVid-1M: video + caption, no ranges (JSONL here).
  (tmp_path / 'openvid.jsonl').write_text(
    json.dumps({'video': 'other.mp4', 'caption': 'waves', 'aesthetic score': 5.1}) + '\n'
  )
  openvid = manifest.read_manifest(tmp_path / 'openvid.jsonl', base_dir=str(videos))
  assert [(c.path, c.start) for c in openvid.clips] == [('other.mp4', None)]
  # HD-VILA-100M: clips with spans; Parquet.
  table = pa.table(
    {
      'video_id': ['long'],
      'clip': [[{'clip_id': 'a', 'span': ['00:00:01.000', '00:00:03.000']}]],
      'caption': ['a talk'],
    }
  )
  pq.write_table(table, tmp_path / 'hdvila.parquet')
  hdvila = manifest.read_manifest(tmp_path / 'hdvila.parquet', base_dir=str(videos))
  assert [(c.start, c.end, c.caption) for c in hdvila.clips] == [(1.0, 3.0, 'a talk')]
  # Other names map through config.data.manifest_columns.
  (tmp_path / 'own.csv').write_text('file_name,desc,t0,t1\nother.mp4,mine,1,2\n')
  own = manifest.read_manifest(
    tmp_path / 'own.csv',
    base_dir=str(videos),
    columns='path=file_name,caption=desc,start=t0,end=t1',
  )
  assert [(c.caption, c.start, c.end) for c in own.clips] == [('mine', 1.0, 2.0)]
  with pytest.raises(ValueError, match='no path or caption column'):
    manifest.read_manifest(tmp_path / 'own.csv')
  with pytest.raises(ValueError, match='column=name'):
    manifest.read_manifest(tmp_path / 'own.csv', columns='movie=file_name')


def _data(tmp_path, **overrides):
  data = data_config_lib.data_config('video_folder', num_frames=5, resolution=16)
  data.data_dir = str(tmp_path / 'tfds')
  for key, value in overrides.items():
    data[key] = value
  return data


def _examples(data):
  return {
    (ex['caption'], len(ex['video'])): ex
    for split in ('train', 'test')
    for ex in sources.open_source(data, split)
  }


def test_build_from_manifest_seeks_to_each_range(videos, tmp_path):
  (tmp_path / 'clips.csv').write_text(
    'path,caption,start,end\n'
    f'{videos / "long.mp4"},first,0,2\n'
    f'{videos / "long.mp4"},later,00:00:03.000,00:00:05.000\n'
    f'{videos / "long.mp4"},past the end,5,9\n'
    f'{videos / "other.mp4"},other,,\n'
  )
  data = _data(tmp_path, manifest=str(tmp_path / 'clips.csv'))
  report = build.build_dataset(data)
  assert sum(report.num_examples.values()) == 3
  assert [(item.row, item.reason.split(':')[0]) for item in report.skipped] == [(3, 'bad range')]
  assert 'row 3, ' in str(report)
  examples = _examples(data)
  assert set(examples) == {('first', 16), ('later', 16), ('other', 24)}
  whole = transforms.resize_video(video_io.read_video(videos / 'long.mp4'), 16, 16)
  later = transforms.decode_frames(examples[('later', 16)]['video'])
  # Seeking decodes the same frames as a whole decode (up to resize rounding).
  assert np.abs(later.astype(int) - whole[24:40].astype(int)).mean() < 2.0
  # Clips of one video share a split.
  train = {ex['caption'] for ex in sources.open_source(data, 'train')}
  assert {'first', 'later'} <= train or not {'first', 'later'} & train


def test_windows_cut_long_videos(videos, tmp_path):
  assert clip_decode.window_starts(48, 8.0, 2.0, 1.0, 5) == [
    (start, start + 16) for start in range(0, 33, 8)
  ]
  assert clip_decode.window_starts(48, 8.0, 2.0, 0.0, 5) == [(0, 16), (16, 32), (32, 48)]
  assert clip_decode.window_starts(10, 8.0, 2.0, 0.0, 5) == []
  assert clip_decode.window_starts(48, 8.0, 0.5, 0.0, 5) == []  # 4 frames < one clip.
  folder = tmp_path / 'folder'
  folder.mkdir()
  for name in ('long.mp4', 'other.mp4'):
    (folder / name).write_bytes((videos / name).read_bytes())
  (folder / 'captions.csv').write_text('long.mp4,long one\nother.mp4,short one\n')
  data = _data(tmp_path, source_dir=str(folder), clip_seconds=2.0, clip_stride_seconds=1.0)
  report = build.build_dataset(data)
  assert sum(report.num_examples.values()) == 5 + 2  # 6 s -> 5 windows, 3 s -> 2.
  paths = sorted(
    ex['path'].decode()
    for split in ('train', 'test')
    for ex in sources.get_builder(data).as_data_source(split)
  )
  assert paths[0] == 'long.mp4#t=0.000,2.000' and paths[-1] == 'other.mp4#t=1.000,3.000'


@pytest.mark.parametrize('start, end', [(None, None), (1.0, 2.5), (2.3, None), (2.3, 3.1)])
def test_pyav_and_ffmpeg_decode_the_same_frames_of_a_range(videos, start, end):
  clips = {}
  for decoder in ('ffmpeg', 'pyav'):
    frames = []
    decoded = clip_decode.decode_range(
      str(videos / 'long.mp4'), frames.append, start=start, end=end, decoder=decoder
    )
    clips[decoder] = (np.stack(frames), decoded.fps, decoded.duration)
  np.testing.assert_array_equal(clips['pyav'][0], clips['ffmpeg'][0])
  assert clips['pyav'][1:] == clips['ffmpeg'][1:] == (8.0, 6.0)
  expected = {(None, None): 48, (1.0, 2.5): 12, (2.3, None): 29, (2.3, 3.1): 6}[(start, end)]
  assert len(clips['pyav'][0]) == expected


def _counting_decoder(monkeypatch, fail_after: int = 0) -> list[int]:
  """Makes `clip_decode.open_range` count the frames read (and fail after `fail_after`)."""
  opened, pulled = clip_decode.open_range, []

  @contextlib.contextmanager
  def counting(*args, **kwargs):
    with opened(*args, **kwargs) as stream:

      def frames():
        for frame in stream.frames:
          if fail_after and len(pulled) == fail_after:
            raise video_io.VideoReadError('long.mp4', 'corrupt packet')
          pulled.append(1)
          yield frame

      yield dataclasses.replace(stream, frames=frames())

  monkeypatch.setattr(clip_decode, 'open_range', counting)
  return pulled


def _windows_of_long(videos, report, stride=2.0):
  settings = clip_examples.ClipSettings(
    height=16, width=16, max_frames=0, min_frames=5, clip_seconds=1.0,
    clip_stride_seconds=stride, from_manifest=True,
  )  # fmt: skip
  row = manifest.ClipRow('long.mp4', 'a long one', None, None, 3, str(videos / 'long.mp4'))
  return clip_examples.iter_clips(settings, row, 0, report)


def test_windows_stream_out_as_they_are_cut(videos, monkeypatch):
  """A long video gives each window once its last frame is decoded, not after the whole file."""
  stored = []
  clip_decode.decode_range(str(videos / 'long.mp4'), stored.append)
  stored = transforms.resize_video(np.stack(stored), 16, 16)
  pulled = _counting_decoder(monkeypatch)
  report = clip_examples.RowReport()
  clips = _windows_of_long(videos, report)
  first = next(clips)
  assert len(pulled) == 8  # One second at 8 fps: nothing past the first window was read.
  windows = [first, *clips]
  assert [clip.path for clip in windows] == [
    'long.mp4#t=0.000,1.000',
    'long.mp4#t=2.000,3.000',
    'long.mp4#t=4.000,5.000',
  ]
  for clip, start in zip(windows, (0, 16, 32), strict=True):
    np.testing.assert_array_equal(clip.video, stored[start : start + 8])
  assert (report.clips, report.skipped, len(pulled)) == (3, None, 48)
  # Overlapping windows (stride 0.5 s) keep their shared frames.
  overlapping = list(_windows_of_long(videos, clip_examples.RowReport(), stride=0.5))
  assert len(overlapping) == 11
  np.testing.assert_array_equal(overlapping[5].video, stored[20:28])


def test_an_undecodable_stretch_keeps_the_clips_before_it(videos, monkeypatch):
  _counting_decoder(monkeypatch, fail_after=20)
  report = clip_examples.RowReport()
  clips = list(_windows_of_long(videos, report))
  assert [clip.path for clip in clips] == ['long.mp4#t=0.000,1.000']
  assert report.skipped == clip_examples.SkippedFile(
    'long.mp4#t=2.500,', 'unreadable: corrupt packet', 3
  )
  _counting_decoder(monkeypatch, fail_after=4)  # Before any window: the row is left out.
  report = clip_examples.RowReport()
  assert list(_windows_of_long(videos, report)) == []
  assert report.skipped == clip_examples.SkippedFile('long.mp4', 'unreadable: corrupt packet', 3)
