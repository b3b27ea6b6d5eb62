"""Text alignment of shapes clips, judged from pixels alone.

For each clip (uint8 [time, height, width, 3], or float in [-1, 1] as the
tokenizer decodes it) the evaluator finds the objects
and reads their colour, shape and motion; it parses the caption ("a red
circle moving left and a blue square moving up") into the objects it asks
for, and scores one against the other.

Detection (made to survive a tokenizer round trip, where colours and edges
are no longer exact):
1. Foreground: pixels whose brightest channel is at least
   `brightness_threshold` (100 of 255); the background is black.
2. Colour: each foreground pixel is scaled so its brightest channel is 255
   (dim or faded pixels keep their hue) and given the nearest `PALETTE`
   colour (Euclidean RGB).
3. Objects: per frame and colour, the largest 8-connected component of that
   colour's pixels, kept when it has at least `min_area` pixels (default
   side^2 / 64 for the shorter frame side; real objects have >= ~side^2 / 30).
   A colour is an object when it is found in at least half of the frames.
   Objects of one clip have distinct colours (as in the dataset), so two of
   one colour count as one.
4. Shape, from the median over frames of two cues of the component's
   bounding box: the fill ratio (square 1, circle ~0.79, triangle ~0.55) and
   the ratio of pixels in its top half to its bottom half (apex-up triangles
   ~0.4, squares and circles ~1). Triangle when that ratio is below 0.7 or the
   fill below 0.66; square when the fill is at least 0.92; circle otherwise.
5. Motion: the centroid displacement between the first and the last frame in
   which the object is found; the larger axis gives left/right/up/down.
   A displacement under a quarter of the object's side is 'static' (wrong for
   every caption: captioned objects always move).

Scoring: the caption's objects are matched one-to-one to detected objects,
maximising the number of agreeing attributes (colour counting slightly
more, to break ties). Each captioned object then scores colour, shape and
motion against its match. A captioned object with no match (fewer objects
detected than asked for) is *missing* and counts as wrong on all three
attributes; detected objects left unmatched are *extra*: they do not change
the attribute accuracies but fail `count_accuracy` and `clip_accuracy`.
Attribute accuracies are over all captioned objects of all clips.

Real clips from `videogen.data.shapes.generate_example` score >= 99% on every
attribute (tested at 64x64 and 32x32, 17 and 9 frames), and so do clips
blurred, dimmed and noised the way a tokenizer round trip degrades them:
that is what makes the evaluator a fair judge of samples.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import numpy as np
from scipy import ndimage, optimize

from videogen.data import shapes

BRIGHTNESS_THRESHOLD = 100
STATIC = 'static'
_PALETTE_NAMES = tuple(shapes.PALETTE)
_PALETTE_RGB = np.array([shapes.PALETTE[name] for name in _PALETTE_NAMES], np.float32)
_CONNECTIVITY = np.ones((3, 3), bool)
_COLOR_WEIGHT = 1.01  # Colour agreement wins ties when matching objects.


@dataclasses.dataclass(frozen=True)
class DetectedObject:
  """An object read from pixels.

  Attributes:
    color: palette colour name.
    shape: 'square', 'circle' or 'triangle'.
    motion: 'left', 'right', 'up', 'down' or 'static'.
    frames: number of frames in which it was found.
    area: median pixel count per frame.
    fill: median fill ratio of its bounding box.
    top_bottom: median ratio of pixels in the top and bottom halves of its box.
    displacement: (row, column) centroid displacement, first to last frame.
  """

  color: str
  shape: str
  motion: str
  frames: int
  area: float
  fill: float
  top_bottom: float
  displacement: tuple[float, float]


@dataclasses.dataclass(frozen=True)
class ClipResult:
  """One clip scored against its caption.

  Attributes:
    caption: the caption.
    expected: the captioned objects.
    detected: the objects found in the pixels.
    matches: for each captioned object, the index of its detected object, or
      None when it is missing.
    color_correct: captioned objects whose match has the right colour.
    shape_correct: ... the right shape.
    motion_correct: ... the right motion.
    object_correct: ... all three right.
    missing: captioned objects with no match.
    extra: detected objects matched to nothing.
  """

  caption: str
  expected: list[shapes.ObjectSpec]
  detected: list[DetectedObject]
  matches: list[int | None]
  color_correct: int
  shape_correct: int
  motion_correct: int
  object_correct: int
  missing: int
  extra: int

  @property
  def all_correct(self) -> bool:
    return self.object_correct == len(self.expected) and self.extra == 0


@dataclasses.dataclass(frozen=True)
class AlignmentReport:
  """Caption alignment over clips (accuracies in [0, 1]).

  Attributes:
    num_clips: clips scored.
    num_objects: captioned objects over all clips.
    color_accuracy: color_correct / num_objects (likewise shape and motion).
    shape_accuracy: see color_accuracy.
    motion_accuracy: see color_accuracy.
    object_accuracy: captioned objects right on all three attributes.
    count_accuracy: clips with as many detected objects as captioned.
    clip_accuracy: clips with every object right and nothing extra.
    color_correct: counts behind the accuracies.
    shape_correct: see color_correct.
    motion_correct: see color_correct.
    object_correct: see color_correct.
    missing_objects: captioned objects not found.
    extra_objects: detected objects not asked for.
    shape_accuracy_by_class: shape accuracy over the captioned objects of
      each shape ('square', 'circle', 'triangle'; shapes never asked for are
      left out).
    clips: per-clip results (not part of `to_dict`).
  """

  num_clips: int
  num_objects: int
  color_accuracy: float
  shape_accuracy: float
  motion_accuracy: float
  object_accuracy: float
  count_accuracy: float
  clip_accuracy: float
  color_correct: int
  shape_correct: int
  motion_correct: int
  object_correct: int
  missing_objects: int
  extra_objects: int
  shape_accuracy_by_class: dict[str, float] = dataclasses.field(default_factory=dict)
  clips: list[ClipResult] = dataclasses.field(repr=False, default_factory=list)

  def to_dict(self) -> dict[str, Any]:
    """The summary as plain JSON-serialisable values."""
    return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != 'clips'}


def palette_labels(
  frames: np.ndarray, brightness_threshold: int = BRIGHTNESS_THRESHOLD
) -> np.ndarray:
  """Nearest palette colour per pixel, after brightness normalisation.

  Args:
    frames: uint8 [..., 3].
    brightness_threshold: pixels whose brightest channel is below this are
      background.

  Returns:
    int32 [...]: index into `PALETTE` (in its order), -1 for background.
  """
  pixels = np.asarray(frames, np.float32)
  brightest = pixels.max(axis=-1)
  foreground = brightest >= brightness_threshold
  normalised = pixels[foreground] * (255.0 / brightest[foreground])[:, None]
  distances = np.sum(np.square(normalised[:, None, :] - _PALETTE_RGB[None]), axis=-1)
  labels = np.full(brightest.shape, -1, np.int32)
  labels[foreground] = np.argmin(distances, axis=-1)
  return labels


def _largest_component(mask: np.ndarray) -> np.ndarray | None:
  components, count = ndimage.label(mask, structure=_CONNECTIVITY)
  if count == 0:
    return None
  sizes = np.bincount(components.ravel())[1:]
  return components == (int(np.argmax(sizes)) + 1)


def _shape_cues(mask: np.ndarray) -> tuple[float, float]:
  """(fill ratio of the bounding box, top-half / bottom-half pixel ratio)."""
  rows, cols = np.nonzero(mask)
  top, bottom = rows.min(), rows.max()
  height = bottom - top + 1
  width = cols.max() - cols.min() + 1
  fill = rows.size / (height * width)
  half = height // 2
  upper = np.count_nonzero(rows < top + half)
  lower = np.count_nonzero(rows > bottom - half)
  return float(fill), float(upper / max(lower, 1))


def classify_shape(fill: float, top_bottom: float) -> str:
  """Shape from the cues of `_shape_cues` (thresholds in the module docstring)."""
  if top_bottom < 0.7 or fill < 0.66:
    return 'triangle'
  return 'square' if fill >= 0.92 else 'circle'


def classify_motion(displacement: tuple[float, float], side: float) -> str:
  """Direction of a (row, column) displacement; 'static' under side / 4."""
  d_row, d_col = displacement
  if max(abs(d_row), abs(d_col)) < 0.25 * side:
    return STATIC
  if abs(d_col) >= abs(d_row):
    return 'right' if d_col > 0 else 'left'
  return 'down' if d_row > 0 else 'up'


def to_uint8(video: np.ndarray) -> np.ndarray:
  """uint8 clips pass through; float clips in [-1, 1] are mapped to [0, 255]."""
  video = np.asarray(video)
  if video.dtype == np.uint8:
    return video
  return np.clip(np.round((video.astype(np.float32) + 1.0) * 127.5), 0, 255).astype(np.uint8)


def detect_objects(
  video: np.ndarray,
  brightness_threshold: int = BRIGHTNESS_THRESHOLD,
  min_area: int | None = None,
) -> list[DetectedObject]:
  """Finds the coloured objects of a clip and reads their attributes.

  Args:
    video: uint8 [time, height, width, 3] (or float in [-1, 1]).
    brightness_threshold: foreground threshold on the brightest channel.
    min_area: smallest component kept, in pixels (default side^2 / 64).

  Returns:
    Detected objects in palette order.
  """
  video = to_uint8(video)
  if video.ndim != 4 or video.shape[-1] != 3:
    raise ValueError(f'Expected a clip [time, height, width, 3], got {video.shape}.')
  num_frames, height, width, _ = video.shape
  if min_area is None:
    min_area = max(3, min(height, width) ** 2 // 64)
  labels = palette_labels(video, brightness_threshold)
  objects = []
  for color_index, color in enumerate(_PALETTE_NAMES):
    color_mask = labels == color_index
    if np.count_nonzero(color_mask) < min_area:
      continue
    centroids, areas, fills, ratios, sides = [], [], [], [], []
    for frame in range(num_frames):
      component = _largest_component(color_mask[frame])
      if component is None or np.count_nonzero(component) < min_area:
        continue
      rows, cols = np.nonzero(component)
      centroids.append((rows.mean(), cols.mean()))
      areas.append(rows.size)
      fill, ratio = _shape_cues(component)
      fills.append(fill)
      ratios.append(ratio)
      sides.append(max(rows.max() - rows.min(), cols.max() - cols.min()) + 1)
    if 2 * len(centroids) < num_frames:
      continue
    fill, ratio = float(np.median(fills)), float(np.median(ratios))
    displacement = (
      float(centroids[-1][0] - centroids[0][0]),
      float(centroids[-1][1] - centroids[0][1]),
    )
    objects.append(
      DetectedObject(
        color=color,
        shape=classify_shape(fill, ratio),
        motion=classify_motion(displacement, float(np.median(sides))),
        frames=len(centroids),
        area=float(np.median(areas)),
        fill=fill,
        top_bottom=ratio,
        displacement=displacement,
      )
    )
  return objects


def _agreement(expected: shapes.ObjectSpec, detected: DetectedObject) -> float:
  return (
    _COLOR_WEIGHT * (expected.color == detected.color)
    + (expected.shape == detected.shape)
    + (expected.motion == detected.motion)
  )


def score_clip(caption: str, detected: Sequence[DetectedObject]) -> ClipResult:
  """Scores detected objects against a caption (matching in the module docstring)."""
  expected = shapes.parse_caption(caption)
  matches: list[int | None] = [None] * len(expected)
  if expected and detected:
    scores = np.array([[_agreement(e, d) for d in detected] for e in expected])
    rows, cols = optimize.linear_sum_assignment(scores, maximize=True)
    for row, col in zip(rows, cols, strict=True):
      matches[row] = int(col)
  counts = {'color': 0, 'shape': 0, 'motion': 0, 'object': 0}
  for spec, match in zip(expected, matches, strict=True):
    if match is None:
      continue
    found = detected[match]
    right = {
      attr: getattr(spec, attr) == getattr(found, attr) for attr in ('color', 'shape', 'motion')
    }
    for attr, ok in right.items():
      counts[attr] += ok
    counts['object'] += all(right.values())
  matched = sum(m is not None for m in matches)
  return ClipResult(
    caption=caption,
    expected=expected,
    detected=list(detected),
    matches=matches,
    color_correct=counts['color'],
    shape_correct=counts['shape'],
    motion_correct=counts['motion'],
    object_correct=counts['object'],
    missing=len(expected) - matched,
    extra=len(detected) - matched,
  )


def evaluate_clip(video: np.ndarray, caption: str, **detect_kwargs) -> ClipResult:
  """Scores one clip uint8 [time, height, width, 3] against its caption.

  Raises:
    ValueError: when `caption` is not a shapes caption.
  """
  return score_clip(caption, detect_objects(video, **detect_kwargs))


def evaluate_clips(
  videos: Sequence[np.ndarray] | np.ndarray,
  captions: Sequence[str],
  **detect_kwargs,
) -> AlignmentReport:
  """Scores clips against their captions.

  Args:
    videos: uint8 [num_clips, time, height, width, 3] (or float in [-1, 1],
      or a list of clips).
    captions: one shapes caption per clip.
    **detect_kwargs: `brightness_threshold`, `min_area` for `detect_objects`.

  Returns:
    The `AlignmentReport` (per-attribute accuracies and counts).
  """
  if len(videos) != len(captions):
    raise ValueError(f'{len(videos)} videos but {len(captions)} captions.')
  return summarize(
    [
      evaluate_clip(video, caption, **detect_kwargs)
      for video, caption in zip(videos, captions, strict=True)
    ]
  )


def summarize(clips: Sequence[ClipResult]) -> AlignmentReport:
  """The `AlignmentReport` of already scored clips (e.g. a subset of a report's `clips`)."""
  clips = list(clips)
  num_objects = sum(len(c.expected) for c in clips)

  def fraction(count: int, total: int) -> float:
    return count / total if total else 0.0

  totals = {
    attr: sum(getattr(c, f'{attr}_correct') for c in clips)
    for attr in ('color', 'shape', 'motion', 'object')
  }
  asked, right = dict.fromkeys(shapes.SHAPES, 0), dict.fromkeys(shapes.SHAPES, 0)
  for clip in clips:
    for spec, match in zip(clip.expected, clip.matches, strict=True):
      asked[spec.shape] += 1
      right[spec.shape] += match is not None and clip.detected[match].shape == spec.shape
  return AlignmentReport(
    num_clips=len(clips),
    num_objects=num_objects,
    color_accuracy=fraction(totals['color'], num_objects),
    shape_accuracy=fraction(totals['shape'], num_objects),
    motion_accuracy=fraction(totals['motion'], num_objects),
    object_accuracy=fraction(totals['object'], num_objects),
    count_accuracy=fraction(sum(len(c.detected) == len(c.expected) for c in clips), len(clips)),
    clip_accuracy=fraction(sum(c.all_correct for c in clips), len(clips)),
    color_correct=totals['color'],
    shape_correct=totals['shape'],
    motion_correct=totals['motion'],
    object_correct=totals['object'],
    missing_objects=sum(c.missing for c in clips),
    extra_objects=sum(c.extra for c in clips),
    shape_accuracy_by_class={
      shape: fraction(right[shape], asked[shape]) for shape in shapes.SHAPES if asked[shape]
    },
    clips=clips,
  )


# --- per-task checks (multi-task models; `videogen.eval.tasks_eval` runs them) ------


def color_track(
  video: np.ndarray, color: str, brightness_threshold: int = BRIGHTNESS_THRESHOLD
) -> list[tuple[float, float] | None]:
  """Per frame, the (row, column) centroid of the largest `color` component, or None
  where it is missing or smaller than side^2 / 64 pixels."""
  video = to_uint8(video)
  labels = palette_labels(video, brightness_threshold)
  min_area = max(3, min(video.shape[1:3]) ** 2 // 64)
  track = []
  for frame in labels == _PALETTE_NAMES.index(color):
    component = _largest_component(frame)
    if component is None or np.count_nonzero(component) < min_area:
      track.append(None)
      continue
    rows, cols = np.nonzero(component)
    track.append((float(rows.mean()), float(cols.mean())))
  return track


def psnr(video: np.ndarray, reference: np.ndarray, mask: np.ndarray | None = None) -> float:
  """PSNR in dB of uint8 clips (or float in [-1, 1]) over the pixels where `mask`
  ([T, H, W], True = counted) holds; all pixels when None."""
  a = to_uint8(video).astype(np.float64)
  b = to_uint8(reference).astype(np.float64)
  error = np.square(a - b).mean(axis=-1)
  if mask is not None:
    error = error[np.broadcast_to(mask, error.shape)]
  mse = float(error.mean()) if error.size else 0.0
  return float('inf') if mse == 0 else 10.0 * np.log10(255.0**2 / mse)


def on_straight_path(video: np.ndarray, color: str, tolerance: float = 2.0) -> bool:
  """Interpolation: the object is found in every frame and its centroid in the
  middle frames is within `tolerance` px of the straight, constant-speed path
  from its centroid in the first frame to that in the last."""
  track = color_track(video, color)
  if any(point is None for point in track):
    return False
  first, last = np.asarray(track[0]), np.asarray(track[-1])
  steps = len(track) - 1
  for index, point in enumerate(track[1:-1], start=1):
    expected = first + (last - first) * index / steps
    if np.linalg.norm(np.asarray(point) - expected) > tolerance:
      return False
  return True


def keeps_direction(video: np.ndarray, color: str, motion: str, given_frames: int) -> bool:
  """Prediction: from the last given frame to the last frame, the object's centroid
  moves in direction `motion` ('left', 'right', 'up', 'down'), along the larger axis."""
  track = color_track(video, color)
  start, end = track[max(given_frames - 1, 0)], track[-1]
  if start is None or end is None:
    return False
  row, col = end[0] - start[0], end[1] - start[1]
  if max(abs(row), abs(col)) < 0.5:
    return False
  if abs(col) >= abs(row):
    return motion == ('right' if col > 0 else 'left')
  return motion == ('down' if row > 0 else 'up')


def track_continuous(video: np.ndarray, color: str, max_step: float) -> bool:
  """In/outpainting: the object is found in every frame and never jumps more than
  `max_step` px between consecutive frames."""
  track = color_track(video, color)
  if any(point is None for point in track):
    return False
  steps = np.linalg.norm(np.diff(np.asarray(track), axis=0), axis=-1)
  return bool((steps <= max_step).all())


def max_step(video: np.ndarray, color: str) -> float | None:
  """The largest frame-to-frame centroid move of `color` in a (real) clip."""
  track = color_track(video, color)
  if any(point is None for point in track):
    return None
  return float(np.linalg.norm(np.diff(np.asarray(track), axis=0), axis=-1).max())


def shows_other_colors(
  video: np.ndarray, colors: Sequence[str], min_area: int | None = None
) -> bool:
  """Whether any frame of `video` shows a patch (a connected component of at
  least `min_area` pixels, default side^2 / 64 as `detect_objects`) of a palette
  colour outside `colors`: an object, however brief, that should not be there."""
  video = to_uint8(video)
  if min_area is None:
    min_area = max(3, min(video.shape[1:3]) ** 2 // 64)
  labels = palette_labels(video)
  for color_index, color in enumerate(_PALETTE_NAMES):
    if color in colors:
      continue
    for frame in labels == color_index:
      component = _largest_component(frame)
      if component is not None and np.count_nonzero(component) >= min_area:
        return True
  return False


def valid_unconditional(video: np.ndarray, steady_fraction: float = 0.8) -> bool:
  """An unconditional sample is valid when it has at least one object and each
  has a palette colour, a shape, and a steady motion: not static, and at least
  `steady_fraction` of its frame-to-frame moves along its main axis go one way."""
  objects = detect_objects(video)
  if not objects:
    return False
  for found in objects:
    if found.motion == STATIC:
      return False
    track = [p for p in color_track(video, found.color) if p is not None]
    axis = 1 if found.motion in ('left', 'right') else 0
    sign = 1.0 if found.motion in ('right', 'down') else -1.0
    moves = np.diff(np.asarray(track)[:, axis]) * sign
    if moves.size == 0 or np.mean(moves >= 0) < steady_fraction:
      return False
  return True
