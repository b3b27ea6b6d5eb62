"""Best of N on a multi-task shapes run: each ranked task's figures against the number of candidates.

  python benchmarks/best_of_n.py --workdir runs/multitask [--sampling configs/shapes/multitask.py]
      [--tasks restyle,inpaint] [--counts 1,2,4,8,16] [--searches clip,frame] [--refines 0,1]
      [--refine_min_probs 0,0.1] [--seeds 0] [--out benchmarks/results/best_of_n]

Not a speed benchmark: the quality side of `SamplingSettings.candidates`
(`videogen/transformer/candidates.py`). For every task of the run that candidates
can rank (uncond, interpolate, inpaint, outpaint, restore, restyle) it scores, with
`videogen.eval.tasks_eval` on 64 held-out test clips:

  greedy    one sample at temperature 0, the reference measured in the same run;
  N = k     the best of k samples at the task's temperature, for each k of `--counts`
            (the run's `config.sampling.per_task`, or `--sampling`'s, or `--temperature`),
            ranked as whole clips ('clip') or one latent frame at a time ('frame', for
            inpaint, outpaint, restore and restyle), for each search of `--searches`,
            then refined over each number of sweeps of `--refines` (tasks with a pixel
            condition; `videogen.transformer.refine`) with each probability floor of
            `--refine_min_probs` (default: the run's).

Each row also gives the sampling seconds of its task (sampling and scoring, over
the seeds). Writes OUT.json and OUT.md and prints the table.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import time

import multitask_figures

from videogen.eval import tasks_eval
from videogen.transformer import candidates
from videogen.transformer.inference import TextToVideo

NUM_CLIPS = multitask_figures.NUM_CLIPS
# task -> (figure keys under task/<name>/, how to print each)
FIGURES = {
  'uncond': (('valid', '{:.0%}'),),
  'interpolate': (('on_path_2px', '{:.0%}'), ('given_frames_psnr', '{:.1f} dB')),
  'inpaint': (
    ('unmasked_psnr_minus_recon', '{:+.2f} dB'),
    ('track_continuous', '{:.0%}'),
    ('extra_objects', '{:.0%}'),
  ),
  'outpaint': (
    ('unmasked_psnr_minus_recon', '{:+.2f} dB'),
    ('track_continuous', '{:.0%}'),
    ('extra_objects', '{:.0%}'),
  ),
  'restore': (('psnr_gain', '{:+.2f} dB'), ('teacher_forced_psnr_gain', '{:+.2f} dB')),
  'restyle': (('color_accuracy', '{:.0%}'), ('motion_accuracy', '{:.0%}')),
}


def score(model: TextToVideo, task: str, fields: dict, seeds: tuple[int, ...]) -> dict:
  """`task`'s figures (means over `seeds`) with `fields` over its per-task sampling settings."""
  with model.config.unlocked():
    per_task = model.config.sampling.per_task
    saved = dict(per_task[task]) if task in per_task else None
    per_task[task] = {**(saved or {}), **fields}
  start = time.perf_counter()
  try:
    runs = [
      tasks_eval.evaluate_tasks(
        model, model.config, 'test', num_clips=NUM_CLIPS, seed=seed, only=[task]
      )
      for seed in seeds
    ]
  finally:
    with model.config.unlocked():
      if saved is None:
        del model.config.sampling.per_task[task]
      else:
        model.config.sampling.per_task[task] = saved
  row = {'seconds': time.perf_counter() - start}
  for key, _ in FIGURES[task]:
    row[key] = sum(run[f'task/{task}/{key}'] for run in runs) / len(runs)
  return row


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--workdir', required=True, help='a multi-task transformer workdir or export')
  parser.add_argument('--tasks', default='', help='comma-separated; default every ranked task')
  parser.add_argument('--counts', default='1,2,4,8,16', help='candidate counts to score')
  parser.add_argument(
    '--searches', default='clip', help='comma-separated candidate searches: clip, frame'
  )
  parser.add_argument(
    '--refines', default='0', help='comma-separated refine sweeps after the candidates'
  )
  parser.add_argument(
    '--refine_min_probs', default='', help="comma-separated refine floors; default the run's"
  )
  parser.add_argument('--seeds', default='0', help='comma-separated sampling seeds (means)')
  parser.add_argument(
    '--temperature', type=float, default=None, help="candidates' temperature (default per task)"
  )
  parser.add_argument(
    '--sampling', default=None, help="a config file whose config.sampling replaces the run's"
  )
  parser.add_argument('--out', default='benchmarks/results/best_of_n', help='writes OUT.json, .md')
  args = parser.parse_args()
  try:
    counts = [int(c) for c in args.counts.split(',')]
    refines = [int(r) for r in args.refines.split(',')]
    floors = [float(f) for f in args.refine_min_probs.split(',') if f] or [None]
    seeds = tuple(int(s) for s in args.seeds.split(','))
  except ValueError:
    raise SystemExit(
      '--counts, --refines and --seeds take integers, e.g. --counts 1,4,16 --seeds 0,1'
    ) from None
  if min(counts) < 1:
    raise SystemExit(f'--counts={args.counts}: each must be >= 1')
  if min(refines) < 0:
    raise SystemExit(f'--refines={args.refines}: each must be >= 0 (0 = no refinement)')
  if any(f is not None and not 0 <= f < 1 for f in floors):
    raise SystemExit(f'--refine_min_probs={args.refine_min_probs}: each must be in [0, 1)')
  searches = args.searches.split(',')
  for search in searches:
    if search not in candidates.SEARCHES:
      raise SystemExit(f'--searches: {search!r} is not one of {", ".join(candidates.SEARCHES)}')
  model = TextToVideo.load(args.workdir)
  multitask_figures.use_sampling(model, args.sampling)
  trained = [t for t in model.spec.tasks if t in candidates.RANKED_TASKS]
  names = [t for t in args.tasks.split(',') if t] or trained
  for name in names:
    if name not in trained:
      raise SystemExit(f'--tasks: {name} is not a ranked task of this run; it has {trained}')
  rows = []
  for task in names:
    temperature = args.temperature
    if temperature is None:
      temperature = model.default_settings(task).temperature
    if temperature == 0 and max(counts) > 1:
      raise SystemExit(f'{task} samples greedily in this run; give --temperature for candidates')
    cases = [('greedy', {'temperature': 0.0, 'candidates': 1, 'refine': 0})]
    for search in searches:
      if search == 'frame' and task not in candidates.FRAME_RANKED_TASKS:
        continue
      label = ' by latent frame' if search == 'frame' else ''
      base = {'temperature': temperature, 'candidate_search': search}
      cases += [
        (
          f'N = {k}{label}'
          + (f', refined over {r}' if r else '')
          + (f' (p >= {f:g})' if r and f is not None else ''),
          {
            **base,
            'candidates': k,
            'refine': r,
            **({'refine_min_prob': f} if r and f is not None else {}),
          },
        )
        for k in counts
        for r in (refines if task in candidates.CONDITIONED_TASKS else [0])
        for f in (floors if r else [None])
        if k > 1 or search == 'clip'
      ]
    for label, fields in cases:
      row = {'task': task, 'case': label, **fields, **score(model, task, fields, seeds)}
      rows.append(row)
      print(json.dumps(row), flush=True)
  out = pathlib.Path(args.out)
  out.parent.mkdir(parents=True, exist_ok=True)
  meta = {'workdir': args.workdir, 'step': model.step, 'seeds': list(seeds), 'clips': NUM_CLIPS}
  out.with_suffix('.json').write_text(json.dumps({**meta, 'rows': rows}, indent=2))
  lines = ['| task | case | temperature | figures | seconds |', '|---|---|---:|---|---:|']
  for row in rows:
    figures = ', '.join(f'{key} {fmt.format(row[key])}' for key, fmt in FIGURES[row['task']])
    lines.append(
      f'| {row["task"]} | {row["case"]} | {row["temperature"]:g} | {figures} | '
      f'{row["seconds"]:.0f} |'
    )
  lines.append(
    f'\n{args.workdir} at step {model.step}; {NUM_CLIPS} held-out test clips; the mean over '
    f'sampling seeds {args.seeds}.'
  )
  out.with_suffix('.md').write_text('\n'.join(lines) + '\n')
  print('\n'.join(lines))


if __name__ == '__main__':
  main()
