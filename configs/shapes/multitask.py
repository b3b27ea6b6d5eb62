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

# Relative training weights of the tasks (t2v kept at twice the others). Moving weight to
# the tasks that miss their targets (uncond, restyle 1.5; outpaint, restore 1.25; i2v 0.5,
# predict 0.75) lifted none of them and cost t2v its target; `model.input_token_noise` (0.1
# or 0.2, on every task or only restore and restyle) lifted restore by 0.9-1.1 dB and cost
# t2v's shape 4-7 points even with t2v kept clean (README, 2026-12-04 re-run); 0.2 decaying
# to 0 (`model.input_token_noise_decay`) met restore (+3.1 dB, best of 16) and uncond (90%)
# and still cost t2v's shape 5 points (81.0 vs 86.0%), so inputs stay clean (README, 2026-12-05).
# A copy path on restore's rows (`model.copy_canvas_tasks='restore'`) lifted restore to +2.97 dB
# at best of 16 and +3.12 dB at 32 (teacher-forced +3.2), and to +3.31 / +3.33 dB (training
# seeds 0 / 1) with restore's candidates drawn by latent frame, and cost outpaint's track on both
# seeds (78 / 78%; 81 / 78% at best of 32); on every task's rows it cost restore (+0.9 dB) and restyle
# (89 / 85%). It stays off, keeping outpaint's track target; restore's best of 32 by latent
# frame meets restore without it (below; README, 2026-12-05).
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
# measured on the 1400-step layout run (README; 64 held-out clips, 3 sampling seeds).
# Free generation (t2v, uncond) places its objects in the first latent frame at 1.0 and
# draws the rest at 0.1: uncond 89% valid over 6 seeds vs 87% at 0.2, 84% at 0.4 and 85%
# greedy; t2v 99.4 / 79.6 / 96.0% vs 99.4 / 78.5 / 95.4% at 0.4. At one temperature free
# generation needs 1.0 (at 0.4 half the t2v samples and every uncond one were empty), and
# the hot first frame keeps squares sharp (62 vs 33% at 1.0 throughout). i2v (its first
# frame given) stays at 1.0 (99/66/90 vs 97/73/91% at 0.4 / top-k 5, within noise). The
# conditioned tasks do better cool: predict and interpolate at 0.2 (96 / 86% vs 95 / 82% at
# 0.4 / top-k 5; greedy 97 / 84%). The tasks whose canvas is the whole clip
# (`tasks.CLIP_TASKS`) were best greedy with one sample (inpaint -2.8 dB / 81%, outpaint
# -4.7 dB / 71%, restyle 87 / 84%, restore +1.7 dB); they now draw `PER_TASK_CANDIDATES`
# samples at these temperatures and keep the one that best reproduces their input
# (README, "Best of N"). Restore alone is also unguided: guidance pulls it off the
# condition (teacher-forced, +2.1 dB guided vs +2.5 dB not). Higher guidance for restyle
# (cfg 3 or 5) kept its colour (80-84%) and lost motion (62-75%).
PER_TASK_SAMPLING = {
  't2v': (0.1, 0, 1.0),
  'uncond': (0.1, 0, 1.0),
  'i2v': (1.0, 0, -1.0),
  'predict': (0.2, 0, -1.0),
  'interpolate': (0.2, 0, -1.0),
  'inpaint': (0.5, 0, -1.0),
  'outpaint': (1.0, 0, -1.0),
  'restore': (0.3, 0, -1.0),
  'restyle': (1.0, 0, -1.0),
}
# Samples per output, the one closest to the task's input kept (`transformer/candidates.py`).
# On the 1400-step config run (training seed 0, 64 clips, sampling seed 0; greedy -> best of
# 16 -> of 32): restyle 86 / 82 -> 96 / 93 -> 96 / 94%, inpaint -3.0 dB; 89% -> -1.4 dB; 95%
# -> -1.2 dB; 96%, outpaint -4.9 dB; 70% -> -2.8 dB; 82% -> -2.3 dB; 84%, restore +1.6 ->
# +2.6 -> +2.7 dB (teacher-forced +2.75); interpolate (at 0.2, one sample 72 / 70% over 3
# seeds on training seeds 0 / 1) 78 / 76% at 16. Candidate temperatures, best of 16: inpaint
# 0.5 (-1.4 dB; 94% vs -1.3 dB; 89% at 1.0), outpaint 1.0 (-2.5 dB vs -3.1 dB at 0.5, track
# 83% both), restore 0.3 (+2.6 vs +2.5 dB at 0.2, +2.3 dB at 0.6), restyle 1.0 (95 / 92% vs
# 95 / 91% at 0.5, best of 8). 16 keeps the cost at 16 sampling passes (32 gains 0.1-0.5 dB).
# Interpolate's given frames are weighed by its pace and uncond keeps the steadiest of 8
# (`candidates.pace_unevenness`; training seeds 0 / 1, 3 sampling seeds): interpolate 78 / 76%
# by the given frames alone -> 85 / 81%; uncond 88 / 86% (one sample) -> 98 / 98% (README, "Pace").
PER_TASK_CANDIDATES = {
  'uncond': 8,
  'interpolate': 16,
  'inpaint': 16,
  'outpaint': 16,
  'restore': 32,
  'restyle': 16,
}
# Tasks whose candidates are drawn one latent frame at a time, the best kept before the next
# (`candidate_search='frame'`, `candidates.search_frames`); the others rank whole clips. Best
# of 16 on training seeds 0 / 1 (3 sampling seeds; README, "By latent frame"): restore +2.5 /
# +2.4 -> +2.92 / +2.87 dB, restyle 95 / 92, 94 / 92 -> 95 / 94, 94 / 92%. Inpaint moved within
# the noise (-1.4 / -1.7 -> -1.3 / -1.6 dB, track 94 / 96 -> 92 / 93%) and outpaint's track fell
# (82 / 80 -> 78 / 75%), so they rank whole clips. Restore draws 32 by latent frame: +3.14 /
# +3.05 dB, its target met at twice its sampling cost (whole clips at 32: +2.74 dB, seed 0).
FRAME_SEARCH_TASKS = ('restore', 'restyle')
# Sweeps refining in/outpaint's kept sample token by token against the given pixels
# (`config.sampling.refine`, `transformer/refine.py`), trying at each generated position the
# model's 4 likeliest tokens that it gives a probability of at least 0.1. The decoder sees the
# whole frame, so the fill's tokens change the given pixels; refinement picks, among tokens the
# model finds likely, those that leave them as given. Best of 16, then refined (training seed
# 0, sampling seed 0; clips with a patch of a colour the caption does not name in brackets):
# inpaint -1.40 dB; 95% (8%) -> one sweep -0.73 dB; 95% (3%), outpaint -2.86 dB; 82% (16%) ->
# one sweep -1.49 dB; 85% (9%) -> two -0.87 dB; 87% (9%); a floor of 0.05 instead, one sweep:
# -1.06 dB; 86% (14%). Without the floor: +0.27 dB; 94% (12%) and +0.51 dB; 84% (48%): the
# fill invents objects that make the decoder's given pixels come out right. Two sweeps over
# 3 sampling seeds, training seeds 0 / 1: README, "Refinement, measured on 2026-12-05".
PER_TASK_REFINE = {'inpaint': 2, 'outpaint': 2}
REFINE_MIN_PROB = 0.1
# Guidance scale where a task's differs from the shared `config.sampling.cfg_scale` (1.75).
PER_TASK_CFG = {'restore': 1.0}


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, size='tiny', runlocal=False)
  config = shapes_transformer.get_config(f'size={arg.size},runlocal={arg.runlocal}')
  config.model.tasks.update(TASK_WEIGHTS)
  # Restore, restyle and interpolation need the clips' pixels in the step.
  config.tokenizer.cache_tokens = False
  # Any task without an entry takes the shared fields: here, free generation's setting.
  free_temperature, free_top_k, free_first = PER_TASK_SAMPLING['t2v']
  config.sampling.update(
    temperature=free_temperature, top_k=free_top_k, first_frame_temperature=free_first
  )
  with config.unlocked():
    config.sampling.per_task = {
      task: {'temperature': temperature, 'top_k': top_k, 'first_frame_temperature': first}
      for task, (temperature, top_k, first) in PER_TASK_SAMPLING.items()
    }
    for task, cfg_scale in PER_TASK_CFG.items():
      config.sampling.per_task[task]['cfg_scale'] = cfg_scale
    for task, count in PER_TASK_CANDIDATES.items():
      config.sampling.per_task[task]['candidates'] = count
    for task in FRAME_SEARCH_TASKS:
      config.sampling.per_task[task]['candidate_search'] = 'frame'
    for task, sweeps in PER_TASK_REFINE.items():
      config.sampling.per_task[task].update(refine=sweeps, refine_min_prob=REFINE_MIN_PROB)
  if arg.size == 'tiny' and not arg.runlocal:
    # Sequences of 385 tokens on 2 idle CPU cores: warm-started from the quickstart, the whole
    # run took 24 min 17 s wall clock on 2026-12-04 at 1.0 steps/s, with the allocator the
    # `videogen` command picks on a CPU-only machine without tcmalloc (glibc in one arena,
    # `videogen/parallel/host_memory.py`); 33.5 min at 0.8 steps/s the same day with glibc's
    # per-thread arenas. On a machine with a 2.6x slower matmul: 0.55 steps/s, 44.7 min.
    # On 2026-12-05's machines, alone: 0.8 steps/s, 32 min 40 s and 31 min 25 s; with the
    # heads-major `xla` attention (`transformer/attention.py`) on the second: 1.0 steps/s,
    # 25 min 30 s, its held-out cross-entropies equal to the run before it to four digits.
    # 1600 steps (26 min 19 s) moved every figure within the noise of two seeds; 2800 steps
    # (49.5 min) met interpolate's target and lifted restore to +2.4 dB (README).
    config.num_train_steps = 1400
  return config
