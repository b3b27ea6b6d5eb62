"""One sampling entry per task of a multi-task model (mixed into `TextToVideo`).

```
model = TextToVideo.load('runs/multitask/transformer')
model.unconditional(num_samples=4)
model.image_to_video(['a red circle moving left'], image)
model.predict(['a red circle moving left'], clip)        # the clip's first latent frames kept
model.interpolate(['a red circle moving left'], first_frame, last_frame)
model.inpaint(['a red circle moving left'], clip, mask)   # mask: bool [H, W] or [T, H, W], True = fill
model.outpaint(['a red circle moving left'], clip)
model.restore(['a red circle moving left'], degraded_clip)
model.restyle(['a green circle moving left'], clip)       # the clip in greyscale + the caption's colour
model.run_task('inpaint', prompts, video=clip, mask=mask) # by name (the CLI)
```

Inputs are uint8 RGB at any size (resized to the model's); clip conditions
need at least the model's clip length in frames (the first ones are used).
Every entry returns uint8 [len(prompts) * num_samples, T, H, W, 3]. Without
`settings`, a task samples with `model.default_settings(task)`: `config.sampling`
with the task's `config.sampling.per_task` entry over it. With
`settings.candidates` > 1, a task with a pixel condition (interpolate, inpaint,
outpaint, restore, restyle) returns, of that many samples, the one that best
reproduces its condition (interpolate's weighed by how steadily it moves), and
uncond the steadiest (`videogen.transformer.candidates`). With `settings.refine`
> 0, a task with a pixel condition then refines the sample it keeps, token by
token, against that condition (`videogen.transformer.refine`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from jax.experimental import multihost_utils

from videogen import vq
from videogen.transformer import candidates, refine, sampling, tasks

if TYPE_CHECKING:
  from videogen.transformer.inference import SamplingSettings


class TaskSampling:
  """Task entries of `TextToVideo`; they need a model trained on the task."""

  # --- entries -------------------------------------------------------------------

  def unconditional(
    self, settings: SamplingSettings | None = None, *, num_samples: int = 1
  ) -> np.ndarray:
    """Videos from nothing: no text (null text), no condition; guidance is off."""
    return self._task('uncond', [''], settings, num_samples)

  def image_to_video(
    self,
    prompts: Sequence[str],
    image: np.ndarray,
    settings: SamplingSettings | None = None,
    *,
    num_samples: int = 1,
  ) -> np.ndarray:
    """image: uint8 [H, W, 3], the first frame."""
    return self._one('i2v', prompts, settings, num_samples, image=image)

  def predict(
    self,
    prompts: Sequence[str],
    video: np.ndarray,
    settings: SamplingSettings | None = None,
    *,
    num_samples: int = 1,
  ) -> np.ndarray:
    """video: uint8 [T, H, W, 3]; its whole latent frames (up to one fewer than a
    clip has) are kept, the rest of the clip is predicted."""
    return self._one('predict', prompts, settings, num_samples, video=video)

  def interpolate(
    self,
    prompts: Sequence[str],
    first_frame: np.ndarray,
    last_frame: np.ndarray,
    settings: SamplingSettings | None = None,
    *,
    num_samples: int = 1,
  ) -> np.ndarray:
    """first_frame, last_frame: uint8 [H, W, 3]; the clip from one to the other."""
    return self._one(
      'interpolate', prompts, settings, num_samples, image=first_frame, last_frame=last_frame
    )

  def inpaint(
    self,
    prompts: Sequence[str],
    video: np.ndarray,
    mask: np.ndarray,
    settings: SamplingSettings | None = None,
    *,
    num_samples: int = 1,
  ) -> np.ndarray:
    """video: uint8 [T, H, W, 3]; mask: bool [H, W] (every frame) or [T, H, W],
    True where to fill. A token is filled when any of its pixels is."""
    return self._one('inpaint', prompts, settings, num_samples, video=video, mask=mask)

  def outpaint(
    self,
    prompts: Sequence[str],
    video: np.ndarray,
    settings: SamplingSettings | None = None,
    *,
    num_samples: int = 1,
  ) -> np.ndarray:
    """video: uint8 [T, H, W, 3]; regenerates `tasks.default_border(latent_shape)`
    latent tokens at every edge (a quarter of the shorter side)."""
    return self._one('outpaint', prompts, settings, num_samples, video=video)

  def restore(
    self,
    prompts: Sequence[str],
    video: np.ndarray,
    settings: SamplingSettings | None = None,
    *,
    num_samples: int = 1,
  ) -> np.ndarray:
    """video: uint8 [T, H, W, 3], a low-resolution (upscaled) or noisy clip -> clean."""
    return self._one('restore', prompts, settings, num_samples, video=video)

  def restyle(
    self,
    prompts: Sequence[str],
    video: np.ndarray,
    settings: SamplingSettings | None = None,
    *,
    num_samples: int = 1,
  ) -> np.ndarray:
    """video: uint8 [T, H, W, 3]; its greyscale version, coloured as the prompt says."""
    return self._one('restyle', prompts, settings, num_samples, video=video)

  def run_task(
    self,
    task: str,
    prompts: Sequence[str],
    settings: SamplingSettings | None = None,
    *,
    num_samples: int = 1,
    image: np.ndarray | None = None,
    video: np.ndarray | None = None,
    last_frame: np.ndarray | None = None,
    mask: np.ndarray | None = None,
  ) -> np.ndarray:
    """The entry of `task` by name. `image` is the first frame (i2v, interpolate);
    `video` the clip (predict, inpaint, outpaint, restore, restyle)."""
    if task == 't2v':
      _check_inputs(task, image=image, video=video, last_frame=last_frame, mask=mask)
      return self.generate(prompts, settings, num_samples=num_samples)
    if task == 'uncond':
      _check_inputs(task, image=image, video=video, last_frame=last_frame, mask=mask)
      return self.unconditional(settings, num_samples=num_samples)
    inputs = dict(image=image, video=video, last_frame=last_frame, mask=mask)
    return self._one(task, prompts, settings, num_samples, **inputs)

  def run_task_batch(
    self,
    task: str,
    prompts: Sequence[str],
    settings: SamplingSettings | None = None,
    **inputs: Sequence[np.ndarray],
  ) -> np.ndarray:
    """One sample per prompt, row i conditioned on the i-th of each input list
    (`image`, `video`, `last_frame`, `mask`, as for `run_task`); i2v and predict
    clips must keep the same number of latent frames."""
    canvas, prefix = self._batch_conditions(task, prompts, inputs)

    def ranked():
      return candidates.Condition.concatenate(
        [
          self._ranking_condition(task, **{name: values[i] for name, values in inputs.items()})
          for i in range(len(prompts))
        ]
      )

    return self._task(
      task, prompts, settings, 1, canvas=lambda _: canvas, prefix=prefix, ranked=ranked
    )

  def teacher_forced_task_batch(
    self,
    task: str,
    prompts: Sequence[str],
    targets: Sequence[np.ndarray],
    settings: SamplingSettings | None = None,
    **inputs: Sequence[np.ndarray],
  ) -> np.ndarray:
    """What `run_task_batch` would give if every earlier token were right: row i's
    most likely token at each position given the tokens of `targets[i]` (uint8
    [T, H, W, 3], the clip the task should produce) before it, guided as sampling
    is, decoded. Evaluation compares it with sampling to tell the model's own
    errors from those that compound while sampling. Returns uint8 [N, T, H, W, 3]."""
    if len(targets) != len(prompts):
      raise ValueError(f'{len(targets)} targets for {len(prompts)} prompts.')
    canvas, _ = self._batch_conditions(task, prompts, inputs)
    settings = settings or self.default_settings(task)
    settings.check()
    rows = len(prompts)
    wanted = jnp.concatenate([self._clip_tokens(np.asarray(t)) for t in targets])
    with self._context():
      text_emb, mask = self._embed_prompts(list(prompts))
      tokens = sampling.likeliest_tokens(
        self.graphdef,
        self.params,
        text_emb,
        mask,
        wanted.reshape(rows, -1),
        jnp.float32(settings.cfg_scale),
        self._task_prefix(task, rows, self.frames_per_clip, None, lambda _: canvas),
        guided=settings.cfg_scale != 1.0,
      )[0][..., 0]
    return self._decode_uint8(tokens.reshape(wanted.shape))

  def _batch_conditions(self, task, prompts, inputs) -> tuple[jax.Array, jax.Array | None]:
    """(canvas [N, t, h, w], kept first latent frames [N, m, h, w] or None): row i
    conditioned on the i-th of each input list."""
    if task in ('t2v', 'uncond'):
      raise ValueError(f'{task} has no conditions: use generate or unconditional.')
    for name, values in inputs.items():
      if len(values) != len(prompts):
        raise ValueError(f'{len(values)} {name} inputs for {len(prompts)} prompts.')
    rows = [
      self._condition(task, **{name: values[i] for name, values in inputs.items()})
      for i in range(len(prompts))
    ]
    prefixes = [p for _, p in rows]
    prefix = None if prefixes[0] is None else jnp.concatenate(prefixes)
    return jnp.concatenate([c for c, _ in rows]), prefix

  # --- conditions ----------------------------------------------------------------

  def latent_mask(self, mask: np.ndarray) -> np.ndarray:
    """Pixel mask bool [H, W] or [T, H, W] (any size, resized) -> bool [t, h, w]:
    a token is masked when any pixel of its frames and patch is."""
    mask = np.asarray(mask).astype(bool)
    frames = self.frames_per_clip
    if mask.ndim == 2:
      mask = np.broadcast_to(mask, (frames, *mask.shape))
    if mask.ndim != 3 or len(mask) < frames:
      raise ValueError(
        f'A mask is [H, W] or [T >= {frames}, H, W]; got shape {np.asarray(mask).shape}.'
      )
    data = self.config.data
    mask = (
      np.asarray(
        jax.image.resize(
          mask[:frames].astype(np.float32), (frames, data.height, data.width), 'nearest'
        )
      )
      > 0.5
    )
    t, h, w = self.latent_shape
    bounds = [0] + [self.tokenizer.num_frames(j) for j in range(1, t + 1)]
    per_frame = mask.reshape(frames, h, data.height // h, w, data.width // w).any(axis=(2, 4))
    return np.stack([per_frame[bounds[j] : bounds[j + 1]].any(axis=0) for j in range(t)])

  def _clip_tokens(self, video: np.ndarray, *, grey: bool = False) -> jax.Array:
    """int32 [1, t, h, w] of the first clip's worth of frames of uint8 `video`."""
    frames = self.frames_per_clip
    if len(video) < frames:
      raise ValueError(f'The video has {len(video)} frames; this task needs at least {frames}.')
    clip = jnp.asarray(self._resized(video[:frames]), jnp.float32)[None] / 127.5 - 1.0
    if grey:
      clip = tasks.greyscale(clip)
    return self._encode(clip)

  def _image_tokens(self, image: np.ndarray) -> jax.Array:
    """int32 [1, 1, h, w]: one frame encoded as an image."""
    frame = jnp.asarray(self._resized(image[None]), jnp.float32)[None] / 127.5 - 1.0
    return self._encode(frame)[:, :1]

  def _encode(self, video: jax.Array) -> jax.Array:
    with self._context():
      return _encode_video(self.tokenizer.graphdef, self._tokenizer_state, video).astype(jnp.int32)

  def _resized(self, video: np.ndarray) -> np.ndarray:
    data = self.config.data
    if video.shape[1:3] == (data.height, data.width):
      return video
    shape = (video.shape[0], data.height, data.width, 3)
    resized = jax.image.resize(video.astype(np.float32), shape, 'linear')
    return np.asarray(resized).round().clip(0, 255).astype(np.uint8)

  def _condition(self, task, *, image=None, video=None, last_frame=None, mask=None):
    """(canvas int32 [1, t, h, w], kept clip tokens [1, m, h, w] or None) of one condition."""
    _check_inputs(task, image=image, video=video, last_frame=last_frame, mask=mask)
    tasks.check_task(self.spec, task)
    spec = self.spec
    if task in ('i2v', 'predict'):
      clip = _rgb(image, 'image', ndim=3)[None] if task == 'i2v' else _rgb(video, 'video', ndim=4)
      with self._context():
        kept = self.prefix_tokens(clip, 1)
      padded = jnp.pad(kept, ((0, 0), (0, spec.latent_shape[0] - kept.shape[1]), (0, 0), (0, 0)))
      return tasks.frames_canvas(spec, padded, jnp.asarray([kept.shape[1]])), kept
    if task == 'interpolate':
      first = self._image_tokens(_rgb(image, 'first_frame', ndim=3))
      last = self._image_tokens(_rgb(last_frame, 'last_frame', ndim=3))
      return tasks.interpolate_canvas(spec, first, last), None
    tokens = self._clip_tokens(_rgb(video, 'video', ndim=4), grey=task == 'restyle')
    if task in ('inpaint', 'outpaint'):
      latent = self._fill_mask(task, mask)
      if not latent.any():
        raise ValueError('The inpainting mask covers no pixel; mark the region to fill.')
      return tasks.masked_canvas(spec, tokens, jnp.asarray(latent)[None]), None
    return tokens, None  # restore, restyle: the (degraded or greyscale) clip's tokens.

  def _fill_mask(self, task, mask) -> np.ndarray:
    """bool [t, h, w], the tokens inpaint (`mask`'s) or outpaint (the borders) fills."""
    if task == 'inpaint':
      return self.latent_mask(mask)
    return tasks.border_mask(self.latent_shape, tasks.default_border(self.latent_shape))

  def _ranking_condition(
    self, task, *, image=None, video=None, last_frame=None, mask=None
  ) -> candidates.Condition:
    """What `task`'s candidates are ranked against (inputs checked by `_condition`)."""
    if task == 'interpolate':
      frames = np.concatenate([self._resized(np.asarray(f)[None]) for f in (image, last_frame)])
      return candidates.condition(task, frames)
    clip = self._resized(np.asarray(video)[: self.frames_per_clip])
    keep = None
    if task in ('inpaint', 'outpaint'):
      keep = ~self.pixel_mask(self._fill_mask(task, mask))
    return candidates.condition(task, clip, keep)

  def pixel_mask(self, latent: np.ndarray) -> np.ndarray:
    """bool [T, H, W]: the pixels of the latent tokens marked in bool [t, h, w]."""
    t, h, w = latent.shape
    data = self.config.data
    ends = [self.tokenizer.num_frames(j) for j in range(1, t + 1)]  # Frames of j latent frames.
    latent_frame = np.searchsorted(ends, np.arange(self.frames_per_clip), side='right')
    return np.asarray(latent)[latent_frame].repeat(data.height // h, 1).repeat(data.width // w, 2)

  def _one(self, task, prompts, settings, num_samples, **inputs) -> np.ndarray:
    """`num_samples` per prompt, all conditioned on the same inputs."""
    canvas, prefix = self._condition(task, **inputs)
    rows = len(prompts) * num_samples
    tiled = None if prefix is None else jnp.repeat(prefix, rows, axis=0)
    return self._task(
      task,
      prompts,
      settings,
      num_samples,
      canvas=_tiled(canvas),
      prefix=tiled,
      ranked=lambda: self._ranking_condition(task, **inputs),
    )

  def _task(
    self, task, prompts, settings, num_samples, *, canvas=None, prefix=None, ranked=None
  ) -> np.ndarray:
    """Checks, then `_generate` with the task token and canvas: one sample, or the best
    of `settings.candidates` (whole clips or latent frame by latent frame), refined
    over `settings.refine` sweeps.

    Args:
      ranked: () -> the `candidates.Condition` of the prompts (tasks with a pixel
        condition; None: the task's alone, as for uncond).
    """
    tasks.check_task(self.spec, task)
    settings = settings or self.default_settings(task)
    settings.check()
    candidates.check(task, settings.candidates, settings.candidate_search, settings.refine)
    if not prompts:
      raise ValueError('No prompts to sample.')
    if num_samples < 1:
      raise ValueError(f'num_samples={num_samples} must be >= 1.')

    if settings.candidates == 1 and not settings.refine:
      return self._generate(prompts, settings, num_samples, task=task, canvas=canvas, prefix=prefix)
    num_frames = self._num_frames(settings)
    condition = ranked() if ranked is not None else candidates.Condition(task)
    search = self._search_frames if settings.candidate_search == 'frame' else self._search_clips
    if settings.candidates == 1:
      search = self._search_clips  # One candidate: the plain sample.
    tokens = search(task, prompts, settings, num_samples, canvas, prefix, condition, num_frames)
    if settings.refine:
      tokens = self._refine(
        task, prompts, settings, num_samples, canvas, condition, tokens, num_frames
      )
    return self._decoded(tokens, num_frames)

  def _drawn(self, task, prompts, settings, num_samples, canvas, prefix, latent_frames, k):
    """Candidate k's tokens, int32 [rows, latent_frames, h, w], gathered on every host."""
    tokens = self._generate_tokens(
      prompts,
      settings,
      num_samples,
      task=task,
      latent_frames=latent_frames,
      canvas=canvas,
      prefix=prefix,
      candidate=k,
    )
    return np.asarray(multihost_utils.process_allgather(tokens, tiled=True))

  def _decoded(self, tokens: np.ndarray, num_frames: int) -> np.ndarray:
    """uint8 [rows, num_frames, H, W, 3] of tokens int32 [rows, t, h, w]."""
    return self._decode_uint8(self._place(tokens)[0])[:, :num_frames]

  def _search_clips(
    self, task, prompts, settings, num_samples, canvas, prefix, condition, num_frames
  ) -> np.ndarray:
    """The tokens of the best of `settings.candidates` whole samples, row by row.

    One batch per candidate, so memory stays that of one sample per output.
    """
    count = settings.candidates
    latent_frames = self.latent_frames_for(num_frames)
    best = best_score = None
    for k in range(count):
      drawn = self._drawn(task, prompts, settings, num_samples, canvas, prefix, latent_frames, k)
      if count == 1:
        return drawn
      score = candidates.scores(self._decoded(drawn, num_frames), condition)
      if best is None:
        best, best_score = drawn, score
        continue
      best = np.where((score < best_score)[:, None, None, None], drawn, best)
      best_score = np.minimum(score, best_score)
      logging.info(
        '%s: candidate %d of %d; mean score of the best %.3g',
        task,
        k + 1,
        count,
        float(best_score.mean()),
      )
    return best

  def _search_frames(
    self, task, prompts, settings, num_samples, canvas, prefix, condition, num_frames
  ) -> np.ndarray:
    """`candidates.search_frames` over the clip's latent frames: the chosen tokens.

    The k-th draw of latent frame j comes from candidate j * count + k, so the
    first latent frame's draws are those of the whole-clip search.
    """
    count = settings.candidates

    def draw(frame, k, chosen):
      kept = None if chosen is None else self._place(chosen)[0]
      return self._drawn(
        task, prompts, settings, num_samples, canvas, kept, frame + 1, frame * count + k
      )

    def score(tokens):
      clips = self._decode_uint8(self._place(tokens)[0])
      return candidates.scores(clips, condition.first_frames(clips.shape[1]))

    return candidates.search_frames(draw, score, self.latent_frames_for(num_frames), count)

  def _refine(
    self, task, prompts, settings, num_samples, canvas, condition, tokens, num_frames
  ) -> np.ndarray:
    """`refine.refine` of tokens int32 [rows, t, h, w] against `condition`, trying
    the model's `settings.refine_top_k` likeliest tokens at each generated position
    whose probability is at least `settings.refine_min_prob`."""
    rows = len(tokens)
    with self._context():
      text_emb, mask = self._embed_prompts([p for p in prompts for _ in range(num_samples)])
      task_prefix = self._task_prefix(task, rows, num_frames, None, canvas)
      _, keep = tasks.kept_tokens(self.spec, task_prefix)
    editable = ~np.asarray(multihost_utils.process_allgather(keep, tiled=True))

    def alternatives(current):
      with self._context():
        likeliest, probs = sampling.likeliest_tokens(
          self.graphdef,
          self.params,
          text_emb,
          mask,
          self._place(current.reshape(rows, -1))[0],
          jnp.float32(settings.cfg_scale),
          task_prefix,
          guided=settings.cfg_scale != 1.0,
          count=settings.refine_top_k,
        )
      likeliest, probs = (
        np.asarray(multihost_utils.process_allgather(a, tiled=True)) for a in (likeliest, probs)
      )
      # A token less likely than the floor is not tried: in its place, the current one.
      likeliest = np.where(
        probs >= settings.refine_min_prob, likeliest, current.reshape(rows, -1, 1)
      )
      return likeliest.reshape(*current.shape, -1)

    def score(current):
      return candidates.scores(self._decoded(current, num_frames), condition)

    refined, _ = refine.refine(
      tokens,
      editable.reshape(tokens.shape),
      alternatives,
      score,
      settings.refine,
      label=f'{task}: refine',
    )
    return refined

  def _task_prefix(self, task, rows, num_frames, prefix, canvas) -> jax.Array:
    """int32 [rows, 1 + t*h*w]: the task token and conditioning canvas."""
    spec = self.spec
    if task not in ('t2v', 'uncond') and self.latent_frames_for(num_frames) > spec.latent_shape[0]:
      raise ValueError(
        f'{task} samples one clip ({self.frames_per_clip} frames); only t2v and uncond '
        'make longer videos.'
      )
    if canvas is not None:
      tokens = canvas(rows)
    elif prefix is not None:
      kept = prefix.shape[1]
      padded = jnp.pad(prefix, ((0, 0), (0, spec.latent_shape[0] - kept), (0, 0), (0, 0)))
      tokens = tasks.frames_canvas(spec, padded, jnp.full((rows,), kept))
    else:
      tokens = tasks.blank_canvas(spec, rows)
    return tasks.task_prefix(spec, jnp.full((rows,), tasks.TASKS.index(task)), tokens)


_NEEDS = {
  't2v': (),
  'uncond': (),
  'i2v': ('image',),
  'interpolate': ('image', 'last_frame'),
  'predict': ('video',),
  'inpaint': ('video', 'mask'),
  'outpaint': ('video',),
  'restore': ('video',),
  'restyle': ('video',),
}


def _check_inputs(task: str, **given) -> None:
  """ValueError unless exactly the inputs `task` takes are given."""
  if task not in tasks.TASKS:
    raise ValueError(f'Unknown task {task!r}; valid: {", ".join(tasks.TASKS)}.')
  wanted = _NEEDS[task]
  missing = [name for name in wanted if given.get(name) is None]
  extra = [name for name, value in given.items() if value is not None and name not in wanted]
  if missing or extra:
    raise ValueError(
      f'Task {task} takes {", ".join(wanted) or "no condition"}; '
      + (f'missing {", ".join(missing)}' if missing else f'not {", ".join(extra)}')
    )


def _tiled(tokens: jax.Array):
  """A canvas function: `tokens` [1, t, h, w] repeated for every row."""
  return lambda rows: jnp.repeat(tokens, rows, axis=0)


def _rgb(array: np.ndarray, name: str, *, ndim: int) -> np.ndarray:
  array = np.asarray(array)
  layout = '[H, W, 3]' if ndim == 3 else '[T, H, W, 3]'
  if array.ndim != ndim or array.shape[-1] != 3:
    raise ValueError(f'{name} must be RGB {layout}; got shape {array.shape}.')
  return array


_encode_video = jax.jit(vq.encode_fn, static_argnums=0)
