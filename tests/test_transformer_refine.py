"""Refinement: token-by-token edits of a sample, kept where they lower its score."""

import numpy as np
import pytest

from videogen.transformer import candidates, refine


def _distance_to(target):
  """A score: how many tokens of each row differ from `target`'s."""
  calls = []

  def score(tokens):
    calls.append(tokens.copy())
    return (tokens != target).reshape(len(tokens), -1).sum(axis=1).astype(np.float32)

  return score, calls


def test_refine_keeps_the_edits_that_lower_each_rows_score_and_only_editable_tokens():
  rng = np.random.default_rng(0)
  shape = (2, 2, 3, 3)  # rows, t, h, w
  target = rng.integers(0, 8, shape)
  tokens = (target + 1) % 8  # Every token wrong.
  editable = np.ones(shape, bool)
  editable[:, :, 0] = False  # The first row of each latent frame is given.
  editable[1, 1] = False  # Row 1 keeps its whole second latent frame.
  offered = []

  def alternatives(current):  # The right token second of three: an edit must be tried.
    offered.append(current.copy())
    return np.stack([current, target, (target + 3) % 8], axis=-1)

  score, _ = _distance_to(target)
  refined, scores = refine.refine(tokens, editable, alternatives, score, sweeps=2)
  np.testing.assert_array_equal(refined[editable], target[editable])
  np.testing.assert_array_equal(refined[~editable], tokens[~editable])
  np.testing.assert_array_equal(scores, score(refined))
  assert scores.tolist() == [6, 12]  # Row 0: 3 given tokens a frame; row 1: 3, then 9.
  # One sweep fixes every editable token; the second changes nothing and ends the search.
  assert len(offered) == 2
  np.testing.assert_array_equal(offered[1], refined)


def test_refine_rejects_edits_that_do_not_help_and_zero_sweeps_change_nothing():
  target = np.zeros((1, 1, 2, 2), np.int64)
  tokens = np.ones_like(target)
  editable = np.ones(target.shape, bool)
  score, calls = _distance_to(target)

  def worse(current):  # Alternatives that are all wrong: nothing is kept.
    return np.stack([current + 1, current + 2], axis=-1)

  refined, scores = refine.refine(tokens, editable, worse, score, sweeps=3)
  np.testing.assert_array_equal(refined, tokens)
  assert scores.tolist() == [4]
  assert len(calls) == 1 + 4 * 2  # The start, then 4 positions x 2 alternatives, one sweep.
  same, _ = refine.refine(tokens, editable, worse, score, sweeps=0)
  np.testing.assert_array_equal(same, tokens)


def test_refine_needs_a_pixel_condition():
  for task in candidates.CONDITIONED_TASKS:
    candidates.check(task, 1, 'clip', refine=2)
  for task in ('t2v', 'uncond', 'i2v', 'predict'):
    candidates.check(task, 1, 'clip', refine=0)
    with pytest.raises(ValueError, match=f'refine=2: {task} has no pixel condition'):
      candidates.check(task, 1, 'clip', refine=2)
