"""Procedural clips of coloured shapes moving on a black background.

Each clip shows one or two objects, each a colour from `PALETTE`, a shape from
`SHAPES` and a motion from `MOTIONS`, captioned like "a red circle moving left
and a blue square moving up". The clips are made to be judged by pixels:

* hard edges (no anti-aliasing), so every pixel is black or exactly one
  palette colour, and objects in one clip have distinct colours;
* each object's pixel footprint is the same in every frame (whole-pixel
  moves), and it stays fully inside the frame for the whole clip;
* objects span 1/4 to 1/3 of the shorter frame side, and their shapes fill
  clearly different shares of their bounding box (square 1, circle ~0.79,
  triangle ~0.5-0.56), so shape is readable even at 32x32;
* each object travels 40-80% of the free space along its motion axis (at
  least ~0.8 of its own side), and two objects never touch.

Everything is numpy and deterministic per seed.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from typing import Sequence

import numpy as np

PALETTE: dict[str, tuple[int, int, int]] = {
  'red': (255, 0, 0),
  'green': (0, 255, 0),
  'blue': (0, 0, 255),
  'yellow': (255, 255, 0),
  'cyan': (0, 255, 255),
  'magenta': (255, 0, 255),
  'white': (255, 255, 255),
  'orange': (255, 128, 0),
}
SHAPES: tuple[str, ...] = ('square', 'circle', 'triangle')
MOTIONS: tuple[str, ...] = ('left', 'right', 'up', 'down')
# Unit step of each motion in (row, column) image coordinates.
MOTION_DIRECTIONS: dict[str, tuple[int, int]] = {
  'left': (0, -1),
  'right': (0, 1),
  'up': (-1, 0),
  'down': (1, 0),
}
# Object side as a fraction of the shorter frame side.
SIZE_RANGE = (0.25, 1 / 3)
# Distance travelled over the clip, as a fraction of the free space on the axis.
TRAVEL_RANGE = (0.4, 0.8)
MAX_OBJECTS = 2
_PLACEMENT_ATTEMPTS = 256  # Candidate placements drawn per clip.


@dataclasses.dataclass(frozen=True)
class _Plan:
  """An object chosen but not yet placed."""

  color: str
  shape: str
  motion: str
  size: int


@dataclasses.dataclass(frozen=True)
class ObjectSpec:
  """What a caption says about one object."""

  color: str
  shape: str
  motion: str

  @property
  def phrase(self) -> str:
    article = 'an' if self.color[0] in 'aeiou' else 'a'
    return f'{article} {self.color} {self.shape} moving {self.motion}'


@dataclasses.dataclass(frozen=True, eq=False)
class ShapeObject(ObjectSpec):
  """One rendered object and where it is in every frame.

  Attributes:
    size: side of its square bounding box, in pixels (constant over the clip).
    centers: float32 [time, 2], (row, column) of the bounding-box centre per
      frame, in pixels.
  """

  size: int = 0
  centers: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros((0, 2)))

  @property
  def rgb(self) -> tuple[int, int, int]:
    return PALETTE[self.color]

  @property
  def spec(self) -> ObjectSpec:
    return ObjectSpec(self.color, self.shape, self.motion)


@dataclasses.dataclass(frozen=True, eq=False)
class ShapesExample:
  """A clip with its caption.

  Attributes:
    video: uint8 [time, height, width, 3].
    caption: e.g. "a red circle moving left and a blue square moving up".
    objects: the objects in caption order.
  """

  video: np.ndarray
  caption: str
  objects: list[ShapeObject]


def caption_for(objects: Sequence[ObjectSpec]) -> str:
  """The caption naming every object: "a red circle moving left and ..."."""
  return ' and '.join(obj.phrase for obj in objects)


_PHRASE = re.compile(
  r'an? (?P<color>{}) (?P<shape>{}) moving (?P<motion>{})'.format(
    '|'.join(PALETTE), '|'.join(SHAPES), '|'.join(MOTIONS)
  )
)


def parse_caption(caption: str) -> list[ObjectSpec]:
  """Inverse of `caption_for` (accepts 'a' or 'an' before any colour).

  Raises:
    ValueError: when `caption` is not a shapes caption.
  """
  specs = []
  for phrase in caption.strip().split(' and '):
    match = _PHRASE.fullmatch(phrase.strip())
    if match is None:
      raise ValueError(
        f'Not a shapes caption: {caption!r} (each object reads '
        "'a <colour> <shape> moving <left|right|up|down>', joined by ' and ')"
      )
    specs.append(ObjectSpec(**match.groupdict()))
  return specs


@functools.lru_cache(maxsize=None)
def sprite(shape: str, size: int) -> np.ndarray:
  """bool [size, size] mask of `shape` filling a size x size box (hard edges)."""
  coords = np.arange(size) - (size - 1) / 2
  rows, cols = coords[:, None], coords[None, :]
  if shape == 'square':
    mask = np.ones((size, size), bool)
  elif shape == 'circle':
    mask = rows**2 + cols**2 <= (size / 2) ** 2
  elif shape == 'triangle':  # Apex up, base along the bottom row.
    half_width = (np.arange(size)[:, None] + 1) / 2
    mask = np.abs(cols) <= half_width
  else:
    raise ValueError(f'Unknown shape {shape!r}; expected one of {SHAPES}.')
  mask.setflags(write=False)
  return mask


def _object_size_range(height: int, width: int) -> tuple[int, int]:
  side = min(height, width)
  low = max(3, int(round(SIZE_RANGE[0] * side)))
  high = max(low, int(round(SIZE_RANGE[1] * side)))
  return low, high


def _trajectories(
  rng: np.random.Generator,
  motion: str,
  size: int,
  num_frames: int,
  height: int,
  width: int,
  count: int,
) -> np.ndarray:
  """`count` candidate paths: int [count, time, 2] top-left (row, column).

  Every path keeps the object fully inside the frame in every frame.
  """
  d_row, d_col = MOTION_DIRECTIONS[motion]
  axis = 0 if d_row else 1
  step = d_row or d_col
  free = (height, width)[axis] - size  # Top-left positions that keep it inside.
  travel = np.round(rng.uniform(*TRAVEL_RANGE, size=count) * free).astype(np.int64)
  start = rng.integers(0, free - travel + 1)
  if step < 0:
    start += travel
  progress = np.linspace(0.0, 1.0, num_frames)[None, :]
  offsets = np.round(progress * travel[:, None]).astype(np.int64) * step
  across = rng.integers(0, (height, width)[1 - axis] - size + 1, size=count)
  paths = np.empty((count, num_frames, 2), np.int64)
  paths[:, :, axis] = start[:, None] + offsets
  paths[:, :, 1 - axis] = across[:, None]
  return paths


def _overlap_pixels(a: np.ndarray, size_a: int, b: np.ndarray, size_b: int) -> np.ndarray:
  """Largest bounding-box overlap over the clip, in pixels, per candidate.

  Args:
    a: int [count, time, 2] top-left paths of one object.
    size_a: its side.
    b: int [count, time, 2] paths of another object.
    size_b: its side.

  Returns:
    int [count]; boxes are grown by one pixel first, so touching counts.
  """
  gap = 1  # Objects that touch would merge into one blob for a pixel evaluator.
  low = np.maximum(a, b)
  high = np.minimum(a + size_a + gap, b + size_b + gap)
  extent = np.clip(high - low, 0, None)
  return np.max(extent[..., 0] * extent[..., 1], axis=-1)


def generate_example(
  seed: int,
  num_frames: int = 17,
  height: int = 64,
  width: int = 64,
  min_objects: int = 1,
  max_objects: int = 2,
) -> ShapesExample:
  """Renders the clip that `seed` names.

  Args:
    seed: any non-negative int; the same seed always gives the same clip.
    num_frames: frames in the clip.
    height: frame height in pixels (at least 12).
    width: frame width in pixels (at least 12).
    min_objects: fewest objects (1 or 2).
    max_objects: most objects (1 or 2).

  Returns:
    A `ShapesExample` with video uint8 [num_frames, height, width, 3].
  """
  if not 1 <= min_objects <= max_objects <= MAX_OBJECTS:
    raise ValueError(
      f'Need 1 <= min_objects <= max_objects <= {MAX_OBJECTS}, got {min_objects} and {max_objects}.'
    )
  if min(height, width) < 12 or num_frames < 1:
    raise ValueError(
      f'Shapes clips need at least 1 frame of 12x12 pixels, got {num_frames} '
      f'frames of {height}x{width}.'
    )
  rng = np.random.default_rng(seed)
  num_objects = int(rng.integers(min_objects, max_objects + 1))
  colors = rng.choice(len(PALETTE), size=num_objects, replace=False)
  size_low, size_high = _object_size_range(height, width)
  plans = []
  for color_index in colors:
    shape = SHAPES[int(rng.integers(len(SHAPES)))]
    motion = MOTIONS[int(rng.integers(len(MOTIONS)))]
    size = int(rng.integers(size_low, size_high + 1))
    plans.append(_Plan(list(PALETTE)[int(color_index)], shape, motion, size))
  paths = _place(rng, plans, num_frames, height, width)

  video = np.zeros((num_frames, height, width, 3), np.uint8)
  frame_index = np.arange(num_frames)[:, None]
  objects = []
  for plan, top_left in zip(plans, paths, strict=True):
    mask_rows, mask_cols = np.nonzero(sprite(plan.shape, plan.size))
    rows = top_left[:, :1] + mask_rows[None, :]
    cols = top_left[:, 1:] + mask_cols[None, :]
    video[frame_index, rows, cols] = PALETTE[plan.color]
    centers = (top_left + (plan.size - 1) / 2).astype(np.float32)
    objects.append(
      ShapeObject(plan.color, plan.shape, plan.motion, size=plan.size, centers=centers)
    )
  return ShapesExample(video=video, caption=caption_for(objects), objects=objects)


def _place(
  rng: np.random.Generator,
  plans: list[_Plan],
  num_frames: int,
  height: int,
  width: int,
) -> list[np.ndarray]:
  """Top-left paths int [time, 2] per object, keeping objects apart.

  Draws many candidate placements of all objects at once (a lone second
  object often has no safe path across the first one's) and keeps the first
  in which no two objects touch in any frame; on a frame too small for that,
  the one with the least overlap.
  """
  candidates = [
    _trajectories(rng, plan.motion, plan.size, num_frames, height, width, _PLACEMENT_ATTEMPTS)
    for plan in plans
  ]
  worst_overlap = np.zeros(_PLACEMENT_ATTEMPTS, np.int64)
  for i in range(len(plans)):
    for j in range(i + 1, len(plans)):
      overlap = _overlap_pixels(candidates[i], plans[i].size, candidates[j], plans[j].size)
      worst_overlap = np.maximum(worst_overlap, overlap)
  chosen = int(np.argmin(worst_overlap))  # The first candidate with no contact.
  return [paths[chosen] for paths in candidates]
