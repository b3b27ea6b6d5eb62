"""Pod plan: which TPU slice each model size needs, from real XLA:TPU compilations.

  python benchmarks/pod_plan.py [--max_minutes 20] [--out benchmarks/results/pod_plan]
  python benchmarks/pod_plan.py --match tokenizer   # re-plan those rows, keep the others

For each row (config, TPU slice) it compiles the train step for the slice
with `videogen.compile` (libtpu, no TPU needed) and tries a few settings in
order, stopping at the first that fits in HBM: FSDP over every chip without
rematerialisation, then full rematerialisation, then tensor parallelism 4
with it. All rows use bfloat16 activations (what a TPU run would use) and the
config's global batch (raised to a multiple of the batch shards). Step time,
tokens/s and MFU are roofline ESTIMATES from published chip figures, not
measurements. Rows that do not finish within `--max_minutes` are listed as
left out. Writes `<out>.json` and `<out>.md`.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
import time

os.environ.setdefault('JAX_PLATFORMS', 'cpu')
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from videogen import compile as compile_lib  # noqa: E402
from videogen import config_lib  # noqa: E402

GIB = 2**30
# (label, config, TPU slice, slices); the most asked-for rows first.
ROWS = [
  ('8b 17x128x128', 'configs/ucf101/transformer.py:size=8b', 'v5p-128', 1),
  ('8b 17x256x256', 'configs/video_folder/transformer.py:size=8b,resolution=256', 'v5p-128', 1),
  ('3b 17x128x128', 'configs/ucf101/transformer.py:size=3b', 'v5p-128', 1),
  ('base 17x128x128', 'configs/ucf101/transformer.py:size=base', 'v5p-128', 1),
  ('8b 17x128x128', 'configs/ucf101/transformer.py:size=8b', 'v6e-256', 1),
  ('xl 17x128x128', 'configs/ucf101/transformer.py:size=xl', 'v5e-256', 1),
  ('8b 17x128x128', 'configs/ucf101/transformer.py:size=8b', 'v5p-128', 2),
  ('8b 17x256x256', 'configs/video_folder/transformer.py:size=8b,resolution=256', 'v5p-512', 1),
  ('3b 17x256x256', 'configs/video_folder/transformer.py:size=3b,resolution=256', 'v5e-64', 1),
  ('large 17x128x128', 'configs/ucf101/transformer.py:size=large', 'v5e-64', 1),
  ('tokenizer base 17x128x128', 'configs/ucf101/tokenizer.py:size=base,gan=False', 'v5p-128', 1),
  (
    'tokenizer base 17x256x256',
    'configs/video_folder/tokenizer.py:size=base,resolution=256',
    'v5p-128',
    1,
  ),
]
# (mesh fsdp, mesh tensor, remat policy) tried in order until one fits.
TRIALS = [(-1, 1, 'none'), (-1, 1, 'full'), (-1, 4, 'full')]
# Below this estimated MFU, larger global batches are tried (MaxText's per-device batch).
MFU_TARGET = 0.5
BATCH_SCALES = (2, 4)


def _config(path: str, fsdp: int, tensor: int, remat: str, chips: int, batch_scale: int = 1):
  config = config_lib.load_config_file(path)
  overrides = {
    'compute_dtype': 'bfloat16',
    'mesh.data': 1,
    'mesh.fsdp': fsdp,
    'mesh.tensor': tensor,
  }
  if config.stage == 'transformer':
    overrides['model.remat_policy'] = remat
  shards = chips // tensor
  overrides['batch_size'] = -(-config.batch_size * batch_scale // shards) * shards
  return config_lib.apply_overrides(config, overrides)


def _trial(label, path, accelerator, num_slices, chips, stage, fsdp, tensor, remat, scale=1):
  config = _config(path, fsdp, tensor, remat, chips, scale)
  start = time.perf_counter()
  report = compile_lib.compile_config(config, accelerator, num_slices, decode=False)
  (train,) = report.programs
  peak = report.chip.peak_bf16_flops
  result = {
    'row': label,
    'config': path,
    'accelerator': accelerator + (f' x{num_slices}' if num_slices > 1 else ''),
    'chips': report.num_chips,
    'mesh': report.mesh,
    'remat': remat if stage == 'transformer' else '-',
    'batch': config.batch_size,
    'peak_gib': train.peak_bytes / GIB,
    'hbm_gib': train.hbm_bytes / GIB,
    'fits': train.fits,
    'estimated_mfu': train.mfu(peak),
    'estimated_items_per_s': train.items_per_second(),
    'item': train.item_name,
    'estimated_bound': train.bound,
    'estimated_step_ms': train.step_seconds * 1e3,
    'mosaic_kernels': train.mosaic_kernels,
    'costliest': (
      f'{train.top_ops[0][0]} ({100 * train.top_ops[0][1] / train.step_seconds:.0f}%, '
      f'{train.top_ops[0][2]})'
      if train.top_ops
      else '-'
    ),
    'compile_s': time.perf_counter() - start,
    'description': report.description,
    'program': train.to_json(peak),
  }
  mfu = f', est. MFU {100 * result["estimated_mfu"]:.0f}%' if train.fits else ''
  result['trial'] = (
    f'fsdp={report.mesh["fsdp"]},tensor={tensor},remat={remat},batch={config.batch_size}: '
    f'{result["peak_gib"]:.1f} GiB{mfu}'
  )
  print(f'  {label} on {result["accelerator"]}: {result["trial"]}', flush=True)
  return result


def plan_row(label: str, path: str, accelerator: str, num_slices: int) -> dict:
  """Tries TRIALS for one row until one fits; below MFU_TARGET it then tries the
  global batch x2 and x4 (more tokens per chip) and keeps the best that fits."""
  from videogen.parallel import tpu  # noqa: PLC0415

  chips = tpu.parse_accelerator(accelerator).num_chips * num_slices
  stage = config_lib.load_config_file(path).stage
  trials = TRIALS if stage == 'transformer' else [(-1, 1, 'none')]
  tried = []
  result = None
  for fsdp, tensor, remat in trials:
    result = _trial(label, path, accelerator, num_slices, chips, stage, fsdp, tensor, remat)
    tried.append(result['trial'])
    if result['fits']:
      break
  if result['fits'] and stage == 'transformer':
    for scale in BATCH_SCALES:
      if result['estimated_mfu'] >= MFU_TARGET:
        break
      larger = _trial(
        label, path, accelerator, num_slices, chips, stage, fsdp, tensor, remat, scale
      )
      tried.append(larger['trial'])
      if not larger['fits']:
        break
      if larger['estimated_mfu'] > result['estimated_mfu']:
        result = larger
  result['tried'] = tried
  return result


def to_markdown(
  rows: list[dict], left_out: list[str], minutes: float, replanned: list[str] | tuple = ()
) -> str:
  lines = [
    '# Pod plan (train step compiled with XLA:TPU via libtpu on a 2-core CPU machine)',
    '',
    "Memory is the compiler's per-chip figure. Step time, tokens/s and MFU are ESTIMATES, not",
    'measurements: a per-operation roofline of the compiled program (videogen/parallel/',
    'hlo_roofline.py): each operation at max(its matmul FLOPs / peak, its HBM bytes at tiled',
    'layout sizes / bandwidth), summed in program order, scanned layers once per trip, splash',
    'kernels by their matmuls at the causal block density, collectives overlapped; arrays the',
    'compiler keeps in on-chip VMEM move no HBM bytes, their prefetches count once. MFU is the',
    'analytic model FLOPs over that time at peak: it is lowered by what remat and the attention',
    "kernels' backward recompute, by layout padding and by HBM-bound operations. Vector-unit",
    'time, ICI latency and scheduling gaps are not modelled, so real MFU will be lower still.',
    'bfloat16 activations, float32 parameters and AdamW state.',
    '',
    '| model | slice | chips | mesh (fsdp x tensor) | remat | batch | peak GiB/chip | HBM | fits |'
    ' est. MFU | est. tokens/s | bound | costliest operation | compile s |',
    '|---|---|---|---|---|---|---|---|---|---|---|---|---|---|',
  ]
  for r in rows:
    mesh = f'{r["mesh"]["fsdp"]} x {r["mesh"]["tensor"]}'
    lines.append(
      f'| {r["row"]} | {r["accelerator"]} | {r["chips"]} | {mesh} | {r["remat"]} | {r["batch"]} '
      f'| {r["peak_gib"]:.1f} | {r["hbm_gib"]:.0f} | {"yes" if r["fits"] else "NO"} '
      + (
        f'| {100 * r["estimated_mfu"]:.0f}% | {r["estimated_items_per_s"]:,.0f} {r["item"]} '
        f'| {r["estimated_bound"]} '
        if r['fits']
        else '| - | - | - '
      )
      + f'| {r["costliest"]} | {r["compile_s"]:.0f} |'
    )
  lines += ['', f'Wall time {minutes:.1f} min.']
  if replanned:
    lines += ['', ' '.join(replanned) + ' The wall time above is of the run that planned all rows.']
  if left_out:
    lines += ['', 'Left out (time budget): ' + '; '.join(left_out) + '.']
  return '\n'.join(lines) + '\n'


def _write(out: pathlib.Path, result: dict) -> str:
  out.parent.mkdir(parents=True, exist_ok=True)
  out.with_suffix('.json').write_text(json.dumps(result, indent=2) + '\n')
  text = to_markdown(
    result['rows'],
    result.get('left_out', []),
    result.get('minutes', 0.0),
    result.get('replanned', []),
  )
  out.with_suffix('.md').write_text(text)
  return text


def replan(out: pathlib.Path, match: str) -> str:
  """Compiles again the rows whose label contains `match` and puts them in place of
  their earlier results in `out`.json; the other rows are kept as they were."""
  result = json.loads(out.with_suffix('.json').read_text())
  chosen = [row for row in ROWS if match in row[0]]
  if not chosen:
    raise SystemExit(f'--match {match!r} names no row; rows: {", ".join(r[0] for r in ROWS)}')
  start = time.perf_counter()
  for label, path, accelerator, slices in chosen:
    new = plan_row(label, path, accelerator, slices)
    result['rows'] = [
      new
      if (r['row'], r['config'], r['accelerator'])
      == (new['row'], new['config'], new['accelerator'])
      else r
      for r in result['rows']
    ]
    if new not in result['rows']:
      result['rows'].append(new)
  minutes = (time.perf_counter() - start) / 60
  earlier = [line for line in result.get('replanned', []) if f'`--match {match}`' not in line]
  result['replanned'] = [
    *earlier,
    f'Re-planned with `--match {match}`: {len(chosen)} rows, {minutes:.1f} min.',
  ]
  return _write(out, result)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--max_minutes', type=float, default=20.0)
  parser.add_argument('--out', default='benchmarks/results/pod_plan')
  parser.add_argument('--rows', type=int, default=len(ROWS), help='Only the first N rows.')
  parser.add_argument(
    '--match', default='', help='Re-plan only rows whose label contains this; keep the others.'
  )
  args = parser.parse_args()
  out = pathlib.Path(args.out)
  if args.match:
    print(replan(out, args.match))
    return
  start = time.perf_counter()
  rows, left_out = [], []
  for label, path, accelerator, slices in ROWS[: args.rows]:
    if (time.perf_counter() - start) / 60 > args.max_minutes:
      left_out.append(f'{label} on {accelerator}' + (f' x{slices}' if slices > 1 else ''))
      continue
    rows.append(plan_row(label, path, accelerator, slices))
    minutes = (time.perf_counter() - start) / 60
    _write(out, {'rows': rows, 'left_out': left_out, 'minutes': minutes})
  left_out += [
    f'{label} on {acc}' + (f' x{s}' if s > 1 else '') for label, _, acc, s in ROWS[args.rows :]
  ]
  minutes = (time.perf_counter() - start) / 60
  print(_write(out, {'rows': rows, 'left_out': left_out, 'minutes': minutes}))


if __name__ == '__main__':
  main()
