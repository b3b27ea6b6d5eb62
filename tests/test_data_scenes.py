"""Scene-cut splitting (`config.data.scene_detect`): windows never cross a cut."""

import sys

import numpy as np
import pytest

from videogen.data import build, clip_examples, manifest, sources, video_io
from videogen.data import config as data_config_lib

FPS = 10
# Three shots cut hard into each other: 2.0 s red, 0.4 s green (shorter than
# one 0.6 s window), 1.6 s blue; each with a grey square moving right.
SHOTS = (((200, 30, 30), 20), ((30, 200, 30), 4), ((30, 30, 200), 16))


def _shot(colour: tuple[int, int, int], num_frames: int, size: int = 32) -> np.ndarray:
  frames = np.zeros((num_frames, size, size, 3), np.uint8)
  frames[...] = colour
  for t in range(num_frames):
    x = (2 * t) % (size - 8)
    frames[t, 12:20, x : x + 8] = 128
  return frames


def _shot_of(frame: np.ndarray) -> int:
  """Which shot a decoded frame is from: its dominant channel (0 red, 1 green, 2 blue)."""
  return int(np.argmax(frame.reshape(-1, 3).astype(float).mean(0)))


@pytest.fixture(scope='module')
def folder(tmp_path_factory):
  """cuts.mp4 (the three shots, 4 s), one_shot.mp4 (1.6 s, no cut), captions.csv."""
  root = tmp_path_factory.mktemp('scenes')
  video_io.write_video(root / 'cuts.mp4', np.concatenate([_shot(*shot) for shot in SHOTS]), fps=FPS)
  video_io.write_video(root / 'one_shot.mp4', _shot((220, 220, 40), 16), fps=FPS)
  (root / 'captions.csv').write_text('cuts.mp4,three shots\none_shot.mp4,one shot\n')
  return root


def _data(tmp_path, folder, **overrides):
  data = data_config_lib.data_config('video_folder', num_frames=5, resolution=16)
  data.data_dir = str(tmp_path / 'tfds')
  data.source_dir = str(folder)
  data.clip_seconds = 0.6  # 6 frames.
  for key, value in overrides.items():
    data[key] = value
  return data


def _decode(
  settings, row, index
) -> tuple[list[clip_examples.DecodedClip], clip_examples.RowReport]:
  report = clip_examples.RowReport()
  return list(clip_examples.iter_clips(settings, row, index, report)), report


def _settings(**overrides) -> clip_examples.ClipSettings:
  settings = dict(
    height=16, width=16, max_frames=0, min_frames=5, clip_seconds=0.6, clip_stride_seconds=0.0
  )
  settings.update(overrides)
  return clip_examples.ClipSettings(from_manifest=True, **settings)


def test_windows_stay_within_scenes_and_short_scenes_are_counted(folder, tmp_path):
  pytest.importorskip('scenedetect')
  data = _data(tmp_path, folder, scene_detect='content')
  report = build.build_dataset(data)
  # cuts.mp4: red 20 frames -> 3 windows, green 4 -> none, blue 16 -> 2; one_shot.mp4: 2.
  assert sum(report.num_examples.values()) == 3 + 2 + 2
  assert report.skipped == []
  assert [(item.row, item.path) for item in report.short_scenes] == [(1, 'cuts.mp4#t=2.000,2.400')]
  assert 'scenes shorter than one window, left out: 1' in str(report)
  clips = [
    (ex['path'].decode(), np.asarray(ex['video']))
    for split in ('train', 'test')
    for ex in sources.get_builder(data).as_data_source(split)
  ]
  shots = {}
  for path, frames in clips:
    assert len(frames) == 6
    if path.startswith('cuts.mp4'):
      first = _shot_of(frames[0])
      assert all(_shot_of(frame) == first for frame in frames), path  # No window crosses a cut.
      shots.setdefault(first, []).append(path)
  assert {shot: sorted(paths) for shot, paths in shots.items()} == {
    0: ['cuts.mp4#t=0.000,0.600', 'cuts.mp4#t=0.600,1.200', 'cuts.mp4#t=1.200,1.800'],
    2: ['cuts.mp4#t=2.400,3.000', 'cuts.mp4#t=3.000,3.600'],
  }


def test_without_scene_detect_windows_cross_cuts_and_ranges_are_never_scene_split(folder):
  pytest.importorskip('scenedetect')
  whole = manifest.ClipRow('cuts.mp4', 'three shots', None, None, 1, str(folder / 'cuts.mp4'))
  plain, _ = _decode(_settings(), whole, 0)
  assert len(plain) == 6  # 40 frames, back to back.
  crossing = [clip.path for clip in plain if len({_shot_of(f) for f in clip.video}) > 1]
  assert crossing == ['cuts.mp4#t=1.800,2.400']  # Red frames 18-19, green 20-23.
  # A row with a time range is one clip, cuts or not.
  ranged = manifest.ClipRow('cuts.mp4', 'three shots', 1.5, 3.0, 2, str(folder / 'cuts.mp4'))
  result, report = _decode(_settings(scene_detect='content'), ranged, 1)
  assert [clip.path for clip in result] == ['cuts.mp4#t=1.500,3.000']
  assert [_shot_of(frame) for frame in result[0].video] == [0] * 5 + [1] * 4 + [2] * 6
  assert report.short_scenes == []
  # A lower stride gives overlapping windows, still within each scene.
  strided, _ = _decode(_settings(scene_detect='content', clip_stride_seconds=0.5), whole, 0)
  assert [clip.path.split('#t=')[1] for clip in strided] == [
    '0.000,0.600',
    '0.500,1.100',
    '1.000,1.600',
    '2.400,3.000',
    '2.900,3.500',
    '3.400,4.000',
  ]


def test_scene_detect_settings_and_a_missing_package_are_one_line_errors(
  folder, tmp_path, monkeypatch
):
  with pytest.raises(ValueError, match="scene_detect='fancy'"):
    data_config_lib.validate(_data(tmp_path, folder, scene_detect='fancy'))
  with pytest.raises(ValueError, match='set config.data.clip_seconds > 0'):
    data_config_lib.validate(_data(tmp_path, folder, scene_detect='content', clip_seconds=0.0))
  monkeypatch.setitem(sys.modules, 'scenedetect', None)  # `import scenedetect` fails.
  with pytest.raises(ImportError, match=r"^config.data.scene_detect='content' needs PySceneDetect"):
    build.build_dataset(_data(tmp_path, folder, scene_detect='content'))
