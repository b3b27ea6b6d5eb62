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
