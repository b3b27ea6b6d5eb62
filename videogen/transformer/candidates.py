"""Best of N: candidates ranked by what the task was given, in pixels, and by their pace.

A sample of a conditioned task can be checked against what it was given, in
pixels, without knowing the right answer:

| task        | the sample, seen as the condition was made | compared with                |
|-------------|--------------------------------------------|------------------------------|
| restyle     | in greyscale                               | the greyscale input          |
| restore     | averaged over 2x2 pixels                   | the degraded input, averaged |
| interpolate | its first and last frames                  | the given frames             |
| inpaint     | outside the mask                           | the given pixels there       |
| outpaint    | inside the border                          | the given pixels there       |

A x2 downscale keeps the 2x2 means, and noise shrinks in them. Restyle is
colourisation: the colours change, the brightness stays, so a caption naming a
colour of another brightness than the grey input's conflicts with it, and the
ranking sides with the input.

The given frames say nothing of an interpolation's middle, and an
unconditional sample is given nothing. Both are also ranked by their pace
(`pace_unevenness`): how unevenly the clip changes from frame to frame, 0 for a
clip that changes by the same amount at every step. Interpolation assumes
steady motion between its two frames, as frame interpolation does (motion
scaled linearly in time), so its score is the given frames' error times the
unevenness; uncond's is the unevenness alone, a judge of flicker and jumps
that needs no condition.

With `SamplingSettings.candidates = n`, a task draws n samples (the plain
sample of its seed first, then n - 1 more from keys folded from it, so each
seed has its own candidates) and keeps the one with the lowest `scores`.
Text-to-video, i2v and predict draw one sample: their motion comes from the
caption or the given frames, and t2v's figures are compared with the
text-to-video model's single sample.

With `SamplingSettings.candidate_search = 'frame'` (`search_frames`), the
candidates are drawn one latent frame at a time instead: n draws of the clip's
first latent frame, the best kept; n draws of the second after it, the best
kept; and so on. The tokenizer's decoder is causal in time, so a latent frame's
pixels, and their error against the condition, are final once it is drawn, and
the search picks among n choices at every latent frame rather than n whole
clips, for the same number of sampled tokens. It needs a condition on every
frame (inpaint, outpaint, restore, restyle); interpolate's last frame and
uncond's pace are known only for whole clips.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np
from absl import logging

from videogen.transformer import config as transformer_config
from videogen.transformer import tasks

# Tasks compared with a pixel condition (`errors`); uncond has none and is ranked by pace alone.
CONDITIONED_TASKS = ('interpolate', 'inpaint', 'outpaint', 'restore', 'restyle')
RANKED_TASKS = ('uncond', *CONDITIONED_TASKS)
# Tasks whose condition covers every frame, so each latent frame is ranked as it is drawn.
FRAME_RANKED_TASKS = ('inpaint', 'outpaint', 'restore', 'restyle')
SEARCHES = transformer_config.CANDIDATE_SEARCHES  # `SamplingSettings.candidate_search`.


@dataclasses.dataclass(frozen=True)
class Condition:
  """What a task's samples are ranked against, at the model's resolution.

  Attributes:
    task: one of `RANKED_TASKS`.
    pixels: float32 [rows, ...], `view(task, clip)` of the condition, one row
      per prompt (or one row for all); None for uncond, which is given nothing.
    keep: bool [rows, T, H, W], the pixels compared (inpaint, outpaint), or None = all.
  """

  task: str
  pixels: np.ndarray | None = None
  keep: np.ndarray | None = None

  @classmethod
  def concatenate(cls, conditions: list[Condition]) -> Condition:
    """One condition with the rows of `conditions` (one per prompt), in order."""
    keeps = [c.keep for c in conditions]
    return cls(
      conditions[0].task,
      np.concatenate([c.pixels for c in conditions]),
      None if keeps[0] is None else np.concatenate(keeps),
    )

  def first_frames(self, frames: int) -> Condition:
    """The condition of a clip's first `frames` frames (a task of `FRAME_RANKED_TASKS`)."""
    if self.task not in FRAME_RANKED_TASKS:
      raise ValueError(f'{self.task} is ranked on whole clips, not on their first frames.')
    keep = None if self.keep is None else self.keep[:, :frames]
    return Condition(self.task, self.pixels[:, :frames], keep)


def check(task: str, candidates: int, search: str = 'clip', refine: int = 0) -> None:
  """ValueError (one line) unless `task` can rank `candidates` samples by `search`
  and refine its sample over `refine` sweeps."""
  transformer_config.check_candidate_search(search)
  if candidates > 1 and task not in RANKED_TASKS:
    raise ValueError(
      f'candidates={candidates}: {task} draws one sample (its caption or frames set its '
      f'motion); use candidates=1, or a task of {", ".join(RANKED_TASKS)}.'
    )
  if candidates > 1 and search == 'frame' and task not in FRAME_RANKED_TASKS:
    raise ValueError(
      f"candidate_search='frame': {task} is ranked on whole clips (its condition is not on "
      f"every frame); use 'clip', or a task of {', '.join(FRAME_RANKED_TASKS)}."
    )
  if refine > 0 and task not in CONDITIONED_TASKS:
    raise ValueError(
      f'refine={refine}: {task} has no pixel condition to refine its sample against; use '
      f'refine=0, or a task of {", ".join(CONDITIONED_TASKS)}.'
    )


def view(task: str, clips: np.ndarray) -> np.ndarray:
  """What of uint8 clips [N, T, H, W, 3] the task compares: float32 [N, ...]."""
  clips = np.asarray(clips, np.float32)
  if task == 'restyle':
    return np.asarray(tasks.greyscale(clips))[..., :1]
  if task == 'restore':
    n, frames, height, width, channels = clips.shape
    pooled = clips.reshape(n, frames, height // 2, 2, width // 2, 2, channels)
    return pooled.mean(axis=(3, 5))
  if task == 'interpolate':
    return clips[:, [0, -1]]
  return clips


def condition(task: str, video: np.ndarray, keep: np.ndarray | None = None) -> Condition:
  """The `Condition` of one prompt.

  Args:
    task: one of `RANKED_TASKS`.
    video: uint8 [T, H, W, 3] at the model's resolution: the input clip, or for
      interpolate the first and last frames ([2, H, W, 3]).
    keep: bool [T, H, W], the given pixels (inpaint, outpaint).
  """
  if task not in CONDITIONED_TASKS:
    raise ValueError(
      f'{task} has no pixel condition; conditioned tasks: {", ".join(CONDITIONED_TASKS)}.'
    )
  if task == 'interpolate':  # Already the two frames `view` would take.
    pixels = np.asarray(video, np.float32)[None]
  else:
    pixels = view(task, np.asarray(video)[None])
  return Condition(task, pixels, None if keep is None else np.asarray(keep, bool)[None])


def errors(samples: np.ndarray, condition: Condition) -> np.ndarray:
  """Mean squared error of each sample against its prompt's condition.

  Args:
    samples: uint8 [rows, T, H, W, 3]; `rows` is a multiple of the condition's
      rows, prompt-major (each prompt's samples together).
    condition: the `Condition`.

  Returns:
    float32 [rows].
  """
  if condition.pixels is None:
    raise ValueError(f'{condition.task} has no pixel condition to compare samples with.')
  rows = len(samples)
  per_prompt = rows // len(condition.pixels)
  squared = (view(condition.task, samples) - np.repeat(condition.pixels, per_prompt, axis=0)) ** 2
  weights = np.ones_like(squared)
  if condition.keep is not None:
    weights *= np.repeat(condition.keep, per_prompt, axis=0)[..., None]
  total = (squared * weights).reshape(rows, -1).sum(axis=1)
  return total / np.maximum(weights.reshape(rows, -1).sum(axis=1), 1)  # No kept pixel: 0.


def pace_unevenness(samples: np.ndarray) -> np.ndarray:
  """How unevenly each clip changes over time: float32 [rows].

  The coefficient of variation over the T - 1 steps of a clip's frame-to-frame
  mean squared change: 0 when every step changes it by as much, sqrt(T - 2)
  (its largest) when one step holds all of the change. A clip that changes by
  less than a grey level per step does not move, so it has no steady motion:
  it counts as the most uneven (among still clips the given frames decide).

  Args:
    samples: uint8 [rows, T, H, W, 3], T >= 2.
  """
  clips = np.asarray(samples, np.float32)
  steps = clips.shape[1] - 1
  if steps < 1:  # One frame: no pace to compare.
    return np.zeros(len(clips), np.float32)
  change = (np.diff(clips, axis=1) ** 2).reshape(len(clips), steps, -1).mean(axis=2)
  mean = change.mean(axis=1)
  unevenness = change.std(axis=1) / np.maximum(mean, 1.0)
  return np.where(mean < 1.0, np.sqrt(steps - 1.0), unevenness)


def scores(samples: np.ndarray, condition: Condition) -> np.ndarray:
  """The ranking score of each sample, lower is better: float32 [rows].

  Its `errors` against the condition; for interpolate times its
  `pace_unevenness`; for uncond the unevenness alone.

  Args:
    samples: uint8 [rows, T, H, W, 3], prompt-major as for `errors`.
    condition: the `Condition` (for uncond, `Condition('uncond')`).
  """
  if condition.task == 'uncond':
    return pace_unevenness(samples)
  error = errors(samples, condition)
  if condition.task == 'interpolate':
    return error * pace_unevenness(samples)
  return error


def search_frames(
  draw: Callable[[int, int, np.ndarray | None], np.ndarray],
  score: Callable[[np.ndarray], np.ndarray],
  latent_frames: int,
  count: int,
) -> np.ndarray:
  """The best of `count` draws of each latent frame in turn, each after the best before it.

  Args:
    draw: (frame, k, chosen) -> int32 [rows, frame + 1, h, w], the k-th draw of
      latent frame `frame` after `chosen` ([rows, frame, h, w], None at frame 0),
      which it keeps as its first latent frames.
    score: int32 [rows, j, h, w] -> float [rows], lower is better (the first j
      latent frames, decoded, against the condition's frames they cover).
    latent_frames: latent frames of the clip.
    count: draws per latent frame.

  Returns:
    int32 [rows, latent_frames, h, w].
  """
  chosen = None
  for frame in range(latent_frames):
    best = best_score = None
    for k in range(count):
      drawn = np.asarray(draw(frame, k, chosen))
      drawn_score = np.asarray(score(drawn))
      if best is None:
        best, best_score = drawn, drawn_score
        continue
      better = drawn_score < best_score
      best = np.where(better[:, None, None, None], drawn, best)
      best_score = np.where(better, drawn_score, best_score)
    logging.info(
      'latent frame %d of %d: best of %d; mean score %.3g',
      frame + 1,
      latent_frames,
      count,
      float(best_score.mean()),
    )
    chosen = best
  return chosen
