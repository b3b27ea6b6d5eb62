"""Video tasks in one model: a task token and a conditioning canvas before the clip.

A multi-task model (`config.model.tasks` with any task but `t2v` > 0) reads

```
[task token] [canvas: t*h*w tokens] [BOS] [clip tokens ...]
```

The canvas is aligned with the clip: canvas token j sits at the (t, h, w)
coordinates of clip token j and holds the conditioning token there (from the
frozen video tokenizer) or the mask token where nothing is given. The loss
covers the generated clip only. Text goes through cross-attention as for
text-to-video. Prefix attention is causal, like the rest of the sequence.

| task        | canvas                                                        |
|-------------|---------------------------------------------------------------|
| t2v, uncond | all mask (uncond also sees no text: the null text, always)    |
| i2v         | latent frame 0 (the first frame, encoded as an image)         |
| predict     | the first k latent frames, 1 <= k < t                         |
| interpolate | first and last frame, each encoded as an image, at t=0, t-1   |
| inpaint     | the clip's tokens, a space-time box masked                    |
| outpaint    | the clip's tokens, the borders masked                         |
| restore     | tokens of the clip downscaled x2 then upscaled, or noisy      |
| restyle     | tokens of the greyscale clip (the caption names the colour)   |

For i2v and predict the given latent frames are also the first tokens of the
generated clip (fixed when sampling, out of the loss when training).
A model trained on `t2v` alone has none of this: no extra embeddings, no prefix.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Iterable, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from videogen.transformer.layers import TransformerSpec

TASKS = (
  't2v',
  'uncond',
  'i2v',
  'predict',
  'interpolate',
  'inpaint',
  'outpaint',
  'restore',
  'restyle',
)
# Tasks whose condition is a whole clip (the canvas covers every latent frame).
CLIP_TASKS = ('inpaint', 'outpaint', 'restore', 'restyle')
RESTORE_NOISE_STD = 0.2  # Gaussian noise of `restore`, in [-1, 1] pixel units.


def active_tasks(weights: Mapping[str, float]) -> tuple[str, ...]:
  """Tasks with weight > 0, in `TASKS` order.

  Raises:
    ValueError: an unknown task, a negative weight, or none > 0.
  """
  weights = dict(weights)
  _check_known(weights)
  negative = [name for name, weight in weights.items() if weight < 0]
  if negative:
    raise ValueError(f'Task weights must be >= 0; got {negative}')
  active = tuple(name for name in TASKS if weights.get(name, 0.0) > 0)
  if not active:
    raise ValueError('config.model.tasks: at least one task needs a weight > 0.')
  return active


def _check_known(names: Iterable[str]) -> None:
  unknown = sorted(set(names) - set(TASKS))
  if unknown:
    raise ValueError(f'Unknown tasks {unknown}; valid: {",".join(TASKS)}')


def parse_task_list(names: str) -> tuple[str, ...]:
  """Task names from a comma-separated list ('' = every task), in `TASKS` order.

  Raises:
    ValueError: an unknown task name.
  """
  given = [name.strip() for name in names.split(',') if name.strip()]
  _check_known(given)
  return tuple(name for name in TASKS if not given or name in given)


def rows_of(names: str, task: jax.Array) -> jax.Array:
  """bool [batch]: the rows whose task (int32 [batch], index into `TASKS`) is in `names`.

  `names` is a `parse_task_list` string ('' = every task).
  """
  ids = jnp.asarray([TASKS.index(name) for name in parse_task_list(names)], jnp.int32)
  return jnp.isin(task, ids)


def task_id(spec: TransformerSpec, name: str) -> int:
  """Input token id of task `name` (multi-task models only)."""
  return spec.vocab_size + 2 + TASKS.index(name)


def mask_id(spec: TransformerSpec) -> int:
  """Input token id of a canvas position with nothing given."""
  return spec.vocab_size + 1


def check_task(spec: TransformerSpec, name: str) -> None:
  """ValueError unless the model was trained on task `name`."""
  if name not in TASKS:
    raise ValueError(f'Unknown task {name!r}; valid: {", ".join(TASKS)}.')
  if name not in spec.tasks:
    raise ValueError(
      f'This model was trained on {", ".join(spec.tasks)}, not {name} '
      f'(train it with config.model.tasks.{name} > 0).'
    )


# --- canvases ------------------------------------------------------------------


def blank_canvas(spec: TransformerSpec, batch: int) -> jax.Array:
  """int32 [batch, t, h, w], all mask."""
  return jnp.full((batch, *spec.latent_shape), mask_id(spec), jnp.int32)


def frames_canvas(spec: TransformerSpec, tokens: jax.Array, num_given: jax.Array) -> jax.Array:
  """The first `num_given` latent frames of `tokens` [batch, t, h, w], mask after."""
  frame = jnp.arange(spec.latent_shape[0])[None, :, None, None]
  given = frame < jnp.asarray(num_given)[:, None, None, None]
  return jnp.where(given, tokens, mask_id(spec)).astype(jnp.int32)


def interpolate_canvas(spec: TransformerSpec, first: jax.Array, last: jax.Array) -> jax.Array:
  """first, last: int32 [batch, 1, h, w] image tokens -> canvas with them at t=0 and t-1."""
  frames = spec.latent_shape[0]
  canvas = blank_canvas(spec, first.shape[0])
  canvas = canvas.at[:, frames - 1].set(last[:, 0])
  return canvas.at[:, 0].set(first[:, 0])


def masked_canvas(spec: TransformerSpec, tokens: jax.Array, mask: jax.Array) -> jax.Array:
  """tokens [batch, t, h, w] with mask (bool, same shape, True = to fill) -> mask token."""
  return jnp.where(mask, mask_id(spec), tokens).astype(jnp.int32)


def box_mask(latent_shape, box: tuple[int, int, int, int, int, int]) -> np.ndarray:
  """bool [t, h, w], True inside the half-open latent box (t0, t1, y0, y1, x0, x1)."""
  t0, t1, y0, y1, x0, x1 = box
  mask = np.zeros(latent_shape, bool)
  mask[t0:t1, y0:y1, x0:x1] = True
  return mask


def border_mask(latent_shape, border: int) -> np.ndarray:
  """bool [t, h, w], True within `border` tokens of the frame's edge (outpainting)."""
  _, height, width = latent_shape
  y = np.arange(height)[:, None]
  x = np.arange(width)[None, :]
  inside = (y >= border) & (y < height - border) & (x >= border) & (x < width - border)
  return np.broadcast_to(~inside, latent_shape).copy()


def default_border(latent_shape) -> int:
  """The border outpainting fills by default: a quarter of the shorter side (>= 1)."""
  return max(1, min(latent_shape[1:]) // 4)


def random_box_masks(key: jax.Array, batch: int, latent_shape) -> jax.Array:
  """bool [batch, t, h, w]: one box per clip, 1 to ceil(n/2) tokens along each axis."""
  axes = []
  for size, axis_key in zip(latent_shape, jax.random.split(key, 3), strict=True):
    start_key, length_key = jax.random.split(axis_key)
    length = jax.random.randint(length_key, (batch,), 1, (size + 1) // 2 + 1)
    start = jax.random.randint(start_key, (batch,), 0, size - length + 1)
    index = jnp.arange(size)[None, :]
    axes.append((index >= start[:, None]) & (index < (start + length)[:, None]))
  frames, rows, cols = axes
  return frames[:, :, None, None] & rows[:, None, :, None] & cols[:, None, None, :]


def random_border_masks(key: jax.Array, batch: int, latent_shape) -> jax.Array:
  """bool [batch, t, h, w]: borders of 1 to `default_border` tokens masked, all frames."""
  _, height, width = latent_shape
  border = jax.random.randint(key, (batch,), 1, default_border(latent_shape) + 1)[:, None]
  rows = jnp.arange(height)[None, :]
  cols = jnp.arange(width)[None, :]
  keep_rows = (rows >= border) & (rows < height - border)
  keep_cols = (cols >= border) & (cols < width - border)
  inside = keep_rows[:, :, None] & keep_cols[:, None, :]
  return jnp.broadcast_to(~inside[:, None], (batch, *latent_shape))


def task_prefix(spec: TransformerSpec, task: jax.Array, canvas: jax.Array) -> jax.Array:
  """The prefix inputs: int32 [batch, 1 + t*h*w] = task token, then the canvas.

  Args:
    task: int32 [batch], index into `TASKS`.
    canvas: int32 [batch, t, h, w].
  """
  token = spec.vocab_size + 2 + jnp.asarray(task, jnp.int32)
  flat = canvas.reshape(canvas.shape[0], -1).astype(jnp.int32)
  return jnp.concatenate([token[:, None], flat], axis=1)


# Tasks whose output keeps the canvas's given tokens (the clip outside the mask):
# sampling copies them, so the unmasked video is the tokenizer's own. The loss still
# counts them: predicting them is copying practice that restore and restyle share
# (without it, restore's PSNR gain fell from +0.6 to -3.3 dB on the shapes model).
KEEP_CANVAS_TASKS = ('inpaint', 'outpaint')


def kept_tokens(spec: TransformerSpec, prefix: jax.Array) -> tuple[jax.Array, jax.Array]:
  """The clip tokens a task sequence keeps from its canvas.

  Args:
    prefix: int32 [batch, 1 + t*h*w], `task_prefix`'s task token and canvas.

  Returns:
    (tokens int32 [batch, t*h*w], keep bool [batch, t*h*w]): keep is True at
    the given (unmasked) canvas positions of `KEEP_CANVAS_TASKS` rows.
  """
  prefix = jnp.asarray(prefix, jnp.int32)
  task = prefix[:, 0] - (spec.vocab_size + 2)
  keeps = jnp.isin(task, jnp.asarray([TASKS.index(name) for name in KEEP_CANVAS_TASKS]))
  canvas = prefix[:, 1:]
  return canvas, keeps[:, None] & (canvas != mask_id(spec))


# --- pixel degradations (video in [-1, 1], [batch, T, H, W, 3]) --------------------


def downscale_upscale(video: jax.Array) -> jax.Array:
  """Each frame downscaled x2 (2x2 mean), then upscaled back (bilinear)."""
  batch, frames, height, width, channels = video.shape
  small = video.reshape(batch, frames, height // 2, 2, width // 2, 2, channels).mean(axis=(3, 5))
  return jax.image.resize(small, video.shape, 'linear').astype(video.dtype)


def add_noise(video: jax.Array, key: jax.Array, std: float = RESTORE_NOISE_STD) -> jax.Array:
  """Gaussian pixel noise, clipped to [-1, 1]."""
  noise = std * jax.random.normal(key, video.shape, video.dtype)
  return jnp.clip(video + noise, -1.0, 1.0)


def greyscale(video: jax.Array) -> jax.Array:
  """Luma (ITU-R BT.601) in all three channels."""
  weights = jnp.asarray([0.299, 0.587, 0.114], video.dtype)
  luma = jnp.sum(video * weights, axis=-1, keepdims=True)
  return jnp.broadcast_to(luma, video.shape)


# --- training ------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class TaskBatch:
  """A multi-task training batch.

  Attributes:
    inputs: int32 [batch, prefix_length + t*h*w]: task prefix, BOS, clip tokens but the last.
    targets: int32 [batch, t*h*w]: the clean clip's tokens.
    loss_mask: float32 [batch, t*h*w]: 1 at generated tokens (0 at the given
      frames of i2v/predict, which sampling fixes).
    task: int32 [batch], index into `TASKS`.
    no_text: bool [batch], rows that must see the null text (uncond).
  """

  inputs: jax.Array
  targets: jax.Array
  loss_mask: jax.Array
  task: jax.Array
  no_text: jax.Array


# Tasks whose condition needs another encoding of the clip's pixels.
DEGRADE_TASKS = ('restore', 'restyle')


@dataclasses.dataclass(frozen=True)
class TaskLayout:
  """Which rows of a training batch carry which task (static, from the weights).

  Each task gets floor(batch * p) fixed rows, in `TASKS` order; the rest of the
  rows (`free`, at the end) draw their task from the fractional parts, so each
  task's expected count is exactly batch * p. Fixed rows let the step encode
  the extra pixels that only some tasks need (a degraded clip, the first and
  last frames) for those rows alone: drawn per clip, every row would need them.
  The shapes multi-task config's batch of 32 encodes 40 clips and 10 frames
  instead of 64 and 64 (0.55 vs 0.50 steps/s on 2 CPU cores).

  Attributes:
    fixed: int32 [batch - free], the task (index into `TASKS`) of each fixed row.
    free: rows whose task is drawn.
    free_probs: float [len(TASKS)], their task distribution.
  """

  fixed: np.ndarray
  free: int
  free_probs: np.ndarray

  @classmethod
  def create(cls, weights: Mapping[str, float], batch: int) -> TaskLayout:
    active = active_tasks(weights)
    probs = np.zeros(len(TASKS))
    for name in active:
      probs[TASKS.index(name)] = weights[name]
    expected = batch * probs / probs.sum()
    counts = np.floor(expected + 1e-9).astype(np.int64)
    fixed = np.repeat(np.arange(len(TASKS)), counts).astype(np.int32)
    free = batch - len(fixed)
    residual = np.clip(expected - counts, 0.0, None)
    free_probs = residual / residual.sum() if free else probs / probs.sum()
    return cls(fixed, free, free_probs)

  def rows(self, names: tuple[str, ...]) -> np.ndarray:
    """The rows that may carry one of `names`: their fixed rows, then every free row."""
    ids = [TASKS.index(name) for name in names]
    fixed = np.flatnonzero(np.isin(self.fixed, ids))
    free = len(self.fixed) + np.arange(self.free)
    if not self.free_probs[ids].any():
      free = free[:0]
    return np.concatenate([fixed, free]).astype(np.int32)

  def draw(self, key: jax.Array) -> jax.Array:
    """int32 [batch]: each row's task."""
    free = jax.random.choice(key, len(TASKS), (self.free,), p=jnp.asarray(self.free_probs))
    return jnp.concatenate([jnp.asarray(self.fixed), free.astype(jnp.int32)])


def build_task_batch(
  spec: TransformerSpec,
  key: jax.Array,
  video: jax.Array,
  encode: Callable[[jax.Array], jax.Array],
  weights: Mapping[str, float],
) -> TaskBatch:
  """Lays the tasks out over the batch and builds each clip's prefix (inside the jitted step).

  Args:
    spec: the multi-task model's spec.
    key: PRNG key.
    video: float [batch, T, H, W, 3] in [-1, 1].
    encode: video [n, T', H, W, 3] -> int32 tokens [n, t', h, w] (frozen tokenizer).
    weights: task -> weight (`config.model.tasks`), laid out by `TaskLayout`.

  Returns:
    A `TaskBatch`.
  """
  active = active_tasks(weights)
  batch = video.shape[0]
  frames = spec.latent_shape[0]
  layout = TaskLayout.create(weights, batch)
  keys = jax.random.split(key, 6)
  task = layout.draw(keys[0])

  def is_task(name):
    return task == TASKS.index(name)

  def per_clip(flags, x):
    return flags.reshape((flags.shape[0],) + (1,) * (x.ndim - 1))

  # The clean clips and, for the rows that may restore or restyle, their degraded pixels.
  degrade_rows = layout.rows(DEGRADE_TASKS)
  sub_video, sub_task = video[degrade_rows], task[degrade_rows]
  degraded = sub_video
  if 'restore' in active:
    noisy = jax.random.bernoulli(keys[1], 0.5, (len(degrade_rows),))
    restored = jnp.where(
      per_clip(noisy, sub_video), add_noise(sub_video, keys[2]), downscale_upscale(sub_video)
    )
    degraded = jnp.where(per_clip(sub_task == TASKS.index('restore'), degraded), restored, degraded)
  if 'restyle' in active:
    is_restyle = sub_task == TASKS.index('restyle')
    degraded = jnp.where(per_clip(is_restyle, degraded), greyscale(sub_video), degraded)
  tokens, degraded_tokens = jnp.split(encode(jnp.concatenate([video, degraded])), [batch])
  tokens = tokens.astype(jnp.int32)

  num_given = jnp.zeros((batch,), jnp.int32)
  if 'i2v' in active:
    num_given = jnp.where(is_task('i2v'), 1, num_given)
  if 'predict' in active:
    num_predict = jax.random.randint(keys[3], (batch,), 1, max(frames, 2))
    num_given = jnp.where(is_task('predict'), num_predict, num_given)
  canvas = frames_canvas(spec, tokens, num_given)
  if 'interpolate' in active:
    rows = layout.rows(('interpolate',))
    images = jnp.concatenate([video[rows, :1], video[rows, -1:]])
    first, last = jnp.split(encode(images)[:, :1].astype(jnp.int32), 2)
    interpolated = canvas.at[rows].set(interpolate_canvas(spec, first, last))
    canvas = jnp.where(per_clip(is_task('interpolate'), canvas), interpolated, canvas)
  if 'inpaint' in active:
    box = random_box_masks(keys[4], batch, spec.latent_shape)
    canvas = jnp.where(
      per_clip(is_task('inpaint'), canvas), masked_canvas(spec, tokens, box), canvas
    )
  if 'outpaint' in active:
    border = random_border_masks(keys[5], batch, spec.latent_shape)
    canvas = jnp.where(
      per_clip(is_task('outpaint'), canvas), masked_canvas(spec, tokens, border), canvas
    )
  if 'restore' in active or 'restyle' in active:
    conditions = tokens.at[degrade_rows].set(degraded_tokens.astype(jnp.int32))
    given = is_task('restore') | is_task('restyle')
    canvas = jnp.where(per_clip(given, canvas), conditions, canvas)

  flat = tokens.reshape(batch, -1)
  bos = jnp.full((batch, 1), spec.bos_id, jnp.int32)
  prefix = task_prefix(spec, task, canvas)
  inputs = jnp.concatenate([prefix, bos, flat[:, :-1]], axis=1)
  frame_of_token = jnp.repeat(jnp.arange(frames), spec.tokens_per_frame)[None, :]
  loss_mask = (frame_of_token >= num_given[:, None]).astype(jnp.float32)
  return TaskBatch(inputs, flat, loss_mask, task, is_task('uncond'))
