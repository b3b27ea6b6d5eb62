"""The procedural shapes clips and their TFDS builder."""

import numpy as np
import pytest

from videogen.data import build, shapes, shapes_tfds, sources, transforms
from videogen.data import config as data_config_lib

SEEDS = range(60)


def _mask(video: np.ndarray, color: str) -> np.ndarray:
  """bool [time, H, W]: pixels of exactly `color`."""
  return np.all(video == np.array(shapes.PALETTE[color], np.uint8), axis=-1)


def test_palette_shapes_motions_are_the_documented_ones():
  assert shapes.PALETTE == {
    'red': (255, 0, 0),
    'green': (0, 255, 0),
    'blue': (0, 0, 255),
    'yellow': (255, 255, 0),
    'cyan': (0, 255, 255),
    'magenta': (255, 0, 255),
    'white': (255, 255, 255),
    'orange': (255, 128, 0),
  }
  assert set(shapes.SHAPES) == {'square', 'circle', 'triangle'}
  assert set(shapes.MOTIONS) == {'left', 'right', 'up', 'down'}


@pytest.mark.parametrize('size', [(17, 64, 64), (9, 32, 32), (6, 24, 40)])
def test_pixels_are_exactly_the_named_colours_and_black(size):
  num_frames, height, width = size
  for seed in SEEDS:
    example = shapes.generate_example(seed, num_frames, height, width)
    assert example.video.shape == (num_frames, height, width, 3)
    assert example.video.dtype == np.uint8
    named = {obj.color for obj in example.objects}
    assert len(named) == len(example.objects)  # Distinct colours.
    colours = {tuple(c) for c in example.video.reshape(-1, 3)}
    assert colours == {shapes.PALETTE[c] for c in named} | {(0, 0, 0)}
    assert example.caption == shapes.caption_for(example.objects)
    for obj in example.objects:  # Visible, unclipped, same footprint every frame.
      counts = _mask(example.video, obj.color).sum(axis=(1, 2))
      assert np.all(counts == shapes.sprite(obj.shape, obj.size).sum()), (seed, obj)


def test_centroid_moves_in_the_named_direction():
  for seed in SEEDS:
    for num_frames, side in ((17, 64), (9, 32)):
      example = shapes.generate_example(seed, num_frames, side, side)
      for obj in example.objects:
        mask = _mask(example.video, obj.color)
        rows, cols = np.arange(side)[:, None], np.arange(side)[None, :]
        area = mask.sum(axis=(1, 2))
        centroid = np.stack(
          [
            (mask * rows).sum(axis=(1, 2)) / area,
            (mask * cols).sum(axis=(1, 2)) / area,
          ],
          -1,
        )
        moved = centroid[-1] - centroid[0]
        direction = np.array(shapes.MOTION_DIRECTIONS[obj.motion])
        along = float(moved @ direction)
        assert along >= 0.25 * obj.size, (seed, obj.motion, moved)
        assert abs(float(moved @ direction[::-1])) < 1e-6  # No sideways drift.
        steps = np.diff(centroid, axis=0) @ direction
        assert np.all(steps >= 0)  # Monotone: never moves backwards.
        across = 1 if direction[0] else 0  # The axis the object does not move on.
        assert np.all(obj.centers[:, across] == obj.centers[0, across])
        np.testing.assert_allclose(obj.centers[-1] - obj.centers[0], moved, atol=0.51)


def test_objects_keep_apart_and_have_recognisable_size():
  touching = 0
  for seed in range(200):
    example = shapes.generate_example(seed, 17, 64, 64)
    for obj in example.objects:
      assert 16 <= obj.size <= 22
    if len(example.objects) == 2:
      first, second = (_mask(example.video, obj.color) for obj in example.objects)
      # Grow one mask by a pixel: touching objects would merge into one blob.
      grown = first.copy()
      grown[:, 1:] |= first[:, :-1]
      grown[:, :-1] |= first[:, 1:]
      grown[:, :, 1:] |= first[:, :, :-1]
      grown[:, :, :-1] |= first[:, :, 1:]
      touching += bool(np.any(grown & second))
  assert touching == 0


def test_shape_fill_ratios_are_distinct():
  for size in (8, 10, 16, 21):
    fill = {shape: shapes.sprite(shape, size).mean() for shape in shapes.SHAPES}
    assert fill['square'] == 1.0
    assert 0.75 < fill['circle'] < 0.85
    assert fill['triangle'] < 0.65


def test_deterministic_per_seed():
  first = shapes.generate_example(7, 9, 32, 32)
  again = shapes.generate_example(7, 9, 32, 32)
  other = shapes.generate_example(8, 9, 32, 32)
  np.testing.assert_array_equal(first.video, again.video)
  assert first.caption == again.caption
  assert not np.array_equal(first.video, other.video)


def test_object_count_range_and_caption_round_trip():
  counts = {len(shapes.generate_example(s, 5, 32, 32, 2, 2).objects) for s in range(10)}
  assert counts == {2}
  counts = {len(shapes.generate_example(s, 5, 32, 32, 1, 1).objects) for s in range(10)}
  assert counts == {1}
  example = shapes.generate_example(3)
  assert shapes.parse_caption(example.caption) == [obj.spec for obj in example.objects]
  assert ' and ' in shapes.generate_example(0, 5, 32, 32, 2, 2).caption
  assert shapes.ObjectSpec('orange', 'circle', 'up').phrase == 'an orange circle moving up'
  assert shapes.parse_caption('a orange circle moving up')[0].color == 'orange'
  with pytest.raises(ValueError, match='Not a shapes caption'):
    shapes.parse_caption('a purple hexagon moving sideways')
  with pytest.raises(ValueError, match='min_objects'):
    shapes.generate_example(0, min_objects=0)


def _tiny(data_dir, **overrides):
  data = data_config_lib.data_config('shapes', num_frames=4, resolution=16)
  data.data_dir = str(data_dir)
  data.num_train_examples = 6
  data.num_test_examples = 3
  for key, value in overrides.items():
    data[key] = value
  return data


def test_tfds_build_stores_the_generated_clips_exactly(tmp_path):
  data = _tiny(tmp_path)
  report = build.build_dataset(data)
  assert report.num_examples == {'train': 6, 'test': 3}
  assert not report.already_built and not report.skipped
  assert report.config_name == '4f_16x16_6-3_obj1-2'
  assert 'train: 6 clips' in str(report)
  source = sources.open_source(data, 'test')
  stored = {(ex['caption'], transforms.decode_frames(ex['video']).tobytes()) for ex in source}
  expected = set()
  for index in range(3):
    clip = shapes.generate_example(shapes_tfds.SPLIT_SEED_OFFSETS['test'] + index, 4, 16, 16)
    expected.add((clip.caption, clip.video.tobytes()))
  assert stored == expected
  assert build.build_dataset(data).already_built


def test_settings_get_their_own_directory(tmp_path):
  first = build.build_dataset(_tiny(tmp_path))
  second = build.build_dataset(_tiny(tmp_path, num_frames=5))
  third = build.build_dataset(_tiny(tmp_path, max_objects=1))
  assert len({first.path, second.path, third.path}) == 3
  assert not second.already_built and not third.already_built


def test_failed_build_leaves_earlier_datasets_and_no_partial_one(tmp_path, monkeypatch):
  kept = build.build_dataset(_tiny(tmp_path))
  calls = []
  real = shapes.generate_example

  def failing(*args, **kwargs):
    calls.append(1)
    if len(calls) > 4:
      raise RuntimeError('disk on fire')
    return real(*args, **kwargs)

  monkeypatch.setattr(shapes, 'generate_example', failing)
  broken = _tiny(tmp_path, num_train_examples=7)
  with pytest.raises(RuntimeError, match='disk on fire'):
    build.build_dataset(broken)
  assert not sources.get_builder(broken).is_prepared()
  leftovers = [p for p in (tmp_path / 'shapes').rglob('*') if 'incomplete' in p.name]
  assert leftovers == []
  assert sources.get_builder(_tiny(tmp_path)).is_prepared()
  assert len(sources.open_source(_tiny(tmp_path), 'train')) == 6
  monkeypatch.setattr(shapes, 'generate_example', real)
  assert not build.build_dataset(broken).already_built  # A retry builds it.
  assert kept.path != sources.get_builder(broken).data_path


def test_invalid_config_names_the_field(tmp_path):
  with pytest.raises(ValueError, match='max_objects'):
    build.build_dataset(_tiny(tmp_path, max_objects=3))
  with pytest.raises(ValueError, match='num_test_examples'):
    build.build_dataset(_tiny(tmp_path, num_test_examples=0))
