"""One transformer for every shapes task: text-to-video plus the conditioned tasks.

  videogen quickstart --workdir runs/qs     # the tokenizer and text-to-video model it starts from
  videogen train --config configs/shapes/multitask.py --workdir runs/multitask \
      --config.tokenizer.checkpoint=runs/qs/tokenizer --config.data.data_dir=runs/qs/data \
      --config.init_from=runs/qs/transformer
  videogen sample --model runs/multitask --task inpaint --video clip.mp4 \
      --box 0,9,8,24,8,24 --prompt "a red circle moving left" --out out/

The quickstart transformer (`configs/shapes/transformer.py:size=tiny`, same
model, data, tokenizer and text encoder) with `config.model.tasks` drawing
every task of `videogen.transformer.tasks`, text-to-video twice as often as
each other one. Conditions are built from pixels in the step, so there is no
token cache; each sequence is a task token, a 192-token canvas, then the
192-token clip.

`--config.init_from` starts it from the quickstart's text-to-video weights
(the input table grows by the mask and task tokens): trained from scratch,
text-to-video alignment was still 15% colour at step 735, since only a fifth
of the examples are text-to-video; warm-started, the other tasks are learnt
on top of a model that already follows its captions.
"""

from videogen.configs.shapes import transformer as shapes_transformer

from videogen import config_lib

# Relative training weights of the tasks (t2v kept at twice the others).
TASK_WEIGHTS = {
  't2v': 2.0,
  'uncond': 1.0,
  'i2v': 1.0,
  'predict': 1.0,
  'interpolate': 1.0,
  'inpaint': 1.0,
  'outpaint': 1.0,
  'restore': 1.0,
  'restyle': 1.0,
}


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, size='tiny', runlocal=False)
  config = shapes_transformer.get_config(f'size={arg.size},runlocal={arg.runlocal}')
  config.model.tasks.update(TASK_WEIGHTS)
  # Restore, restyle and interpolation need the clips' pixels in the step.
  config.tokenizer.cache_tokens = False
  # Measured on the 1400-step run (160 held-out t2v samples, 32 clips per task): at the
  # quickstart's temperature 0.4 / top-k 5 its t2v samples were half empty (colour 50%) and
  # uncond ones all empty; at 1.0 / no top-k, t2v 97.5/77.5/96.3% and uncond 72% valid.
  config.sampling.temperature = 1.0
  config.sampling.top_k = 0
  if arg.size == 'tiny' and not arg.runlocal:
    # Sequences of 385 tokens trained at ~1.05 steps/s over a 40-step probe on 2 idle CPU
    # cores (the quickstart: 2.3 on 192), so 1400 steps were sized for ~22 min; a complete
    # run within 30 minutes has not been measured yet.
    config.num_train_steps = 1400
  return config
