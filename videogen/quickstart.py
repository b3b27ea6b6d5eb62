"""`videogen quickstart --workdir DIR`: the whole pipeline, offline, on a CPU.

  DIR/data/         the shapes dataset (TFDS, built on first use)
  DIR/tokenizer/    tokenizer run (configs/shapes/tokenizer.py:size=tiny)
  DIR/transformer/  transformer run (configs/shapes/transformer.py:size=tiny),
                    a normal workdir that `videogen sample --model` accepts
  DIR/samples/      videos for the fixed prompts
  DIR/eval.json     text alignment of those videos (colour, shape, motion)

Each stage resumes from its checkpoints, so re-running continues where a
previous run stopped instead of starting over.
"""

from __future__ import annotations

import json
import time

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


def stage_config(stage: str, workdir: epath.Path, **overrides):
  """The quickstart (`size=tiny`) config of `stage`, with data under `workdir`."""
  config = config_lib.load_config_file(f'{common.path(f"shapes/{stage}.py")}:size=tiny')
  return config_lib.apply_overrides(config, {'data.data_dir': str(workdir / 'data'), **overrides})


def _banner(text: str) -> None:
  print(f'\n=== {text} ===', flush=True)


def run(workdir: str, *, prompts=PROMPTS, samples_per_prompt: int = 4, **overrides) -> dict:
  """Runs (or resumes) every stage; returns the summary written to eval.json."""
  from videogen import sample, stages
  from videogen.data import build
  from videogen.eval import shapes_eval
  from videogen.transformer.inference import TextToVideo

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

  _banner('4/4 samples and text alignment')
  videos = sample.sample_to_dir(
    TextToVideo.load(root / 'transformer'),
    list(prompts),
    str(root / 'samples'),
    num_samples=samples_per_prompt,
  )
  captions = [p for p in prompts for _ in range(samples_per_prompt)]
  report = shapes_eval.evaluate_clips(videos, captions)
  timings['sampling_s'] = time.perf_counter() - start - sum(timings.values())
  summary = {
    'alignment': report.to_dict(),
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
  print(f'videos: {root / "samples"} (grid.gif, sample_NNN.mp4/.gif)', flush=True)
  print(f'eval:   {root / "eval.json"}', flush=True)
  print(
    f'more:   videogen sample --model {root / "transformer"} '
    '--prompt "a red circle moving left" --out out/',
    flush=True,
  )
  return summary
