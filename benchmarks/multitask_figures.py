"""Per-task figures of a multi-task shapes run at each kept checkpoint (the README's tables).

Not a speed benchmark: the quality figures of `configs/shapes/multitask.py`,
with the protocol of the README's table. t2v uses the quickstart's held-out
protocol (80 grid prompts x 2 samples x 3 seeds). Every other task runs
`videogen.eval.tasks_eval.evaluate_tasks` on 64 test clips (with `--seeds 0,1,2`,
sampled once per seed and averaged), with the same-run
references (restore's copy, reconstruction and teacher-forced gains,
in/outpaint's one-token-off fill, restyle's teacher-forced and reconstructed
colour and motion, the reconstructed clips that pass uncond's check). Each
task samples with the run's `config.sampling.per_task`, or with a config file's
(`--sampling configs/shapes/multitask.py`: a run trained before its settings changed).

  python benchmarks/multitask_figures.py --workdir runs/multitask --steps 500,1000,1400 \
      --out benchmarks/results/multitask
"""

from __future__ import annotations

import argparse
import json
import pathlib
import shutil
import tempfile
import time

from videogen import config_lib, quickstart, weights
from videogen.eval import tasks_eval
from videogen.transformer.inference import TextToVideo

NUM_CLIPS = 64
COLUMNS = (
  ('t2v', ('t2v/color_accuracy', 't2v/shape_accuracy', 't2v/motion_accuracy'), '{:.1%}'),
  ('uncond / recon', ('task/uncond/valid', 'task/uncond/recon_valid'), '{:.0%}'),
  ('predict', ('task/predict/direction_kept',), '{:.0%}'),
  ('interpolate', ('task/interpolate/on_path_2px', 'task/interpolate/given_frames_psnr'), None),
  ('inpaint', ('task/inpaint/unmasked_psnr_minus_recon', 'task/inpaint/track_continuous'), None),
  ('outpaint', ('task/outpaint/unmasked_psnr_minus_recon', 'task/outpaint/track_continuous'), None),
  (
    'restore / copy / teacher-forced',
    (
      'task/restore/psnr_gain',
      'task/restore/copy_psnr_gain',
      'task/restore/teacher_forced_psnr_gain',
    ),
    '{:+.1f} dB',
  ),
  ('restyle', ('task/restyle/color_accuracy', 'task/restyle/motion_accuracy'), '{:.0%}'),
  (
    'restyle teacher-forced',
    ('task/restyle/teacher_forced_color_accuracy', 'task/restyle/teacher_forced_motion_accuracy'),
    '{:.0%}',
  ),
  (
    'restyle recon',
    ('task/restyle/recon_color_accuracy', 'task/restyle/recon_motion_accuracy'),
    '{:.0%}',
  ),
)


def at_step(workdir: pathlib.Path, step: int, scratch: pathlib.Path) -> pathlib.Path:
  """A view of `workdir` whose only checkpoint is `step` (`TextToVideo.load` takes the latest)."""
  view = scratch / f'step_{step}'
  (view / 'checkpoints').mkdir(parents=True)
  for entry in workdir.iterdir():
    if entry.name != 'checkpoints':
      (view / entry.name).symlink_to(entry.resolve())
  source = workdir / 'checkpoints' / str(step)
  if not source.is_dir():
    found = (workdir / 'checkpoints').glob('[0-9]*')
    kept = sorted((p.name for p in found), key=int)
    raise SystemExit(f'--steps: no checkpoint {step} in {workdir}; kept: {", ".join(kept)}')
  shutil.copytree(source, view / 'checkpoints' / str(step))
  return view


def use_sampling(model: TextToVideo, config_file: str | None) -> None:
  """Samples `model` with `config_file`'s `config.sampling` instead of its run's (None: as is)."""
  if config_file:
    sampling = config_lib.load_config_file(config_file).sampling
    with model.config.unlocked():
      model.config.sampling = sampling


def figures(
  path: pathlib.Path,
  use_ema: bool = True,
  seeds: tuple[int, ...] = (0,),
  sampling: str | None = None,
) -> dict:
  """The figures of the latest checkpoint of `path` (its EMA weights when kept and
  `use_ema`), with its step and the weights used. Every task but t2v is sampled
  once per seed on the same clips; its figures are the means over the seeds (each
  seed's under `per_seed`)."""
  model = TextToVideo.load(path, use_ema=use_ema)
  use_sampling(model, sampling)
  kind = 'ema' if use_ema and model.config.optimizer.ema_decay > 0 else 'raw'
  start = time.perf_counter()
  held = quickstart.held_out_alignment(
    model, quickstart.held_out_prompts(), seeds=(0, 1, 2), samples_per_prompt=2
  )
  results = {f't2v/{k}': held[k] for k in ('color_accuracy', 'shape_accuracy', 'motion_accuracy')}
  per_seed = {}
  for seed in seeds:
    found = tasks_eval.evaluate_tasks(model, model.config, 'test', num_clips=NUM_CLIPS, seed=seed)
    per_seed[seed] = {k: v for k, v in found.items() if isinstance(v, (int, float))}
  for key in per_seed[seeds[0]]:
    results[key] = sum(values[key] for values in per_seed.values()) / len(seeds)
  results['seconds'] = time.perf_counter() - start
  row = {'step': model.step, 'weights': kind, 'seeds': list(seeds), **results}
  if len(seeds) > 1:
    row['per_seed'] = per_seed
  return row


def cell(row: dict, keys: tuple[str, ...], fmt: str | None) -> str:
  if any(k not in row for k in keys):
    return '–'
  values = [row[k] for k in keys]
  if fmt:
    return ' / '.join(fmt.format(v) for v in values)
  first, second = values  # dB first (signed), or a fraction then dB.
  if 'psnr' in keys[0]:
    return f'{first:+.1f} dB; ' + (f'{second:+.1f} dB' if 'psnr' in keys[1] else f'{second:.0%}')
  return f'{first:.0%}; {second:.1f} dB'


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--workdir', required=True, help='a multi-task transformer workdir')
  parser.add_argument('--steps', default='', help='comma-separated kept steps; default the latest')
  parser.add_argument(
    '--out', default='benchmarks/results/multitask', help='writes OUT.json, OUT.md'
  )
  parser.add_argument(
    '--weights',
    default='ema',
    choices=('ema', 'raw', 'both'),
    help='the EMA weights when the run kept them (default), the raw ones, or a row of each',
  )
  parser.add_argument(
    '--seeds',
    default='0',
    help='comma-separated sampling seeds of every task but t2v (the README table: 0); '
    'the figures are their means',
  )
  parser.add_argument(
    '--sampling',
    default=None,
    help="a config file whose config.sampling (per-task settings) replaces the run's",
  )
  args = parser.parse_args()
  workdir = pathlib.Path(args.workdir)
  use_ema = {'ema': (True,), 'raw': (False,), 'both': (True, False)}[args.weights]
  try:
    steps = [int(s) for s in args.steps.split(',') if s]
  except ValueError:
    raise SystemExit(f'--steps={args.steps}: give kept steps, e.g. 500,1000,1400') from None
  try:
    seeds = tuple(int(s) for s in args.seeds.split(','))
  except ValueError:
    raise SystemExit(f'--seeds={args.seeds}: give integers, e.g. 0,1,2') from None
  rows = []
  try:
    with tempfile.TemporaryDirectory() as scratch:
      if args.weights == 'both' and not weights.read_config(workdir).optimizer.ema_decay > 0:
        raise SystemExit(f'--weights=both: {workdir} kept no EMA (optimizer.ema_decay = 0)')
      views = [at_step(workdir, step, pathlib.Path(scratch)) for step in steps] or [workdir]
      for view in views:
        for ema in use_ema:
          rows.append(figures(view, ema, seeds, args.sampling))
          print(json.dumps(rows[-1]), flush=True)
  except (FileNotFoundError, ValueError) as error:  # Not a multi-task transformer run.
    raise SystemExit(f'--workdir={workdir}: {error}') from None
  out = pathlib.Path(args.out)
  out.parent.mkdir(parents=True, exist_ok=True)
  out.with_suffix('.json').write_text(json.dumps({'workdir': str(workdir), 'rows': rows}, indent=2))
  header = '| step | weights | ' + ' | '.join(name for name, _, _ in COLUMNS) + ' |'
  lines = [header, '|' + '---|' * (len(COLUMNS) + 2)]
  for row in rows:
    cells = [cell(row, keys, fmt) for _, keys, fmt in COLUMNS]
    lines.append(f'| {row["step"]} | {row["weights"]} | ' + ' | '.join(cells) + ' |')
  if len(seeds) > 1:
    lines.append(f'\nEvery task but t2v: the mean over sampling seeds {args.seeds}.')
  out.with_suffix('.md').write_text('\n'.join(lines) + '\n')
  print('\n'.join(lines))


if __name__ == '__main__':
  main()
