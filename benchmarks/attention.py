"""The `xla` attention backend against `jax.nn.dot_product_attention`, forward and backward.

  python benchmarks/attention.py [--lengths 192,385] [--batch 16] [--repeats 5]

The `xla` backend (`videogen.transformer.attention`, what CPU runs) stacks each
query group's rows under its kv head; `jax.nn.dot_product_attention(...,
implementation='xla')`, the reference, maps over the query groups instead. Both
run causal self-attention in float32 at the tiny models' heads (4 query and 2
kv heads of width 24), at the sequence lengths of the quickstart transformer
(192 tokens) and of the multi-task config (385: task token, 192-token canvas,
the clip), on a batch of 16 (the batch of 32 of both configs, per device of a
2-core machine). Each time is the fastest of `--repeats` rounds of 5 calls,
compiled beforehand; the ratio is the reference's time over ours, both
measured in the same run, with the C allocator and XLA:CPU flags the
`videogen` command runs with.

Writes `benchmarks/results/attention.json` and `attention.md`.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import pathlib
import platform
import time

from videogen.parallel import distributed, host_memory

if __name__ == '__main__':
  host_memory.restart_with_kept_memory()  # The allocator `videogen` runs with.
distributed.set_cpu_xla_flags()  # The flags `videogen` runs XLA:CPU with; before JAX starts.

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from videogen.transformer import attention  # noqa: E402

RESULTS = pathlib.Path(__file__).resolve().parent / 'results'
HEADS, KV_HEADS, HEAD_DIM = 4, 2, 24


def _ours(q, k, v):
  return attention.dot_product_attention(q, k, v, causal=True, backend='xla')


def _reference(q, k, v):
  return jax.nn.dot_product_attention(q, k, v, is_causal=True, implementation='xla')


def _loss(attend, q, k, v, cotangent):
  return jnp.sum(attend(q, k, v) * cotangent)


def _seconds(fn, args, repeats: int) -> float:
  jax.block_until_ready(fn(*args))  # Compiles.
  rounds = []
  for _ in range(repeats):
    start = time.perf_counter()
    for _ in range(5):
      out = fn(*args)
    jax.block_until_ready(out)
    rounds.append((time.perf_counter() - start) / 5)
  return min(rounds)


def measure(length: int, batch: int, repeats: int) -> dict:
  keys = jax.random.split(jax.random.key(0), 4)
  q = jax.random.normal(keys[0], (batch, length, HEADS, HEAD_DIM))
  k = jax.random.normal(keys[1], (batch, length, KV_HEADS, HEAD_DIM))
  v = jax.random.normal(keys[2], (batch, length, KV_HEADS, HEAD_DIM))
  cotangent = jax.random.normal(keys[3], q.shape)
  row = {'length': length, 'batch': batch}
  outputs = {}
  for name, attend in (('ours', _ours), ('reference', _reference)):
    forward = jax.jit(attend)
    grads = jax.jit(jax.grad(_loss, argnums=(1, 2, 3)), static_argnums=0)
    grads = functools.partial(grads, attend)
    row[f'{name}_forward_ms'] = 1e3 * _seconds(forward, (q, k, v), repeats)
    row[f'{name}_forward_backward_ms'] = 1e3 * _seconds(grads, (q, k, v, cotangent), repeats)
    outputs[name] = (forward(q, k, v), *grads(q, k, v, cotangent))
  row['max_abs_difference'] = max(
    float(jnp.max(jnp.abs(a - b))) for a, b in zip(*outputs.values(), strict=True)
  )
  for pass_ in ('forward', 'forward_backward'):
    row[f'{pass_}_speedup'] = row[f'reference_{pass_}_ms'] / row[f'ours_{pass_}_ms']
  return row


def markdown(result: dict) -> str:
  lines = [
    f'Attention, `python benchmarks/attention.py`: {result["devices"]}, '
    f'{result["cpus"]} CPUs, {result["platform"]}, jax {result["jax"]}; causal, float32, '
    f'{HEADS}/{KV_HEADS} q/kv heads of width {HEAD_DIM}. Reference: '
    "`jax.nn.dot_product_attention(implementation='xla')` in the same run; load average "
    f'{result["load_average_before"]} before, {result["load_average_after"]} after.',
    '',
    '| tokens | batch | forward ms: ours / jax.nn (speed-up) '
    '| forward + backward ms: ours / jax.nn (speed-up) | max abs difference |',
    '|---:|---:|---|---|---:|',
  ]
  for row in result['rows']:
    cells = [
      f'{row[f"ours_{p}_ms"]:.1f} / {row[f"reference_{p}_ms"]:.1f} ({row[f"{p}_speedup"]:.2f}×)'
      for p in ('forward', 'forward_backward')
    ]
    lines.append(
      f'| {row["length"]} | {row["batch"]} | {cells[0]} | {cells[1]} '
      f'| {row["max_abs_difference"]:.1e} |'
    )
  return '\n'.join(lines) + '\n'


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--lengths', default='192,385')
  parser.add_argument('--batch', type=int, default=16)
  parser.add_argument('--repeats', type=int, default=5)
  parser.add_argument('--out', default=str(RESULTS / 'attention.json'))
  args = parser.parse_args()
  try:
    lengths = [int(n) for n in args.lengths.split(',')]
  except ValueError:
    raise SystemExit(f'--lengths={args.lengths}: give integers, e.g. 192,385') from None
  result = {
    'devices': str(jax.devices()[0].device_kind),
    'cpus': os.cpu_count(),
    'platform': platform.platform(),
    'jax': jax.__version__,
    'load_average_before': round(os.getloadavg()[0], 2),
  }
  result['rows'] = [measure(length, args.batch, args.repeats) for length in lengths]
  result['load_average_after'] = round(os.getloadavg()[0], 2)
  out = pathlib.Path(args.out)
  out.parent.mkdir(parents=True, exist_ok=True)
  out.write_text(json.dumps(result, indent=2) + '\n')
  out.with_suffix('.md').write_text(markdown(result))
  print(markdown(result))


if __name__ == '__main__':
  main()
