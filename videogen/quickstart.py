"""`videogen quickstart --workdir DIR`: the whole pipeline, offline, on a CPU.

  DIR/data/         the shapes dataset (TFDS, built on first use)
  DIR/tokenizer/    tokenizer run (configs/shapes/tokenizer.py:size=tiny)
  DIR/transformer/  transformer run (configs/shapes/transformer.py:size=tiny),
                    a normal workdir that `videogen sample --model` accepts
  DIR/samples/      videos for the fixed prompts
  DIR/eval.json     text alignment of those videos (colour, shape, motion), and of
                    samples for the 80 other prompts of the shapes grid over 3
                    sampling seeds ('held_out_alignment', with shape per class)

Each stage resumes from its checkpoints, so re-running continues where a
previous run stopped instead of starting over.
"""

from __future__ import annotations

import json
import time

import numpy as np
from absl import logging
from etils import epath

from videogen import config_lib
from videogen.configs import common

# Single-object prompts, two per colour, covering every shape and motion.
PROMPTS = (
  'a red circle moving left',
  'a green square moving right',
  'a blue triangle moving up',
  'a yellow circle moving down',
  'a cyan square moving left',
  'a magenta triangle moving right',
  'a white circle moving up',
  'an orange square moving down',
  'a red triangle moving down',
  'a green circle moving up',
  'a blue square moving left',
  'a yellow triangle moving right',
  'a cyan circle moving down',
  'a magenta square moving up',
  'a white triangle moving left',
  'an orange circle moving right',
)


def held_out_prompts(prompts=PROMPTS) -> list[str]:
  """Every single-object caption of the shapes grid (colour x shape x motion) not in `prompts`.

  The sampling settings in `configs/shapes/transformer.py` were chosen on the
  fixed `PROMPTS`; these other 80 of the 96 captions judge them on prompts
  they were not chosen on.
  """
  from videogen.data import shapes

  fixed = set(prompts)
  grid = (
    shapes.ObjectSpec(color, shape, motion).phrase
    for color in shapes.PALETTE
    for shape in shapes.SHAPES
    for motion in shapes.MOTIONS
  )
  return [caption for caption in grid if caption not in fixed]


def held_out_alignment(model, prompts, *, seeds=(0, 1, 2), samples_per_prompt: int = 2) -> dict:
  """Text alignment of `model`'s samples for `prompts`, per sampling seed and pooled.

  Returns:
    {'prompts', 'samples_per_seed', 'seeds', the three accuracies and
    'shape_accuracy_by_class' pooled over every seed, 'per_seed': [...]}.
  """
  from videogen.eval import shapes_eval

  prompts = list(prompts)
  captions = [p for p in prompts for _ in range(samples_per_prompt)]
  videos = [
    model.generate(
      prompts, model.default_settings('t2v', seed=seed), num_samples=samples_per_prompt
    )
    for seed in seeds
  ]
  pooled = shapes_eval.evaluate_clips(np.concatenate(videos), captions * len(seeds))
  attrs = ('color_accuracy', 'shape_accuracy', 'motion_accuracy', 'shape_accuracy_by_class')
  per_seed = []
  for i, seed in enumerate(seeds):
    report = shapes_eval.summarize(pooled.clips[i * len(captions) : (i + 1) * len(captions)])
    per_seed.append({'seed': seed, **{a: getattr(report, a) for a in attrs}})
  return {
    'prompts': len(prompts),
    'samples_per_seed': len(captions),
    'seeds': list(seeds),
    **{a: getattr(pooled, a) for a in attrs},
    'per_seed': per_seed,
  }


def stage_config(stage: str, workdir: epath.Path, **overrides):
  """The quickstart (`size=tiny`) config of `stage`, with data under `workdir`."""
  config = config_lib.load_config_file(f'{common.path(f"shapes/{stage}.py")}:size=tiny')
  return config_lib.apply_overrides(config, {'data.data_dir': str(workdir / 'data'), **overrides})


def _banner(text: str) -> None:
  print(f'\n=== {text} ===', flush=True)


def run(
  workdir: str,
  *,
  prompts=PROMPTS,
  samples_per_prompt: int = 4,
  held_out_seeds=(0, 1, 2),
  held_out_samples: int = 2,
  **overrides,
) -> dict:
  """Runs (or resumes) every stage; returns the summary written to eval.json.

  Args:
    workdir: the run directory (local, a mounted drive or gs://).
    prompts: the prompts sampled into DIR/samples and scored as 'alignment'.
    samples_per_prompt: samples of each of `prompts`.
    held_out_seeds: sampling seeds of the 'held_out_alignment' figure (the
      grid's other prompts, `held_out_prompts`); () skips it.
    held_out_samples: samples of each held-out prompt per seed.
    **overrides: config overrides per stage ({'tokenizer': {...}, 'transformer': {...}}).
  """
  from videogen import sample, stages
  from videogen.data import build
  from videogen.eval import shapes_eval
  from videogen.parallel import distributed
  from videogen.transformer.inference import TextToVideo

  distributed.set_cpu_xla_flags()  # A notebook or script calling run() without the CLI.
  logging.set_verbosity(logging.INFO)
  root = epath.Path(workdir)
  root.mkdir(parents=True, exist_ok=True)
  start = time.perf_counter()
  timings = {}

  tokenizer_config = stage_config('tokenizer', root, **overrides.get('tokenizer', {}))
  _banner('1/4 shapes dataset')
  print(build.build_dataset(tokenizer_config.data).summary(), flush=True)
  timings['dataset_s'] = time.perf_counter() - start

  _banner('2/4 video tokenizer')
  tokenizer_result = stages.train(tokenizer_config, str(root / 'tokenizer'))
  timings['tokenizer_s'] = time.perf_counter() - start - sum(timings.values())

  _banner('3/4 text-to-video transformer')
  transformer_config = stage_config(
    'transformer',
    root,
    **{'tokenizer.checkpoint': str(root / 'tokenizer')},
    **overrides.get('transformer', {}),
  )
  transformer_result = stages.train(transformer_config, str(root / 'transformer'))
  timings['transformer_s'] = time.perf_counter() - start - sum(timings.values())

  _banner('4/4 samples and text alignment (fixed and held-out prompts)')
  model = TextToVideo.load(root / 'transformer')
  videos = sample.sample_to_dir(
    model, list(prompts), str(root / 'samples'), num_samples=samples_per_prompt
  )
  captions = [p for p in prompts for _ in range(samples_per_prompt)]
  report = shapes_eval.evaluate_clips(videos, captions)
  held_out = None
  if held_out_seeds:
    held_out = held_out_alignment(
      model,
      held_out_prompts(prompts),
      seeds=held_out_seeds,
      samples_per_prompt=held_out_samples,
    )
  timings['sampling_s'] = time.perf_counter() - start - sum(timings.values())
  summary = {
    'alignment': report.to_dict(),
    'held_out_alignment': held_out,
    'tokenizer_eval': tokenizer_result.eval_metrics,
    'transformer_eval': transformer_result.eval_metrics,
    'seconds': {**timings, 'total_s': time.perf_counter() - start},
    'samples': str(root / 'samples'),
  }
  (root / 'eval.json').write_text(json.dumps(summary, indent=2))
  _banner('done')
  print(
    f'tokenizer PSNR {tokenizer_result.eval_metrics.get("psnr", float("nan")):.2f} dB | '
    f'alignment: colour {report.color_accuracy:.0%}, shape {report.shape_accuracy:.0%}, '
    f'motion {report.motion_accuracy:.0%} over {report.num_clips} samples | '
    f'{summary["seconds"]["total_s"] / 60:.1f} min',
    flush=True,
  )
  if held_out:
    by_class = ', '.join(f'{k} {v:.0%}' for k, v in held_out['shape_accuracy_by_class'].items())
    print(
      f'held-out prompts ({held_out["prompts"]} prompts x {held_out_samples} samples x '
      f'{len(held_out_seeds)} seeds): colour {held_out["color_accuracy"]:.0%}, shape '
      f'{held_out["shape_accuracy"]:.0%} ({by_class}), motion {held_out["motion_accuracy"]:.0%}',
      flush=True,
    )
  print(f'videos: {root / "samples"} (grid.gif, sample_NNN.mp4/.gif)', flush=True)
  print(f'eval:   {root / "eval.json"}', flush=True)
  print(
    f'more:   videogen sample --model {root / "transformer"} '
    '--prompt "a red circle moving left" --out out/',
    flush=True,
  )
  return summary
