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
"""

from __future__ import annotations

import dataclasses

import numpy as np

from videogen.transformer import tasks

# Tasks compared with a pixel condition (`errors`); uncond has none and is ranked by pace alone.
CONDITIONED_TASKS = ('interpolate', 'inpaint', 'outpaint', 'restore', 'restyle')
RANKED_TASKS = ('uncond', *CONDITIONED_TASKS)


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


def check(task: str, candidates: int) -> None:
  """ValueError (one line) unless `task` can rank `candidates` samples."""
  if candidates > 1 and task not in RANKED_TASKS:
    raise ValueError(
      f'candidates={candidates}: {task} draws one sample (its caption or frames set its '
      f'motion); use candidates=1, or a task of {", ".join(RANKED_TASKS)}.'
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
