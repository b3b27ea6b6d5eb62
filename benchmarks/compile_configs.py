"""Every config in configs/ compiled for one TPU slice at its own settings.

  python benchmarks/compile_configs.py [--accelerator v5p-32] [--out benchmarks/results/config_compile]

Each config file, at its default arguments and unchanged (its size, batch,
mesh, dtype and remat), has its train step (and the transformer's decode
step) compiled by XLA:TPU through `videogen.compile` (libtpu, no TPU
needed): whether the real compiler takes it, whether it fits the chip's HBM,
and the per-operation roofline ESTIMATE of MFU. The pod plan
(`benchmarks/pod_plan.py`) sizes the large variants; this table checks that
nothing in configs/ is left that the TPU compiler refuses. Writes `<out>.json`
and `<out>.md`.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
import time

os.environ.setdefault('JAX_PLATFORMS', 'cpu')
ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from videogen import compile as compile_lib  # noqa: E402
from videogen import config_lib  # noqa: E402

GIB = 2**30


def config_files() -> list[str]:
  """configs/<dataset>/<stage>.py, every one; tokenizers (slow to compile with their GAN) last."""
  paths = [
    str(path.relative_to(ROOT))
    for path in (ROOT / 'configs').glob('*/*.py')
    if path.name != '__init__.py'
  ]
  return sorted(paths, key=lambda path: (path.endswith('tokenizer.py'), path))


def compile_row(path: str, accelerator: str) -> dict:
  config = config_lib.load_config_file(path)
  start = time.perf_counter()
  try:
    report = compile_lib.compile_config(config, accelerator)
  except Exception as error:  # noqa: BLE001  (the table records what the compiler said)
    return {
      'config': path,
      'compiles': False,
      'error': f'{type(error).__name__}: {str(error).splitlines()[0][:300]}',
      'compile_s': time.perf_counter() - start,
    }
  peak = report.chip.peak_bf16_flops
  train = report.programs[0]
  return {
    'config': path,
    'compiles': not train.compiler_error,
    'fits': report.fits,
    'description': report.description,
    'mesh': report.mesh,
    'programs': {
      p.name: {
        'peak_gib': p.peak_bytes / GIB,
        'fits': p.fits,
        'estimated_mfu': p.mfu(peak),
        'mosaic_kernels': p.mosaic_kernels,
        'compiler_error': p.compiler_error,
      }
      for p in report.programs
    },
    'compile_s': time.perf_counter() - start,
  }


def to_markdown(rows: list[dict], accelerator: str, minutes: float) -> str:
  lines = [
    f'# Every config compiled for {accelerator} (XLA:TPU via libtpu on a 2-core CPU machine)',
    '',
    'Each config at its own defaults (size, batch, mesh, dtype, remat). Peak memory is the',
    "compiler's per-chip figure; MFU is the per-operation roofline ESTIMATE of",
    "`videogen compile` (not measured). Decode is the transformer's KV-cached sampling step.",
    '',
    '| config | compiles | train peak GiB/chip | fits | est. train MFU | decode peak GiB | '
    'Mosaic kernels | compile s |',
    '|---|---|---|---|---|---|---|---|',
  ]
  for r in rows:
    if 'left_out' in r:
      lines.append(f'| {r["config"]} | not tried ({r["left_out"]}) | | | | | | |')
      continue
    if 'error' in r:
      lines.append(f'| {r["config"]} | NO: {r["error"]} | | | | | | {r["compile_s"]:.0f} |')
      continue
    train = r['programs']['train step']
    decode = r['programs'].get('decode step')
    decode_peak = f'{decode["peak_gib"]:.2f}' if decode else '-'
    lines.append(
      f'| {r["config"]} | {"yes" if r["compiles"] else "NO"} | {train["peak_gib"]:.2f} '
      f'| {"yes" if r["fits"] else "NO"} | {100 * train["estimated_mfu"]:.0f}% '
      f'| {decode_peak} | {train["mosaic_kernels"]} '
      f'| {r["compile_s"]:.0f} |'
    )
  lines += ['', f'Wall time {minutes:.1f} min.']
  return '\n'.join(lines) + '\n'


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--accelerator', default='v5p-32')
  parser.add_argument('--out', default='benchmarks/results/config_compile')
  parser.add_argument('--max_minutes', type=float, default=60.0, help='Start no config after this.')
  args = parser.parse_args()
  start = time.perf_counter()
  out = pathlib.Path(args.out)
  out.parent.mkdir(parents=True, exist_ok=True)
  rows = []
  for path in config_files():
    if (time.perf_counter() - start) / 60 > args.max_minutes:
      rows.append({'config': path, 'compiles': None, 'left_out': 'time budget'})
      continue
    rows.append(compile_row(path, args.accelerator))
    print(f'  {path}: compiles={rows[-1]["compiles"]}', flush=True)
    minutes = (time.perf_counter() - start) / 60
    out.with_suffix('.json').write_text(
      json.dumps({'accelerator': args.accelerator, 'rows': rows, 'minutes': minutes}, indent=2)
      + '\n'
    )
    out.with_suffix('.md').write_text(to_markdown(rows, args.accelerator, minutes))
  print(to_markdown(rows, args.accelerator, (time.perf_counter() - start) / 60))


if __name__ == '__main__':
  main()
