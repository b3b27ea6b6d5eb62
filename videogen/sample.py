"""`videogen sample`: videos from a trained model, written where people can watch them.

The model is a transformer workdir or an exported model directory, local or
`gs://` (`videogen.transformer.TextToVideo.load`); nothing else is read. The
checkpoint may come from any mesh; sampling runs on one device.
"""

from __future__ import annotations

import json
import math
from typing import Sequence

import jax
import numpy as np
from etils import epath

from videogen.data import video_io
from videogen.transformer.inference import SamplingSettings, TextToVideo


def read_image(path: str) -> np.ndarray:
  """uint8 [H, W, 3] from an image file; ValueError naming the file if it is not one."""
  from PIL import Image, UnidentifiedImageError

  try:
    with Image.open(epath.Path(path).open('rb')) as image:
      return np.asarray(image.convert('RGB'))
  except (UnidentifiedImageError, OSError) as error:
    raise ValueError(f'{path} is not a readable image ({error}).') from None


def read_conditioning(
  first_frame: str | None, prefix_video: str | None
) -> tuple[np.ndarray | None, np.ndarray | None]:
  """(image, video) from `--first_frame IMG` / `--prefix_video VIDEO`."""
  if first_frame and prefix_video:
    raise ValueError('Give --first_frame or --prefix_video, not both.')
  image = read_image(first_frame) if first_frame else None
  video = video_io.read_video(prefix_video) if prefix_video else None
  return image, video


def read_task_inputs(
  *,
  first_frame: str | None = None,
  last_frame: str | None = None,
  video: str | None = None,
  mask: str | None = None,
  box: str | None = None,
) -> dict[str, np.ndarray]:
  """The inputs of `videogen sample --task X` as `TextToVideo.run_task` keywords.

  `--mask` is an image, white (> 127) where to fill; `--box t0,t1,y0,y1,x0,x1`
  the same as a box in the frames and pixels of `--video` (end-exclusive).
  """
  from videogen import cli_checks  # noqa: PLC0415  (the box syntax lives with the flag checks)

  inputs = {}
  if first_frame:
    inputs['image'] = read_image(first_frame)
  if last_frame:
    inputs['last_frame'] = read_image(last_frame)
  if video:
    inputs['video'] = video_io.read_video(video)
  if mask:
    inputs['mask'] = read_image(mask).mean(axis=-1) > 127
  if box:
    t0, t1, y0, y1, x0, x1 = cli_checks.parse_box(box)
    frames, height, width = inputs['video'].shape[:3]
    if t1 > frames or y1 > height or x1 > width:
      raise ValueError(
        f'--box={box} reaches past the video ({frames} frames of {height}x{width} pixels).'
      )
    inputs['mask'] = np.zeros((frames, height, width), bool)
    inputs['mask'][t0:t1, y0:y1, x0:x1] = True
  return inputs


def sample_task_to_dir(
  model: TextToVideo,
  task: str,
  prompts: Sequence[str],
  out: str,
  settings: SamplingSettings | None = None,
  *,
  num_samples: int = 1,
  **inputs: np.ndarray,
) -> np.ndarray:
  """`videogen sample --task X`: `model.run_task`, then written as `sample_to_dir` does."""
  videos = model.run_task(task, prompts, settings, num_samples=num_samples, **inputs)
  rows = (
    ['(unconditional)'] * len(videos)
    if task == 'uncond'
    else [p for p in prompts for _ in range(num_samples)]
  )
  if jax.process_index() == 0:
    write_samples(out, videos, rows, fps=model.fps)
    settings = settings or model.default_settings(task)
    count = settings.candidates
    best_of = f', each the best of {count} candidates' if count > 1 else ''
    if count > 1 and settings.candidate_search == 'frame':
      best_of = f', each latent frame the best of {count} candidates'
    if settings.refine:
      sweeps = settings.refine
      best_of += f', refined over {sweeps} sweep{"s" if sweeps > 1 else ""}'
    print(
      f'Wrote {len(videos)} {task} samples of {videos.shape[1]} frames{best_of} to {out}',
      flush=True,
    )
  return videos


def write_samples(out: str, videos: np.ndarray, prompts: Sequence[str], fps: int) -> None:
  """Writes `sample_NNN.mp4/.gif`, `samples.npy`, `prompts.json` and a grid."""
  out_dir = epath.Path(out)
  out_dir.mkdir(parents=True, exist_ok=True)
  for index, video in enumerate(videos):
    for suffix in ('mp4', 'gif'):
      video_io.write_video(str(out_dir / f'sample_{index:03d}.{suffix}'), video, fps=fps)
  with (out_dir / 'samples.npy').open('wb') as f:
    np.save(f, videos.astype(np.uint8), allow_pickle=False)
  (out_dir / 'prompts.json').write_text(json.dumps(list(prompts), indent=2))
  columns = min(len(videos), max(1, math.ceil(math.sqrt(len(videos)))))
  video_io.write_grid(str(out_dir / 'grid.gif'), list(videos), fps=fps, columns=columns)


def sample_to_dir(
  model: TextToVideo,
  prompts: Sequence[str],
  out: str,
  settings: SamplingSettings | None = None,
  *,
  num_samples: int = 1,
  image: np.ndarray | None = None,
  video: np.ndarray | None = None,
) -> np.ndarray:
  """The `videogen sample` job: generate, then write (process 0). Returns the videos."""
  videos = model.generate(prompts, settings, num_samples=num_samples, image=image, video=video)
  rows = [p for p in prompts for _ in range(num_samples)]
  if jax.process_index() == 0:
    write_samples(out, videos, rows, fps=model.fps)
    print(f'Wrote {len(videos)} samples of {videos.shape[1]} frames to {out}', flush=True)
  return videos
