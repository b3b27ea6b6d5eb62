"""Refining a sample token by token against what the task was given, in pixels.

Best of N (`candidates`) picks among whole samples. Refinement then edits the
one kept: a sweep visits each generated token in raster order and tries, in its
place, each of the model's `top_k` likeliest tokens there (given the tokens
before it, guided as sampling is); an edit stays when the decoded sample
reproduces the condition better (`candidates.scores`, lower). Every row of a
batch is tried at once and keeps its own edits.

Why it helps in/outpainting: the given tokens are kept exactly, but the
tokenizer's decoder sees the whole frame, so the fill's tokens change the given
pixels too (a fill off by one token costs 5-7 dB there). Sampling never sees
pixels; refinement chooses, among tokens the model finds likely, those whose
pixels fit the given ones. It uses only what a user gives, as the ranking does,
and the model's own candidates, so the fill stays one the model would draw.

Pure numpy around two callables, so the search is tested with fakes; the
model's (`TaskSampling._refine`) decode and score a batch per trial.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
from absl import logging


def refine(
  tokens: np.ndarray,
  editable: np.ndarray,
  alternatives: Callable[[np.ndarray], np.ndarray],
  score: Callable[[np.ndarray], np.ndarray],
  sweeps: int,
  *,
  label: str = 'refine',
) -> tuple[np.ndarray, np.ndarray]:
  """Greedy token-by-token edits that lower each row's score.

  Args:
    tokens: int [rows, t, h, w], the sample to refine.
    editable: bool [rows, t, h, w], the tokens that may change (the generated
      ones; in/outpainting's given tokens stay).
    alternatives: tokens -> int [rows, t, h, w, k], the tokens to try at each
      position (the model's likeliest, given the tokens before it); called once
      per sweep.
    score: tokens [rows, t, h, w] -> float [rows], lower is better.
    sweeps: passes over the editable positions; 0 returns `tokens` as they are.
    label: the progress lines' prefix.

  Returns:
    (tokens, scores): the refined tokens and their scores, float [rows].
  """
  tokens = np.array(tokens)
  editable = np.asarray(editable, bool)
  best = np.asarray(score(tokens))
  positions = np.argwhere(editable.any(axis=0))  # Raster order: (t, h, w) ascending.
  for sweep in range(sweeps):
    options = np.asarray(alternatives(tokens))
    changed = 0
    for frame in np.unique(positions[:, 0]):
      for _, row, col in positions[positions[:, 0] == frame]:
        here = (slice(None), frame, row, col)
        for option in np.moveaxis(options[here], -1, 0):  # [rows] per alternative.
          differs = editable[here] & (option != tokens[here])
          if not differs.any():
            continue
          trial = tokens.copy()
          trial[here] = np.where(differs, option, tokens[here])
          trial_score = np.asarray(score(trial))
          better = differs & (trial_score < best)
          tokens[here] = np.where(better, option, tokens[here])
          best = np.where(better, trial_score, best)
          changed += int(better.sum())
      logging.info(
        '%s: sweep %d of %d, latent frame %d of %d; %d edits kept; mean score %.3g',
        label,
        sweep + 1,
        sweeps,
        frame + 1,
        tokens.shape[1],
        changed,
        float(best.mean()),
      )
    if not changed:  # A sweep that changes nothing leaves the next the same.
      break
  return tokens, best
