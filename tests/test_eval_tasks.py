"""Per-task checks of shapes samples: real clips pass them, broken ones fail; the
per-task evaluation runs on a toy multi-task model."""

import jax
import numpy as np
import pytest
from flax import nnx

from tests import helpers
from videogen.data import shapes
from videogen.eval import shapes_eval, tasks_eval
from videogen.transformer import tasks
from videogen.transformer.inference import TextToVideo
from videogen.transformer.model import Transformer


def _clip(seed, frames=9, size=32):
  example = shapes.generate_example(seed, frames, size, size, 1, 1)
  spec = shapes.parse_caption(example.caption)[0]
  return example.video, spec


@pytest.mark.parametrize('seed', range(6))
def test_real_clips_pass_every_check(seed):
  video, spec = _clip(seed)
  assert shapes_eval.on_straight_path(video, spec.color)
  assert shapes_eval.keeps_direction(video, spec.color, spec.motion, given_frames=5)
  step = shapes_eval.max_step(video, spec.color)
  assert step is not None and shapes_eval.track_continuous(video, spec.color, step + 2.0)
  assert shapes_eval.valid_unconditional(video)
  assert shapes_eval.psnr(video, video) == float('inf')
  assert not shapes_eval.shows_other_colors(video, [spec.color])


def test_broken_clips_fail_the_checks():
  video, spec = _clip(1)
  shuffled = video[[0, 5, 2, 7, 4, 1, 6, 3, 8]]  # Same ends, the middle out of order.
  assert not shapes_eval.on_straight_path(shuffled, spec.color)
  reversed_clip = video[::-1]
  assert not shapes_eval.keeps_direction(reversed_clip, spec.color, spec.motion, given_frames=5)
  gap = video.copy()
  gap[4] = 0  # The object vanishes in one frame.
  assert not shapes_eval.track_continuous(gap, spec.color, 100.0)
  static = np.repeat(video[:1], 9, axis=0)
  assert not shapes_eval.valid_unconditional(static)
  assert not shapes_eval.valid_unconditional(np.zeros_like(video))
  noisy = np.clip(video.astype(int) + 20, 0, 255).astype(np.uint8)
  assert shapes_eval.psnr(noisy, video) == pytest.approx(10 * np.log10(255**2 / 400), rel=0.05)
  mask = np.zeros(video.shape[:3], bool)
  assert np.isfinite(shapes_eval.psnr(noisy, video, ~mask))
  # A patch of another colour in one frame, of the smallest area counted (32^2 / 64 pixels).
  other = next(c for c in shapes.PALETTE if c != spec.color)
  invented = video.copy()
  invented[3, :4, :4] = shapes.PALETTE[other]
  assert shapes_eval.shows_other_colors(invented, [spec.color])
  assert not shapes_eval.shows_other_colors(invented, [spec.color, other])
  invented[3, :4, 3] = 0  # 12 pixels: a speck, not an object.
  assert not shapes_eval.shows_other_colors(invented, [spec.color])


def test_evaluate_tasks_reports_every_trained_task(tmp_path):
  weights = {f'model.tasks.{name}': 1.0 for name in tasks.TASKS}
  per_task = {'restore': {'temperature': 0.0, 'top_k': 1}, 'uncond': {'top_k': 2}}
  config = helpers.toy_transformer_config(
    str(tmp_path / 'data'), **weights, **{'sampling.per_task': per_task}
  )
  frozen = helpers.toy_inference(config, tmp_path / 'frozen')
  spec = TextToVideo(config, frozen.tokenizer, frozen.text_encoder).spec
  params = nnx.split(Transformer(spec, rngs=nnx.Rngs(0)), nnx.Param, ...)[1]
  params = jax.device_put(params, jax.devices()[0])
  model = TextToVideo(config, frozen.tokenizer, frozen.text_encoder, params)
  used = {}  # Task -> the settings it was sampled with.
  run_task_batch, unconditional = model.run_task_batch, model.unconditional

  def record_batch(task, prompts, settings, **inputs):
    used[task] = settings
    return run_task_batch(task, prompts, settings, **inputs)

  def record_uncond(settings, **kwargs):
    used['uncond'] = settings
    return unconditional(settings, **kwargs)

  model.run_task_batch, model.unconditional = record_batch, record_uncond
  results = tasks_eval.evaluate_tasks(model, config, 'test', num_clips=2)
  assert set(used) == set(tasks.TASKS) - {'t2v'}
  assert (used['restore'].temperature, used['restore'].top_k) == (0.0, 1)
  assert (used['uncond'].temperature, used['uncond'].top_k) == (1.0, 2)
  assert (used['inpaint'].temperature, used['inpaint'].top_k) == (1.0, 0)
  expected = {
    'task/uncond/valid',
    'task/uncond/recon_valid',
    'task/i2v/color_accuracy',
    'task/predict/direction_kept',
    'task/interpolate/given_frames_psnr',
    'task/interpolate/on_path_2px',
    'task/inpaint/unmasked_psnr_minus_recon',
    'task/inpaint/track_continuous',
    'task/outpaint/track_continuous',
    'task/inpaint/extra_objects',
    'task/outpaint/recon_extra_objects',
    'task/restore/psnr_gain',
    'task/restore/psnr_gain_3db',
    'task/restore/copy_psnr_gain',
    'task/restore/recon_psnr_gain',
    'task/restore/teacher_forced_psnr_gain',
    'task/inpaint/shifted_fill_psnr_minus_recon',
    'task/outpaint/shifted_fill_psnr_minus_recon',
    'task/restyle/color_accuracy',
    'task/restyle/motion_accuracy',
    'task/restyle/recon_color_accuracy',
    'task/restyle/recon_motion_accuracy',
    'task/restyle/teacher_forced_color_accuracy',
    'task/restyle/teacher_forced_motion_accuracy',
  }
  assert expected <= set(results), sorted(results)
  assert results['task/num_clips'] == 2
  for key in expected:
    assert np.isfinite(results[key]), key
  only = tasks_eval.evaluate_tasks(model, config, 'test', num_clips=2, only=('restore',))
  assert {key.split('/')[1] for key in only if key != 'task/num_clips'} == {'restore'}
  assert only['task/restore/copy_psnr_gain'] == results['task/restore/copy_psnr_gain']
  with pytest.raises(ValueError, match='Unknown task'):
    tasks_eval.evaluate_tasks(model, config, 'test', num_clips=2, only=('restor',))


def _benchmark(name):
  """A module of `benchmarks/` (which import each other by name)."""
  import importlib  # noqa: PLC0415
  import sys  # noqa: PLC0415

  sys.path.insert(0, str(helpers.REPO / 'benchmarks'))
  try:
    return importlib.import_module(name)
  finally:
    sys.path.remove(str(helpers.REPO / 'benchmarks'))


def test_best_of_n_benchmark_scores_with_its_fields_then_puts_the_settings_back(tmp_path):
  best_of_n = _benchmark('best_of_n')
  weights = {f'model.tasks.{name}': 1.0 for name in ('t2v', 'restyle', 'restore')}
  per_task = {'restore': {'temperature': 0.0}}
  config = helpers.toy_transformer_config(
    str(tmp_path / 'data'), **weights, **{'sampling.per_task': per_task}
  )
  frozen = helpers.toy_inference(config, tmp_path / 'frozen')
  spec = TextToVideo(config, frozen.tokenizer, frozen.text_encoder).spec
  params = nnx.split(Transformer(spec, rngs=nnx.Rngs(0)), nnx.Param, ...)[1]
  model = TextToVideo(config, frozen.tokenizer, frozen.text_encoder, params)
  used = []
  run_task_batch = model.run_task_batch

  def record(task, prompts, settings, **inputs):
    used.append((task, settings.temperature, settings.candidates))
    return run_task_batch(task, prompts, settings, **inputs)

  model.run_task_batch = record
  best_of_n.NUM_CLIPS = 2
  for task in ('restyle', 'restore'):
    row = best_of_n.score(model, task, {'temperature': 1.0, 'candidates': 2}, (0, 1))
    assert set(row) == {'seconds'} | {key for key, _ in best_of_n.FIGURES[task]}
    assert all(np.isfinite(value) for value in row.values())
  assert used == [('restyle', 1.0, 2)] * 2 + [('restore', 1.0, 2)] * 2  # Seeds 0 and 1.
  # The run's own settings are back: restore's entry as it was, none for restyle.
  assert model.config.sampling.per_task.to_dict() == per_task
  # `--sampling FILE` swaps in a config file's sampling section.
  best_of_n.multitask_figures.use_sampling(model, str(helpers.CONFIGS / 'shapes' / 'multitask.py'))
  assert model.default_settings('restyle').candidates == 16
