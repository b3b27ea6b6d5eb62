"""Sampling videos from a trained transformer workdir (`videogen sample`).

`Sampler.load(workdir)` needs nothing but the workdir: its `config.json`
names the tokenizer checkpoint, and the T5 encoder is the one the run used
(`config.text.path`, or the offline default saved in `workdir/text_encoder`).
The checkpoint may come from any mesh; sampling runs on one device.
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from etils import epath
from flax import nnx

from videogen import config_lib
from videogen.data import video_io
from videogen.parallel import mesh as mesh_lib
from videogen.train import checkpointing
from videogen.transformer import sampling
from videogen.transformer.model import Transformer
from videogen.transformer.task import TransformerTask


@dataclasses.dataclass
class SampleSettings:
  """How to sample; None fields take the workdir's `config.sampling` values."""

  cfg_scale: float | None = None
  temperature: float | None = None
  top_k: int | None = None
  top_p: float | None = None
  seed: int = 0


def _single_device_mesh() -> jax.sharding.Mesh:
  config = config_lib.mesh_config()
  config.fsdp = 1
  return mesh_lib.create_mesh(config, devices=jax.local_devices()[:1])


class Sampler:
  """A trained text-to-video model: prompts in, uint8 videos out."""

  def __init__(self, task: TransformerTask, params, model_state):
    self.task = task
    self.config = task.config
    self.params = params
    self.model_state = model_state
    self._encode_text = jax.jit(task._text_embeddings)
    self._encode_video = jax.jit(
      lambda state, video: task.frozen.encode_video(task._tokenizer_graphdef, state, video)
    )

  @classmethod
  def load(cls, workdir: str) -> Sampler:
    """Loads the latest checkpoint (EMA weights when kept) of `workdir`."""
    config = checkpointing.read_config(workdir)
    if config.stage != 'transformer':
      raise ValueError(
        f'{workdir} is a {config.stage!r} workdir; sampling needs a transformer one.'
      )
    task = TransformerTask(config, _single_device_mesh(), workdir=workdir)
    abstract = nnx.eval_shape(lambda: Transformer(task.spec, rngs=nnx.Rngs(0)))
    _, abstract_params, abstract_state = nnx.split(abstract, nnx.Param, ...)
    params, model_state = checkpointing.restore_model(workdir, abstract_params, abstract_state)
    logging.info('Loaded %s (step %d).', workdir, checkpointing.latest_step(workdir))
    return cls(task, params, model_state)

  @property
  def frames_per_clip(self) -> int:
    return self.config.data.num_frames

  def latent_frames_for(self, num_frames: int) -> int:
    """Latent frames that decode to at least `num_frames` frames."""
    tokenizer = self.task.frozen.tokenizer
    latent = 1
    while tokenizer.num_frames(latent) < num_frames:
      latent += 1
    return latent

  def prefix_tokens(self, video: np.ndarray, batch: int) -> jax.Array:
    """Tokens of a conditioning clip (or one frame), repeated `batch` times.

    Args:
      video: uint8 [T, H, W, 3] frames at the model's resolution (a single
        image is [1, H, W, 3]); 1 + 4k frames give 1 + k latent frames.
      batch: rows to make.
    """
    data = self.config.data
    if video.shape[1:3] != (data.height, data.width):
      video = (
        np.asarray(
          jax.image.resize(
            video.astype(np.float32),
            (video.shape[0], data.height, data.width, 3),
            'linear',
          )
        )
        .round()
        .clip(0, 255)
        .astype(np.uint8)
      )
    tokenizer = self.task.frozen.tokenizer
    # As many whole latent frames as the clip covers, leaving one to generate.
    latent = 1
    while latent + 1 < self.task.latent_shape[0] and tokenizer.num_frames(latent + 1) <= len(video):
      latent += 1
    clip = jnp.asarray(video[: tokenizer.num_frames(latent)], jnp.float32)[None] / 127.5 - 1.0
    tokens = self._encode_video(tokenizer.state, clip)[:, :latent]
    return jnp.repeat(tokens, batch, axis=0)

  def generate(
    self,
    prompts: Sequence[str],
    *,
    num_samples: int = 1,
    settings: SampleSettings | None = None,
    prefix_video: np.ndarray | None = None,
    num_frames: int | None = None,
  ) -> np.ndarray:
    """Samples `num_samples` videos per prompt.

    Args:
      prompts: text prompts.
      num_samples: videos per prompt.
      settings: sampling settings (defaults from the workdir's config).
      prefix_video: uint8 [T, H, W, 3] first frame(s) kept fixed
        (image-to-video when T = 1, continuation otherwise).
      num_frames: frames to generate; more than the training clip slides a
        window over latent frames (a long video).

    Returns:
      uint8 [len(prompts) * num_samples, T, H, W, 3], prompt-major.
    """
    if not prompts:
      raise ValueError('No prompts to sample.')
    settings = settings or SampleSettings()
    defaults = self.config.sampling
    rows = [p for p in prompts for _ in range(num_samples)]
    ids, mask = self.task.text_tokenizer()(rows)
    text_emb = self._encode_text(self.task.frozen.text_encoder.state, ids, mask)
    latent_frames = self.latent_frames_for(num_frames) if num_frames else None
    prefix = self.prefix_tokens(prefix_video, len(rows)) if prefix_video is not None else None
    cfg_scale = defaults.cfg_scale if settings.cfg_scale is None else settings.cfg_scale
    tokens = sampling.sample_tokens(
      (self.task.graphdef, self.params),
      text_emb,
      jnp.asarray(mask),
      latent_shape=self.task.latent_shape,
      num_latent_frames=latent_frames,
      prefix_tokens=prefix,
      cfg_scale=None if cfg_scale == 1.0 else cfg_scale,
      temperature=defaults.temperature if settings.temperature is None else settings.temperature,
      top_k=defaults.top_k if settings.top_k is None else settings.top_k,
      top_p=defaults.top_p if settings.top_p is None else settings.top_p,
      rng=jax.random.key(settings.seed),
      window_prefix_frames=defaults.window_prefix_frames,
    )
    video = self.task.frozen.tokenizer.decode_uint8(tokens)
    if num_frames:
      video = video[:, :num_frames]
    return np.asarray(video)


def read_conditioning(first_frame: str | None, prefix_video: str | None) -> np.ndarray | None:
  """uint8 [T, H, W, 3] from `--first_frame IMG` or `--prefix_video VIDEO`."""
  if first_frame and prefix_video:
    raise ValueError('Give --first_frame or --prefix_video, not both.')
  if first_frame:
    from PIL import Image

    with Image.open(first_frame) as image:
      return np.asarray(image.convert('RGB'))[None]
  if prefix_video:
    return video_io.read_video(prefix_video)
  return None


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
  workdir: str,
  prompts: Sequence[str],
  out: str,
  *,
  num_samples: int = 1,
  cfg_scale: float | None = None,
  temperature: float | None = None,
  top_k: int | None = None,
  top_p: float | None = None,
  seed: int = 0,
  first_frame: str | None = None,
  prefix_video: str | None = None,
  num_frames: int | None = None,
) -> np.ndarray:
  """The `videogen sample` job: load, generate, write. Returns the videos."""
  sampler = Sampler.load(workdir)
  settings = SampleSettings(cfg_scale, temperature, top_k, top_p, seed)
  videos = sampler.generate(
    prompts,
    num_samples=num_samples,
    settings=settings,
    prefix_video=read_conditioning(first_frame, prefix_video),
    num_frames=num_frames,
  )
  rows = [p for p in prompts for _ in range(num_samples)]
  if jax.process_index() == 0:
    write_samples(out, videos, rows, fps=sampler.config.sampling.fps)
    print(f'Wrote {len(videos)} samples of {videos.shape[1]} frames to {out}', flush=True)
  return videos
