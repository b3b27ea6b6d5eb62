"""Per-task evaluation of a multi-task shapes model, from pixels, on held-out clips.

`evaluate_tasks(model, config, split)` samples every task the model was
trained on (but t2v, which `videogen eval`'s alignment covers) with one
held-out clip per row, and scores it with the checks of
`videogen.eval.shapes_eval`:

| task        | figures (targets of the multi-task issue)                           |
|-------------|---------------------------------------------------------------------|
| interpolate | PSNR of the generated first/last frames vs the given ones;          |
|             | clips whose objects stay within 2 px of the straight path (>= 80%)  |
| predict     | objects that keep moving in the clip's direction (>= 90%)           |
| inpaint,    | unmasked PSNR vs the clip minus the tokenizer reconstruction's      |
| outpaint    | (>= -1 dB); objects tracked continuously through the mask (>= 80%); |
|             | reference: the same for a fill off by one token (the clip's tokens  |
|             | moved one token sideways), `shifted_fill_psnr_minus_recon`; clips   |
|             | with a patch, in any frame, of a colour the caption does not name   |
|             | (`extra_objects`; the reconstruction's: `recon_extra_objects`)      |
| restore     | PSNR gain of the result over the degraded input (>= 3 dB);          |
|             | references: the tokenizer's reconstruction of the degraded input    |
|             | (copying the condition, `copy_psnr_gain`) and of the clean clip     |
|             | (every token right, `recon_psnr_gain`); the model's most likely     |
|             | tokens given the clean clip's earlier ones (`teacher_forced_psnr_   |
|             | gain`: sampling without compounding errors)                         |
| restyle     | colour and motion of the caption (>= 90% each); references: the     |
|             | tokenizer's reconstruction of the clip (`recon_*`) and the model's  |
|             | most likely tokens given the clip's earlier ones                    |
|             | (`teacher_forced_*`)                                                |
| i2v         | the caption's colour, shape and motion (alignment)                  |
| uncond      | valid samples: objects with a colour, a shape, a steady motion      |
|             | (>= 90%); reference: the held-out clips' tokenizer reconstructions  |
|             | that pass the same check (`recon_valid`)                            |
"""

from __future__ import annotations

from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from videogen.data import shapes
from videogen.data.config import EVAL_MASK
from videogen.eval import shapes_eval
from videogen.transformer import tasks

NUM_CLIPS = 32


def held_out_clips(config, split: str, count: int) -> tuple[np.ndarray, list[str]]:
  """uint8 [count, T, H, W, 3] clips of `split` and their captions (the eval pipeline's order)."""
  from videogen.data import pipeline  # noqa: PLC0415  (TFDS, grain)

  videos, captions = [], []
  for batch in pipeline.create_iterator(config, split, train=False):
    real = np.asarray(batch.get(EVAL_MASK, np.ones(len(batch['video'])))) > 0  # Not padding.
    videos.extend(shapes_eval.to_uint8(np.asarray(batch['video'])[real]))
    captions.extend(str(c) for c, keep in zip(batch['caption'], real, strict=True) if keep)
    if len(videos) >= count:
      break
  return np.stack(videos[:count]), captions[:count]


def degrade(videos: np.ndarray, seed: int = 0) -> np.ndarray:
  """The restore task's inputs: even rows x2 down/up-scaled, odd rows noisy (uint8)."""
  clips = jnp.asarray(videos, jnp.float32) / 127.5 - 1.0
  down = tasks.downscale_upscale(clips)
  noisy = tasks.add_noise(clips, jax.random.key(seed))
  odd = (jnp.arange(len(videos)) % 2 == 1)[:, None, None, None, None]
  return shapes_eval.to_uint8(np.asarray(jnp.where(odd, noisy, down)))


def _colors(caption: str) -> list[tuple[str, str]]:
  return [(spec.color, spec.motion) for spec in shapes.parse_caption(caption)]


def _has_extra_object(video: np.ndarray, caption: str) -> bool:
  """Whether a frame of `video` shows a patch of a colour its caption does not name."""
  return shapes_eval.shows_other_colors(video, [color for color, _ in _colors(caption)])


def _fraction(values: list[bool]) -> float:
  return float(np.mean(values)) if values else 0.0


def _unmasked_gap(samples, recon, videos, kept) -> float:
  """Mean PSNR over the `kept` pixels of samples minus that of the reconstructions."""
  gaps = [
    shapes_eval.psnr(s, v, kept) - shapes_eval.psnr(r, v, kept)
    for s, r, v in zip(samples, recon, videos, strict=True)
  ]
  return float(np.mean(gaps))


def _psnr_gains(outputs, degraded, videos) -> list[float]:
  """Per clip, PSNR of the output vs the clean clip minus that of the degraded input."""
  return [
    shapes_eval.psnr(o, v) - shapes_eval.psnr(d, v)
    for o, d, v in zip(outputs, degraded, videos, strict=True)
  ]


def evaluate_tasks(
  model,
  config,
  split: str,
  *,
  num_clips: int = NUM_CLIPS,
  seed: int = 0,
  only: Sequence[str] | None = None,
) -> dict[str, Any]:
  """`task/<name>/<figure>` for every trained task but t2v (see the module table), each
  sampled with its own settings (`model.default_settings(task)`: `config.sampling.per_task`);
  `only` restricts it to those of the trained tasks.

  Raises:
    ValueError: `only` names a task the model was not trained on.
  """
  if only is not None:
    for task in only:
      tasks.check_task(model.spec, task)
  videos, captions = held_out_clips(config, split, num_clips)
  results: dict[str, Any] = {'task/num_clips': len(videos)}
  tokens = np.asarray(model.tokenizer.encode_uint8(videos))
  recon = model.tokenizer.decode_uint8(tokens)
  for task in model.spec.tasks:
    if task == 't2v' or (only is not None and task not in only):
      continue
    key = f'task/{task}'
    settings = model.default_settings(task, seed=seed)
    if task == 'uncond':
      samples = model.unconditional(settings, num_samples=len(videos))
      for name, clips in (('valid', samples), ('recon_valid', recon)):
        results[f'{key}/{name}'] = _fraction([shapes_eval.valid_unconditional(v) for v in clips])
      continue
    if task == 'i2v':
      samples = model.run_task_batch(task, captions, settings, image=list(videos[:, 0]))
      report = shapes_eval.evaluate_clips(samples, captions)
      results.update({f'{key}/{k}': v for k, v in report.to_dict().items() if 'accuracy' in k})
      results[f'{key}/first_frame_psnr'] = float(
        np.mean([shapes_eval.psnr(s[0], v[0]) for s, v in zip(samples, videos, strict=True)])
      )
    elif task == 'predict':
      samples = model.run_task_batch(task, captions, settings, video=list(videos))
      given = model.tokenizer.num_frames(model.latent_shape[0] - 1)
      kept = [
        shapes_eval.keeps_direction(s, color, motion, given)
        for s, caption in zip(samples, captions, strict=True)
        for color, motion in _colors(caption)
      ]
      results[f'{key}/direction_kept'] = _fraction(kept)
    elif task == 'interpolate':
      samples = model.run_task_batch(
        task, captions, settings, image=list(videos[:, 0]), last_frame=list(videos[:, -1])
      )
      ends = [
        (shapes_eval.psnr(s[0], v[0]) + shapes_eval.psnr(s[-1], v[-1])) / 2
        for s, v in zip(samples, videos, strict=True)
      ]
      results[f'{key}/given_frames_psnr'] = float(np.mean(ends))
      on_path = [
        all(shapes_eval.on_straight_path(s, color) for color, _ in _colors(caption))
        for s, caption in zip(samples, captions, strict=True)
      ]
      results[f'{key}/on_path_2px'] = _fraction(on_path)
    elif task in ('inpaint', 'outpaint'):
      t, h, w = model.latent_shape
      if task == 'inpaint':  # The centre half of every frame.
        latent = tasks.box_mask(model.latent_shape, (0, t, h // 4, h - h // 4, w // 4, w - w // 4))
        pixel = model.pixel_mask(latent)
        samples = model.run_task_batch(
          task, captions, settings, video=list(videos), mask=[pixel] * len(videos)
        )
      else:
        latent = tasks.border_mask(model.latent_shape, tasks.default_border(model.latent_shape))
        pixel = model.pixel_mask(latent)
        samples = model.run_task_batch(task, captions, settings, video=list(videos))
      kept = ~pixel
      results[f'{key}/unmasked_psnr_minus_recon'] = _unmasked_gap(samples, recon, videos, kept)
      # Reference: the clip's own tokens moved one token sideways fill the mask.
      shifted = np.where(latent[None], np.roll(tokens, 1, axis=3), tokens)
      results[f'{key}/shifted_fill_psnr_minus_recon'] = _unmasked_gap(
        model.tokenizer.decode_uint8(shifted), recon, videos, kept
      )
      continuous = []
      for s, v, caption in zip(samples, videos, captions, strict=True):
        for color, _ in _colors(caption):
          step = shapes_eval.max_step(v, color)
          if step is not None:
            continuous.append(shapes_eval.track_continuous(s, color, step + 2.0))
      results[f'{key}/track_continuous'] = _fraction(continuous)
      # Patches, in any frame, of a colour the caption does not name (a fill that invents an
      # object); reference: the reconstruction's.
      for name, clips in (('extra_objects', samples), ('recon_extra_objects', recon)):
        results[f'{key}/{name}'] = _fraction(
          [_has_extra_object(c, caption) for c, caption in zip(clips, captions, strict=True)]
        )
    elif task == 'restore':
      degraded = degrade(videos, seed)
      samples = model.run_task_batch(task, captions, settings, video=list(degraded))
      gain = _psnr_gains(samples, degraded, videos)
      results[f'{key}/psnr_gain'] = float(np.mean(gain))
      results[f'{key}/psnr_gain_3db'] = _fraction([g >= 3.0 for g in gain])
      # References: the tokenizer's reconstruction of the degraded input (copying the
      # condition's tokens) and of the clean clip (every token right).
      copied = model.tokenizer.decode_uint8(model.tokenizer.encode_uint8(degraded))
      forced = model.teacher_forced_task_batch(
        task, captions, list(videos), settings, video=list(degraded)
      )
      for name, reference in (('copy', copied), ('recon', recon), ('teacher_forced', forced)):
        results[f'{key}/{name}_psnr_gain'] = float(
          np.mean(_psnr_gains(reference, degraded, videos))
        )
    elif task == 'restyle':
      samples = model.run_task_batch(task, captions, settings, video=list(videos))
      forced = model.teacher_forced_task_batch(
        task, captions, list(videos), settings, video=list(videos)
      )
      for name, clips in (('', samples), ('recon_', recon), ('teacher_forced_', forced)):
        report = shapes_eval.evaluate_clips(clips, captions)
        results[f'{key}/{name}color_accuracy'] = report.color_accuracy
        results[f'{key}/{name}motion_accuracy'] = report.motion_accuracy
  return results
