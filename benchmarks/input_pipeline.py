"""Input pipeline throughput (clips/s) on the shapes dataset, 17x64x64, batch 32.

  python benchmarks/input_pipeline.py [--num_examples 1000] [--read_threads 1,4]
      [--num_batches 50] [--data_dir DIR]

Builds a shapes dataset into a temporary data dir (or `--data_dir`, reused
when already built), then times the training iterator (shuffle, decode, random
temporal crop, [-1, 1] scaling, batching) after a warm-up. Writes
`benchmarks/results/input_pipeline.json` and prints a markdown table. The
machine's load average is recorded too: on a shared machine, timings move
with it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pathlib
import platform
import tempfile
import time

import ml_collections

from videogen.data import build, pipeline
from videogen.data import config as data_config_lib

RESULTS = pathlib.Path(__file__).resolve().parent / 'results' / 'input_pipeline.json'


@dataclasses.dataclass
class Row:
  read_threads: int
  worker_count: int
  batch_size: int
  num_batches: int
  seconds: float
  clips_per_second: float
  megabytes_per_second: float  # Of float32 video handed to the trainer.


def make_config(args: argparse.Namespace, data_dir: str) -> ml_collections.ConfigDict:
  data = data_config_lib.data_config(
    'shapes', num_frames=args.num_frames, resolution=args.resolution
  )
  data.data_dir = data_dir
  data.num_train_examples = args.num_examples
  data.num_test_examples = max(1, args.num_examples // 10)
  data.worker_count = args.worker_count
  return ml_collections.ConfigDict({'data': data, 'batch_size': args.batch_size, 'seed': 0})


def time_iterator(
  config: ml_collections.ConfigDict, read_threads: int, warmup: int, num_batches: int
) -> Row:
  config.data.read_threads = read_threads
  iterator = pipeline.create_iterator(config, 'train', train=True, process_index=0, process_count=1)
  for _ in range(warmup):  # Fills the prefetch buffer and starts the threads.
    next(iterator)
  start = time.perf_counter()
  for _ in range(num_batches):
    batch = next(iterator)
  seconds = time.perf_counter() - start
  clips = num_batches * config.batch_size
  return Row(
    read_threads=read_threads,
    worker_count=config.data.worker_count,
    batch_size=config.batch_size,
    num_batches=num_batches,
    seconds=seconds,
    clips_per_second=clips / seconds,
    megabytes_per_second=num_batches * batch['video'].nbytes / seconds / 1e6,
  )


def markdown(rows: list[Row], build_seconds: float | None, args: argparse.Namespace) -> str:
  shape = f'{args.num_frames}x{args.resolution}x{args.resolution}'
  lines = []
  if build_seconds is not None:
    lines += [
      f'Build: {args.num_examples + max(1, args.num_examples // 10)} shapes clips of {shape} '
      f'in {build_seconds:.1f} s.',
      '',
    ]
  lines += [
    '| clips | batch | read threads | workers | clips/s | MB/s (float32) |',
    '|---|---|---|---|---|---|',
  ]
  for r in rows:
    lines.append(
      f'| {shape} | {r.batch_size} | {r.read_threads} | {r.worker_count} | '
      f'{r.clips_per_second:.0f} | {r.megabytes_per_second:.0f} |'
    )
  return '\n'.join(lines)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--num_examples', type=int, default=1000, help='Train clips to build.')
  parser.add_argument('--num_frames', type=int, default=17)
  parser.add_argument('--resolution', type=int, default=64)
  parser.add_argument('--batch_size', type=int, default=32)
  parser.add_argument('--read_threads', default='1,4', help='Comma-separated settings to time.')
  parser.add_argument('--worker_count', type=int, default=0, help='grain worker processes.')
  parser.add_argument('--warmup_batches', type=int, default=5)
  parser.add_argument('--num_batches', type=int, default=50, help='Timed batches per setting.')
  parser.add_argument('--data_dir', default='', help='TFDS data dir; default: a temporary one.')
  parser.add_argument('--out', default=str(RESULTS), help='Where to write the JSON results.')
  args = parser.parse_args()

  with tempfile.TemporaryDirectory(prefix='videogen_bench_') as temporary:
    config = make_config(args, args.data_dir or temporary)
    report = build.build_dataset(config.data)
    build_seconds = None if report.already_built else report.seconds
    rows = [
      time_iterator(config, int(threads), args.warmup_batches, args.num_batches)
      for threads in args.read_threads.split(',')
    ]
  result = {
    'benchmark': 'input_pipeline',
    'dataset': f'shapes {args.num_frames}x{args.resolution}x{args.resolution}',
    'num_examples': args.num_examples,
    'build_seconds': build_seconds,
    'cpu_count': os.cpu_count(),
    'load_average_1min': os.getloadavg()[0],
    'machine': platform.machine(),
    'rows': [dataclasses.asdict(r) for r in rows],
  }
  out = pathlib.Path(args.out)
  out.parent.mkdir(parents=True, exist_ok=True)
  out.write_text(json.dumps(result, indent=2) + '\n')
  print(markdown(rows, build_seconds, args))
  print(f'\nWrote {out}')


if __name__ == '__main__':
  main()
