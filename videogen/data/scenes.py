"""Scene cuts of a video, found by PySceneDetect (`pip install 'videogen[scenes]'`).

`config.data.scene_detect='content'` splits each video (a folder file or a
manifest row without a time range) at its hard cuts before it is cut into
`clip_seconds` windows, so no training clip shows two shots. The detector is
PySceneDetect's `ContentDetector`: a cut where the mean change of hue,
saturation and brightness between two frames exceeds `scene_threshold`
(PySceneDetect's default 27 on its 0-255 scale).
"""

from __future__ import annotations

import dataclasses

from videogen.data import video_io

DETECTORS = ('content',)  # config.data.scene_detect values besides '' (off).
DEFAULT_THRESHOLD = 27.0  # ContentDetector's own default.


@dataclasses.dataclass(frozen=True)
class Scene:
  """One shot of a video, in seconds from its start.

  Attributes:
    start: first second of the scene.
    end: second its next scene (or the video's end) starts.
  """

  start: float
  end: float


def require_scenedetect(detector: str) -> None:
  """Raises a one-line ImportError when PySceneDetect (the `scenes` extra) is missing."""
  try:
    import scenedetect  # noqa: F401, PLC0415  # pylint: disable=g-import-not-at-top,unused-import
  except ImportError as error:
    raise ImportError(
      f"config.data.scene_detect={detector!r} needs PySceneDetect: pip install 'videogen[scenes]'."
    ) from error


def detect_scenes(path: str, detector: str, threshold: float) -> list[Scene]:
  """The scenes of a local video file, in order, covering it from start to end.

  A video without cuts is one scene. Every cut counts, however close to the
  previous one (minimum scene length one frame): a scene too short for a
  clip is dropped later, which is safer than a window across two shots.

  Args:
    path: a local video file.
    detector: one of DETECTORS.
    threshold: the detector's cut threshold.

  Raises:
    ImportError: PySceneDetect is not installed (the message names the extra).
    VideoReadError: PySceneDetect cannot open the file.
  """
  if detector not in DETECTORS:
    raise ValueError(f'scene detector must be one of {DETECTORS}, got {detector!r}.')
  require_scenedetect(detector)
  import scenedetect  # pylint: disable=g-import-not-at-top  # The scenes extra.

  try:
    found = scenedetect.detect(
      path,
      scenedetect.ContentDetector(threshold=threshold, min_scene_len=1),
      start_in_scene=True,
    )
  except scenedetect.VideoOpenFailure as error:
    raise video_io.VideoReadError(path, f'PySceneDetect cannot open it ({error})') from error
  return [Scene(start.seconds, end.seconds) for start, end in found]


def scene_spans(scenes: list[Scene], fps: float, num_frames: int) -> list[tuple[int, int]]:
  """(first, last + 1) decoded frame of each scene, clipped to the `num_frames` decoded."""
  spans = []
  for scene in scenes:
    first = min(num_frames, round(scene.start * fps))
    last = min(num_frames, round(scene.end * fps))
    if last > first:
      spans.append((first, last))
  return spans
