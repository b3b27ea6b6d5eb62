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

# Sampling (temperature, top-k, first-frame temperature; -1 = temperature) per task,
# measured on the 1400-step run (README). At one temperature, free generation needs 1.0:
# at 0.4 half the t2v samples and every uncond one were empty. Sampling only the first
# latent frame, where the objects are placed, at 1.0 and the rest at 0.4 keeps the objects
# and sharpens them: t2v colour / shape / motion 99.0 / 86.3 / 95.4% vs 98.8 / 76.3 / 95.8%
# at 1.0 throughout (squares 62 vs 33%), uncond 84-85% valid vs 72-75% (3 seeds each).
# i2v (its first frame given) stays at 1.0 (99/66/90 vs 97/73/91% at 0.4 / top-k 5, within
# noise). The copying tasks do better at 0.4 / top-k 5 than at 1.0: predict 95 vs 90%,
# interpolate 70 vs 56%, inpaint -2.8 vs -3.0 dB / 83 vs 80%, outpaint -4.7 vs -5.1 dB /
# 67 vs 59%, restore +0.6 vs -0.8 dB, restyle 87/84 vs 79/78%. Restore alone is greedy and
# unguided: guidance pulls it off the condition (teacher-forced, +2.1 dB guided vs +2.5 dB
# not); sampled, +1.7 dB greedy / +1.3 dB at 0.4, top-k 5, both unguided, vs +0.6 dB at
# 0.4, top-k 5, cfg 1.75 (3 seeds each). Outpaint and restyle did not move unguided.
PER_TASK_SAMPLING = {
  't2v': (0.4, 0, 1.0),
  'uncond': (0.4, 0, 1.0),
  'i2v': (1.0, 0, -1.0),
  'predict': (0.4, 5, -1.0),
  'interpolate': (0.4, 5, -1.0),
  'inpaint': (0.4, 5, -1.0),
  'outpaint': (0.4, 5, -1.0),
  'restore': (0.0, 0, -1.0),
  'restyle': (0.4, 5, -1.0),
}
# Guidance scale where a task's differs from the shared `config.sampling.cfg_scale` (1.75).
PER_TASK_CFG = {'restore': 1.0}


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, size='tiny', runlocal=False)
  config = shapes_transformer.get_config(f'size={arg.size},runlocal={arg.runlocal}')
  config.model.tasks.update(TASK_WEIGHTS)
  # Restore, restyle and interpolation need the clips' pixels in the step.
  config.tokenizer.cache_tokens = False
  # Periodic samples (t2v) and any task without an entry.
  config.sampling.update(temperature=0.4, top_k=0, first_frame_temperature=1.0)
  with config.unlocked():
    config.sampling.per_task = {
      task: {'temperature': temperature, 'top_k': top_k, 'first_frame_temperature': first}
      for task, (temperature, top_k, first) in PER_TASK_SAMPLING.items()
    }
    for task, cfg_scale in PER_TASK_CFG.items():
      config.sampling.per_task[task]['cfg_scale'] = cfg_scale
  if arg.size == 'tiny' and not arg.runlocal:
    # Sequences of 385 tokens at 0.8-0.9 steps/s on 2 idle CPU cores (the quickstart: 3.7 on
    # 192): warm-started from the quickstart, the whole run took 29 min 39 s wall clock. On a
    # machine with a 2.6x slower matmul: 0.55 steps/s, 44.7 min (the task layout's encoding
    # of only the rows that need it; 0.50 steps/s when every row encoded a second clip).
    config.num_train_steps = 1400
  return config
