"""T5 encoder throughput (prompts/s) for T5 v1.1 small and base shapes, random weights.

  python benchmarks/text_encoder.py [--sizes small,base] [--batch_size 8] [--max_length 64]

Writes `benchmarks/results/text_encoder.json` and prints a markdown table.
Timings on a shared machine mean little alone, so the same run measures a
large float32 matmul and every figure is also given as a fraction of that
matmul's FLOP/s (the share of the machine's dense-math speed the encoder
reaches). FLOPs are the analytic matmul count of the encoder forward
(projections, feed-forward, attention scores and mixing), 2 per multiply-add.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pathlib
import platform
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from videogen.text import T5Encoder, T5EncoderConfig

# Hugging Face google/t5-v1_1-{small,base} encoder shapes.
SIZES = {
  'small': T5EncoderConfig(
    vocab_size=32128, d_model=512, d_kv=64, d_ff=1024, num_layers=8, num_heads=6
  ),
  'base': T5EncoderConfig(
    vocab_size=32128, d_model=768, d_kv=64, d_ff=2048, num_layers=12, num_heads=12
  ),
}
RESULTS = pathlib.Path(__file__).resolve().parent / 'results' / 'text_encoder.json'


@dataclasses.dataclass
class Row:
  size: str
  parameters: int
  batch_size: int
  max_length: int
  dtype: str
  seconds_per_batch: float
  prompts_per_second: float
  gflops_per_second: float
  fraction_of_matmul: float


def encoder_flops(config: T5EncoderConfig, length: int) -> float:
  """Matmul FLOPs of one encoder forward over one sequence of `length` tokens."""
  d, inner, f = config.d_model, config.inner_dim, config.d_ff
  projections = 4 * d * inner  # q, k, v, o.
  feed_forward = (3 if config.is_gated else 2) * d * f
  attention = 2 * length * inner  # scores and mixing, per query token.
  return 2.0 * config.num_layers * length * (projections + feed_forward + attention)


def _median_seconds(run, repeats: int) -> float:
  jax.block_until_ready(run())  # Compile and warm up.
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(run())
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def matmul_flops_per_second(n: int, repeats: int) -> float:
  """float32 FLOP/s of an [n, n] @ [n, n] matmul, the same-run reference."""
  keys = jax.random.split(jax.random.key(0))
  a, b = (jax.random.normal(k, (n, n), jnp.float32) for k in keys)
  matmul = jax.jit(lambda a, b: jnp.dot(a, b, precision=jax.lax.Precision.HIGHEST))
  return 2.0 * n**3 / _median_seconds(lambda: matmul(a, b), repeats)


def benchmark_size(
  name: str,
  batch_size: int,
  max_length: int,
  dtype: str,
  repeats: int,
  matmul_rate: float,
) -> Row:
  config = SIZES[name]
  encoder = T5Encoder.from_config(config, dtype=dtype)
  parameters = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(encoder.state))
  rng = np.random.default_rng(0)
  ids = rng.integers(3, config.vocab_size, (batch_size, max_length)).astype(np.int32)
  mask = np.ones_like(ids)
  mask[:, max_length * 3 // 4 :] = 0  # A realistic padded tail.
  seconds = _median_seconds(lambda: encoder.encode_ids(ids, mask), repeats)
  rate = encoder_flops(config, max_length) * batch_size / seconds
  return Row(
    size=name,
    parameters=parameters,
    batch_size=batch_size,
    max_length=max_length,
    dtype=dtype,
    seconds_per_batch=seconds,
    prompts_per_second=batch_size / seconds,
    gflops_per_second=rate / 1e9,
    fraction_of_matmul=rate / matmul_rate,
  )


def markdown(rows: list[Row], matmul_rate: float, matmul_size: int) -> str:
  lines = [
    f'Reference: float32 {matmul_size}x{matmul_size} matmul at {matmul_rate / 1e9:.1f} GFLOP/s (same run).',
    '',
    '| T5 v1.1 | params | batch x length | dtype | ms / batch | prompts/s | GFLOP/s | of matmul |',
    '|---|---|---|---|---|---|---|---|',
  ]
  for r in rows:
    lines.append(
      f'| {r.size} | {r.parameters / 1e6:.1f}M | {r.batch_size} x {r.max_length} | {r.dtype} | '
      f'{r.seconds_per_batch * 1e3:.0f} | {r.prompts_per_second:.1f} | '
      f'{r.gflops_per_second:.1f} | {r.fraction_of_matmul:.2f} |'
    )
  return '\n'.join(lines)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--sizes', default='small,base', help='Comma-separated subset of small,base.')
  parser.add_argument('--batch_size', type=int, default=8, help='Prompts per encoder call.')
  parser.add_argument('--max_length', type=int, default=64, help='Tokens per prompt.')
  parser.add_argument('--dtype', default='float32', choices=('float32', 'bfloat16'))
  parser.add_argument('--repeats', type=int, default=3, help='Timed calls per size (median kept).')
  parser.add_argument('--matmul_size', type=int, default=2048, help='Side of the reference matmul.')
  parser.add_argument('--out', default=str(RESULTS), help='Where to write the JSON results.')
  args = parser.parse_args()

  matmul_rate = matmul_flops_per_second(args.matmul_size, args.repeats)
  rows = [
    benchmark_size(name, args.batch_size, args.max_length, args.dtype, args.repeats, matmul_rate)
    for name in args.sizes.split(',')
  ]
  result = {
    'benchmark': 'text_encoder',
    'device': jax.devices()[0].device_kind,
    'platform': jax.default_backend(),
    'cpu_count': os.cpu_count(),
    'machine': platform.machine(),
    'jax_version': jax.__version__,
    'reference_matmul': {
      'size': args.matmul_size,
      'gflops_per_second': matmul_rate / 1e9,
    },
    'rows': [dataclasses.asdict(r) for r in rows],
  }
  out = pathlib.Path(args.out)
  out.parent.mkdir(parents=True, exist_ok=True)
  out.write_text(json.dumps(result, indent=2) + '\n')
  print(markdown(rows, matmul_rate, args.matmul_size))
  print(f'\nWrote {out}')


if __name__ == '__main__':
  main()
