"""The shapes text-alignment evaluator: >= 99% on real clips, robust, clear scoring."""

import numpy as np
import pytest
from scipy import ndimage

from videogen.data import shapes
from videogen.eval import shapes_eval

NUM_CLIPS = 200


def _examples(num_frames, size, count=NUM_CLIPS, start=0):
  return [
    shapes.generate_example(seed, num_frames, size, size) for seed in range(start, start + count)
  ]


def _assert_at_least(report, threshold):
  for name in (
    'color_accuracy',
    'shape_accuracy',
    'motion_accuracy',
    'object_accuracy',
    'count_accuracy',
    'clip_accuracy',
  ):
    assert getattr(report, name) >= threshold, (name, report.to_dict())


@pytest.mark.parametrize('num_frames,size', [(17, 64), (9, 64), (17, 32), (9, 32)])
def test_real_clips_score_at_least_99_percent(num_frames, size):
  examples = _examples(num_frames, size, start=1000 * size + num_frames)
  report = shapes_eval.evaluate_clips(
    np.stack([e.video for e in examples]), [e.caption for e in examples]
  )
  assert report.num_clips == NUM_CLIPS
  assert report.num_objects == sum(len(e.objects) for e in examples)
  _assert_at_least(report, 0.99)
  assert report.missing_objects == 0


def _round_trip_like(video, rng):
  """Blur, per-channel dimming and noise, as a lossy tokenizer leaves a clip."""
  frames = ndimage.gaussian_filter(video.astype(np.float32), sigma=(0, 0.8, 0.8, 0))
  frames = frames * rng.uniform(0.75, 1.0, size=3) + rng.normal(0, 12, frames.shape)
  return np.clip(frames, 0, 255).astype(np.uint8)


@pytest.mark.parametrize('size', [64, 32])
def test_degraded_clips_still_score_high(size):
  rng = np.random.default_rng(size)
  examples = _examples(17, size, count=100, start=7)
  videos = [_round_trip_like(e.video, rng) for e in examples]
  report = shapes_eval.evaluate_clips(videos, [e.caption for e in examples])
  _assert_at_least(report, 0.97)
  # The same clips as decoded floats in [-1, 1] give the same result.
  floats = [v.astype(np.float32) / 127.5 - 1.0 for v in videos]
  assert shapes_eval.evaluate_clips(floats, [e.caption for e in examples]).to_dict() == (
    report.to_dict()
  )


def test_detected_attributes_match_generator():
  example = shapes.generate_example(3, 17, 64, 64, min_objects=2)
  detected = {d.color: d for d in shapes_eval.detect_objects(example.video)}
  for obj in example.objects:
    found = detected[obj.color]
    assert (found.shape, found.motion) == (obj.shape, obj.motion)
    expected_move = obj.centers[-1] - obj.centers[0]
    np.testing.assert_allclose(found.displacement, expected_move, atol=1e-4)


def test_a_wrong_caption_scores_wrong():
  example = shapes.generate_example(5, 9, 32, 32, max_objects=1)
  [obj] = example.objects
  other_shape = next(s for s in shapes.SHAPES if s != obj.shape)
  opposite = {'left': 'right', 'right': 'left', 'up': 'down', 'down': 'up'}[obj.motion]
  caption = shapes.caption_for([shapes.ObjectSpec(obj.color, other_shape, opposite)])
  result = shapes_eval.evaluate_clip(example.video, caption)
  assert (result.color_correct, result.shape_correct, result.motion_correct) == (
    1,
    0,
    0,
  )
  assert not result.all_correct


def test_shape_accuracy_is_also_reported_per_class():
  examples = [shapes.generate_example(seed, 9, 32, 32, max_objects=1) for seed in range(12)]
  captions = [e.caption for e in examples]
  # Re-caption the squares as circles: only the square class loses its shape figure.
  wrong = [c.replace('square', 'circle') for c in captions]
  report = shapes_eval.evaluate_clips([e.video for e in examples], wrong)
  asked = {o.shape for e in examples for o in e.objects}
  assert 'square' in asked and len(asked) > 1
  assert set(report.shape_accuracy_by_class) == (asked - {'square'}) | {'circle'}
  assert report.shape_accuracy_by_class['circle'] < 1.0
  assert all(v == 1.0 for k, v in report.shape_accuracy_by_class.items() if k != 'circle')
  correct = shapes_eval.evaluate_clips([e.video for e in examples], captions)
  assert correct.shape_accuracy_by_class == dict.fromkeys(asked, 1.0)
  assert correct.to_dict()['shape_accuracy_by_class'] == correct.shape_accuracy_by_class


def _detected(color, shape, motion):
  return shapes_eval.DetectedObject(
    color,
    shape,
    motion,
    frames=9,
    area=50.0,
    fill=1.0,
    top_bottom=1.0,
    displacement=(0.0, 0.0),
  )


def test_missing_and_extra_objects_are_counted():
  caption = 'a red circle moving left and a blue square moving up'
  # Only one object drawn (blue, but as a triangle): red is missing.
  result = shapes_eval.score_clip(caption, [_detected('blue', 'triangle', 'up')])
  assert result.matches == [None, 0]
  assert (result.color_correct, result.shape_correct, result.motion_correct) == (
    1,
    0,
    1,
  )
  assert (result.missing, result.extra) == (1, 0)
  # Both right plus an extra green object: accuracies perfect, clip not.
  result = shapes_eval.score_clip(
    caption,
    [
      _detected('green', 'circle', 'left'),
      _detected('blue', 'square', 'up'),
      _detected('red', 'circle', 'left'),
    ],
  )
  assert result.matches == [2, 1] and result.object_correct == 2
  assert result.extra == 1 and not result.all_correct


def test_blank_clip_report():
  blank = np.zeros((2, 9, 32, 32, 3), np.uint8)
  report = shapes_eval.evaluate_clips(blank, ['a red circle moving left'] * 2)
  assert report.num_objects == 2 and report.missing_objects == 2
  assert report.color_accuracy == report.clip_accuracy == 0.0
  assert report.count_accuracy == 0.0
  assert set(report.to_dict()) >= {
    'color_accuracy',
    'shape_accuracy',
    'motion_accuracy',
  }
  assert 'clips' not in report.to_dict()


def test_static_object_has_no_direction():
  video = np.zeros((9, 32, 32, 3), np.uint8)
  video[:, 10:20, 10:20] = shapes.PALETTE['white']
  [found] = shapes_eval.detect_objects(video)
  assert (found.color, found.shape, found.motion) == ('white', 'square', 'static')


def test_palette_labels_keep_hue_of_dim_pixels():
  pixels = np.array(
    [[150, 150, 0], [120, 60, 0], [200, 200, 210], [60, 60, 60], [0, 0, 140]], np.uint8
  )
  names = list(shapes.PALETTE)
  labels = shapes_eval.palette_labels(pixels)
  assert [names[i] if i >= 0 else None for i in labels] == [
    'yellow',
    'orange',
    'white',
    None,
    'blue',
  ]


def test_bad_inputs():
  with pytest.raises(ValueError, match='Not a shapes caption'):
    shapes_eval.evaluate_clip(np.zeros((9, 32, 32, 3), np.uint8), 'a dog running')
  with pytest.raises(ValueError, match='captions'):
    shapes_eval.evaluate_clips(np.zeros((2, 9, 32, 32, 3), np.uint8), ['x'])
