"""Best of N: candidates are ranked by what they were given, in pixels, and by their pace."""

import numpy as np
import pytest

from videogen.transformer import candidates, tasks


def _clip(color=(255, 0, 0), frames=5, size=8):
  """uint8 [T, H, W, 3]: a 4x4 square of `color` on black, moving right a pixel per frame."""
  clip = np.zeros((frames, size, size, 3), np.uint8)
  for t in range(frames):
    clip[t, 2:6, t % 4 : t % 4 + 4] = color
  return clip


def _greyscale(clip):
  return np.asarray(tasks.greyscale(clip.astype(np.float32))).round().astype(np.uint8)


def test_restyle_ranks_by_greyscale_whatever_the_colours_are():
  red = _clip((255, 0, 0))
  condition = candidates.condition('restyle', red)
  # The clip itself and its greyscale version reproduce the grey input; blue (another luma)
  # on the same square does not, nor does a square in the wrong place.
  samples = np.stack([red, _greyscale(red), _clip((0, 0, 255)), np.roll(red, 2, axis=2)])
  errors = candidates.errors(samples, condition)
  assert errors[0] == pytest.approx(0) and errors[1] < 0.5
  assert errors[2] > 100 and errors[3] > 100


def test_restore_ranks_by_2x2_means():
  clip = _clip((200, 100, 50)).astype(np.int16) + 30  # No pixel at 0 or 255 to clip.
  condition = candidates.condition('restore', clip.astype(np.uint8))
  # +-20 in a checkerboard keeps every 2x2 mean: the same low-resolution clip.
  checker = 20 * (1 - 2 * ((np.arange(8)[:, None] + np.arange(8)[None, :]) % 2))
  detailed = np.clip(clip + checker[None, :, :, None], 0, 255).astype(np.uint8)
  shifted = np.roll(clip, 1, axis=2).astype(np.uint8)
  errors = candidates.errors(np.stack([detailed, shifted]), condition)
  assert errors[0] < 1 and errors[1] > 100


def test_interpolate_compares_the_first_and_last_frames_only():
  clip = _clip()
  condition = candidates.condition('interpolate', clip[[0, -1]])
  middle_changed = clip.copy()
  middle_changed[1:-1] = 255
  last_changed = clip.copy()
  last_changed[-1] = 0
  errors = candidates.errors(np.stack([middle_changed, last_changed]), condition)
  assert errors[0] == 0 and errors[1] > 0


def test_inpaint_compares_the_kept_pixels_only_as_a_mean_over_them():
  clip = _clip()
  keep = np.ones(clip.shape[:3], bool)
  keep[:, :4] = False  # The top half is filled.
  condition = candidates.condition('inpaint', clip, keep)
  top = clip.copy()
  top[:, :4] = 255
  bottom = clip.copy()
  bottom[:, 4:] = 10
  errors = candidates.errors(np.stack([top, bottom]), condition)
  expected = ((bottom[:, 4:].astype(float) - clip[:, 4:]) ** 2).mean()
  assert errors[0] == 0 and errors[1] == pytest.approx(expected)


def test_errors_pair_each_prompt_with_its_own_samples():
  red, blue = _clip((255, 0, 0)), _clip((0, 0, 255))
  both = candidates.Condition.concatenate(
    [candidates.condition('restyle', red), candidates.condition('restyle', blue)]
  )
  # Prompt-major: two samples of the first prompt, then two of the second.
  errors = candidates.errors(np.stack([red, blue, red, blue]), both)
  assert errors[0] == errors[3] == 0 and errors[1] > 0 and errors[2] > 0


@pytest.mark.parametrize('task', ['t2v', 'i2v', 'predict'])
def test_tasks_steered_by_a_caption_or_frames_refuse_candidates(task):
  candidates.check(task, 1)
  with pytest.raises(ValueError, match=f'candidates=4: {task} draws one sample'):
    candidates.check(task, 4)


def _moving(steps, size=16):
  """uint8 [len(steps) + 1, H, W, 3]: a 4x4 white square moving right by `steps[t]` px."""
  columns = np.concatenate([[0], np.cumsum(steps)])
  clip = np.zeros((len(columns), size, size, 3), np.uint8)
  for t, column in enumerate(columns):
    clip[t, 6:10, column : column + 4] = 255
  return clip


def test_pace_unevenness_of_steady_jumpy_and_still_clips():
  steady, jumpy = _moving([1] * 8), _moving([0, 0, 0, 4, 0, 0, 0, 4])
  still = np.repeat(_moving([0])[:1], 9, axis=0)
  one_jump = _moving([0] * 7 + [4])
  pace = candidates.pace_unevenness(np.stack([steady, jumpy, still, one_jump]))
  assert pace[0] == pytest.approx(0, abs=1e-6)  # The same change at every step.
  assert pace[1] == pytest.approx(np.sqrt(3))  # 2 of 8 steps hold the change.
  # All of the change in one step is the most uneven, and a still clip counts as that.
  assert pace[3] == pytest.approx(np.sqrt(7)) and pace[2] == pytest.approx(np.sqrt(7))
  assert candidates.pace_unevenness(steady[None, :1]) == 0  # One frame: no pace.


def test_interpolate_scores_the_given_frames_error_times_the_pace():
  steady, jumpy = _moving([1] * 8), _moving([0, 0, 0, 4, 0, 0, 0, 4])
  given = steady[[0, -1]].copy()
  given[given == 255] = 245  # Neither candidate reproduces the given frames exactly.
  condition = candidates.condition('interpolate', given)
  samples = np.stack([jumpy, steady])
  errors = candidates.errors(samples, condition)
  assert errors[0] == errors[1] > 0  # The same first and last frames ...
  scores = candidates.scores(samples, condition)
  np.testing.assert_allclose(scores, errors * candidates.pace_unevenness(samples), rtol=1e-6)
  assert scores[1] < scores[0]  # ... and the steady middle wins.
  # Restyle and the other tasks compared with pixels rank by the error alone.
  restyle = candidates.condition('restyle', steady)
  np.testing.assert_array_equal(
    candidates.scores(samples, restyle), candidates.errors(samples, restyle)
  )


def test_uncond_is_ranked_by_its_pace_alone():
  steady, jumpy = _moving([1] * 8), _moving([0, 0, 0, 4, 0, 0, 0, 4])
  still = np.repeat(steady[:1], 9, axis=0)
  uncond = candidates.Condition('uncond')
  scores = candidates.scores(np.stack([still, jumpy, steady]), uncond)
  assert scores.argmin() == 2 and scores[0] > scores[1]  # A still sample ranks last.
  candidates.check('uncond', 8)
  with pytest.raises(ValueError, match='uncond has no pixel condition to compare'):
    candidates.errors(steady[None], uncond)
  with pytest.raises(ValueError, match='uncond has no pixel condition; conditioned tasks'):
    candidates.condition('uncond', steady)


def test_search_frames_keeps_the_best_draw_of_each_latent_frame_after_the_best_before_it():
  # Two rows, 3 latent frames of 1x1 tokens, 3 draws each. The k-th draw of a frame is
  # the token 10 * frame + k, and a clip costs its tokens' distance from the row's
  # target. Of whole clips (k at every frame), row 0's best would be [1, 11, 21].
  targets = np.asarray([[2, 11, 20], [0, 12, 21]])
  seen = []

  def draw(frame, k, chosen):
    seen.append((frame, k, None if chosen is None else chosen[:, :, 0, 0].tolist()))
    new = np.full((2, 1, 1, 1), 10 * frame + k)
    return new if chosen is None else np.concatenate([chosen, new], axis=1)

  def score(tokens):
    return np.abs(tokens[:, :, 0, 0] - targets[:, : tokens.shape[1]]).sum(axis=1)

  chosen = candidates.search_frames(draw, score, latent_frames=3, count=3)
  np.testing.assert_array_equal(chosen[:, :, 0, 0], [[2, 11, 20], [0, 12, 21]])
  # Each frame's draws come after the frames chosen before it, every k in turn.
  assert [(f, k) for f, k, _ in seen] == [(f, k) for f in range(3) for k in range(3)]
  assert seen[3][2] == [[2], [0]] and seen[6][2] == [[2, 11], [0, 12]]


def test_frame_search_needs_a_condition_on_every_frame():
  for task in candidates.FRAME_RANKED_TASKS:
    candidates.check(task, 16, 'frame')
  for task in ('interpolate', 'uncond'):
    candidates.check(task, 16, 'clip')
    candidates.check(task, 1, 'frame')  # One sample: nothing to rank.
    with pytest.raises(ValueError, match=f"'frame': {task} is ranked on whole clips"):
      candidates.check(task, 16, 'frame')
  with pytest.raises(ValueError, match="candidate_search='frames': valid: clip, frame"):
    candidates.check('inpaint', 16, 'frames')
  # A condition cut to a clip's first frames compares those frames alone.
  clip = _clip()
  keep = np.ones(clip.shape[:3], bool)
  keep[:, :4] = False
  condition = candidates.condition('inpaint', clip, keep)
  first = condition.first_frames(2)
  assert first.pixels.shape == (1, 2, 8, 8, 3) and first.keep.shape == (1, 2, 8, 8)
  changed_later = clip.copy()
  changed_later[2:] = 0
  assert candidates.errors(changed_later[None, :2], first) == 0
  assert candidates.errors(changed_later[None], condition) > 0
  with pytest.raises(ValueError, match='interpolate is ranked on whole clips'):
    candidates.condition('interpolate', clip[[0, -1]]).first_frames(1)
