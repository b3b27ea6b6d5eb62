"""Building a user's folder of videos into TFDS: good, bad and broken inputs."""

import json
import pathlib

import ml_collections
import numpy as np
import pytest

from videogen.data import (
  build,
  pipeline,
  shapes,
  sources,
  transforms,
  video_folder,
  video_io,
)
from videogen.data import config as data_config_lib

NUM_FRAMES = 5  # Frames per training clip; the folder's clips have 6-8.


def _clip(seed: int, num_frames: int = 8, height: int = 24, width: int = 32) -> np.ndarray:
  return shapes.generate_example(seed, num_frames, height, width).video


def _data(source_dir, data_dir, **overrides) -> ml_collections.ConfigDict:
  data = data_config_lib.data_config('video_folder', num_frames=NUM_FRAMES, resolution=16)
  data.source_dir = str(source_dir)
  data.data_dir = str(data_dir)
  for key, value in overrides.items():
    data[key] = value
  return data


@pytest.fixture(scope='module')
def folder(tmp_path_factory) -> pathlib.Path:
  """Four good videos (mp4, gif, webm, avi), three broken ones, one uncaptioned."""
  root = tmp_path_factory.mktemp('videos')
  (root / 'sub').mkdir()
  video_io.write_video(root / 'a.mp4', _clip(0), fps=8)
  video_io.write_video(root / 'sub' / 'b.gif', _clip(1), fps=8)
  mediapy = video_io._mediapy()
  mediapy.write_video(root / 'c.webm', _clip(2, 6), fps=8, codec='vp9')
  mediapy.write_video(root / 'd.avi', _clip(3, 7), fps=8, codec='mpeg4')
  (root / 'corrupt.mp4').write_bytes(b'\x00\x01not a video' * 64)
  (root / 'empty.mp4').write_bytes(b'')
  video_io.write_video(root / 'short.gif', _clip(4, 3), fps=8)
  video_io.write_video(root / 'uncaptioned.gif', _clip(5), fps=8)
  rows = [
    'path,caption',
    'a.mp4,a red thing',
    'sub/b.gif,"green, then blue"',
    'c.webm,clip c',
    'd.avi,clip d',
    'corrupt.mp4,broken',
    'empty.mp4,nothing',
    'short.gif,too short',
  ]
  (root / 'captions.csv').write_text('\n'.join(rows) + '\n')
  return root


def test_build_skips_and_reports_bad_files(folder, tmp_path):
  data = _data(folder, tmp_path)
  report = build.build_dataset(data)
  assert sum(report.num_examples.values()) == 4
  assert report.num_examples['train'] >= 1 and report.num_examples['test'] >= 1
  reasons = {item.path: item.reason for item in report.skipped}
  assert set(reasons) == {'corrupt.mp4', 'empty.mp4', 'short.gif', 'uncaptioned.gif'}
  assert reasons['empty.mp4'] == 'unreadable: the file is empty'
  assert reasons['corrupt.mp4'].startswith('unreadable:')
  assert reasons['short.gif'].startswith('too short: 3 frames')
  assert reasons['uncaptioned.gif'] == 'no caption row'
  summary = str(report)
  assert 'skipped 4 files' in summary and 'corrupt.mp4' in summary
  again = build.build_dataset(data)  # The report survives with the dataset.
  assert again.already_built and set(reasons) == {i.path for i in again.skipped}


def test_built_clips_are_resized_and_keep_their_captions(folder, tmp_path):
  data = _data(folder, tmp_path)
  build.ensure_built(data)
  examples = [ex for split in ('train', 'test') for ex in sources.open_source(data, split)]
  captions = sorted(ex['caption'] for ex in examples)
  assert captions == ['a red thing', 'clip c', 'clip d', 'green, then blue']
  lengths = sorted(len(ex['video']) for ex in examples)
  assert lengths == [6, 7, 8, 8]  # Every frame kept (source_num_frames=0).
  gif = next(ex for ex in examples if ex['caption'] == 'green, then blue')
  assert transforms.decode_frames(gif['video']).shape == (8, 16, 16, 3)
  # GIF and PNG are lossless: exactly the centre crop, resized frame by frame.
  np.testing.assert_array_equal(
    transforms.decode_frames(gif['video']), transforms.resize_video(_clip(1), 16, 16)
  )


def test_jsonl_captions_and_frame_cap(folder, tmp_path):
  source = tmp_path / 'jsonl'
  source.mkdir()
  for name in ('a.mp4', 'd.avi'):
    (source / name).write_bytes((folder / name).read_bytes())
  lines = [
    json.dumps({'path': 'a.mp4', 'caption': 'first'}),
    json.dumps({'path': 'd.avi', 'caption': 'second'}),
  ]
  (source / 'captions.jsonl').write_text('\n'.join(lines))
  data = _data(source, tmp_path / 'tfds', source_num_frames=6, num_frames=3, frame_stride=2)
  report = build.build_dataset(data)
  assert report.num_examples == {'train': 1, 'test': 1}
  assert '_6f_' in report.config_name
  examples = [ex for split in ('train', 'test') for ex in sources.open_source(data, split)]
  assert sorted(ex['caption'] for ex in examples) == ['first', 'second']
  assert all(len(ex['video']) == 6 for ex in examples)


def test_pipeline_reads_the_folder_dataset(folder, tmp_path):
  config = ml_collections.ConfigDict({'data': _data(folder, tmp_path), 'batch_size': 2, 'seed': 0})
  build.ensure_built(config.data)
  iterator = pipeline.create_iterator(config, 'train', train=True, process_index=0, process_count=1)
  batch = next(iterator)
  assert batch['video'].shape == (2, NUM_FRAMES, 16, 16, 3)
  assert batch['caption'].shape == (2,)


@pytest.mark.parametrize(
  'setup, message',
  [
    ('missing_folder', 'does not exist'),
    ('empty_folder', 'contains no videos'),
    ('no_captions', 'No caption file'),
    ('missing_video', 'names a video that does not exist'),
    ('bad_row', 'expected 2 fields'),
  ],
)
def test_bad_input_is_an_error_naming_the_path(tmp_path, folder, setup, message):
  source = tmp_path / 'in'
  if setup != 'missing_folder':
    source.mkdir()
  if setup in ('no_captions', 'missing_video', 'bad_row'):
    (source / 'a.mp4').write_bytes((folder / 'a.mp4').read_bytes())
  named = source
  if setup == 'missing_video':
    (source / 'captions.csv').write_text('a.mp4,fine\nnot_here.mp4,lost\n')
    named = source / 'not_here.mp4'
  if setup == 'bad_row':
    (source / 'captions.csv').write_text('a.mp4,one,two\n')
    named = source / 'captions.csv'
  data = _data(source, tmp_path / 'tfds')
  with pytest.raises((FileNotFoundError, ValueError), match=message) as error:
    build.build_dataset(data)
  assert str(named) in str(error.value)
  if setup == 'no_captions':
    assert 'captions.csv' in str(error.value) and 'captions.jsonl' in str(error.value)
  assert not (tmp_path / 'tfds' / 'video_folder').exists() or not any(
    (tmp_path / 'tfds' / 'video_folder').rglob('dataset_info.json')
  )


def test_too_few_usable_videos_is_an_error_listing_why(tmp_path, folder):
  source = tmp_path / 'in'
  source.mkdir()
  (source / 'a.mp4').write_bytes((folder / 'a.mp4').read_bytes())
  (source / 'bad.mp4').write_bytes(b'junk')
  (source / 'captions.csv').write_text('a.mp4,ok\nbad.mp4,broken\n')
  data = _data(source, tmp_path / 'tfds')
  with pytest.raises(ValueError, match='two usable videos') as error:
    build.build_dataset(data)
  assert 'bad.mp4' in str(error.value)
  assert not sources.get_builder(data).is_prepared()


def test_changed_folder_is_refused_until_the_old_build_is_deleted(tmp_path, folder):
  source = tmp_path / 'in'
  source.mkdir()
  for name in ('a.mp4', 'd.avi'):
    (source / name).write_bytes((folder / name).read_bytes())
  (source / 'captions.csv').write_text('a.mp4,one\nd.avi,two\n')
  data = _data(source, tmp_path / 'tfds')
  build.ensure_built(data)
  build.ensure_built(data)  # Quiet when present and unchanged.
  (source / 'captions.csv').write_text('a.mp4,one\nd.avi,a new caption\n')
  with pytest.raises(RuntimeError, match='Delete') as error:
    build.ensure_built(data)
  assert str(sources.get_builder(data).data_path) in str(error.value)


def test_splits_are_stable_and_never_empty():
  paths = [f'clip_{i}.mp4' for i in range(200)]
  splits = video_folder.assign_splits(paths, 0.05)
  assert 2 <= len(splits['test']) <= 25
  assert sorted(splits['train'] + splits['test']) == list(range(200))
  more = video_folder.assign_splits(paths + ['extra.mp4'], 0.05)
  assert set(splits['test']) <= set(more['test'])  # Adding a video moves nothing.
  tiny = video_folder.assign_splits(['x.mp4', 'y.mp4'], 0.05)
  assert len(tiny['train']) == 1 and len(tiny['test']) == 1
