"""Transformer speed: train-step tokens/s and MFU; decode tokens/s with and without the KV cache.

  python benchmarks/transformer.py [--train_variants quickstart,tiny,small,base]
      [--decode_variants tiny,small] [--decode_lengths 320,1280] [--decode_batches 1,8]

Train: one optimizer step (forward, backward, AdamW) of the transformer on
random tokens and random text embeddings (the frozen T5 and video tokenizer
are not part of it: training reads cached tokens), clips of 5x8x8 = 320
tokens, vocab 1024, 32 text tokens of width 64; variant `quickstart` is the
quickstart's own model on its own clips (3x8x8 tokens, vocab 1000) at its
batch of 32, split over every device as `videogen quickstart` splits it (on
2 CPU cores: 2 devices), so its gain is tracked. MFU = analytic model FLOPs/s
(`videogen.transformer.losses.train_step_flops`) over the reference FLOP/s:
the chip's peak on GPU/TPU, on CPU a 2048x2048 float32 matmul measured in the
same run (the machine is shared, so both move with its load, which is
recorded).

Decode: tokens/s of `videogen.transformer.sampling.sample_window` for one
clip of 320 (5x8x8) or 1280 (5x16x16) tokens, without guidance. With the KV
cache it samples the whole clip. Without it every position re-runs the full
forward pass over the clip (static shapes: the pass is as long as the clip at
every position, so each position costs the same); that path is timed over the
last `--uncached_positions` positions only (the rest given as a fixed
prefix), and its tokens/s is positions * batch / time. Compilation is
excluded (ahead-of-time compiled before timing).

Writes `benchmarks/results/transformer.json` and `transformer.md`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pathlib
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from videogen.parallel import distributed
from videogen.train import throughput
from videogen.transformer import config as transformer_config
from videogen.transformer import losses, model, sampling
from videogen.transformer.layers import TransformerSpec

RESULTS = pathlib.Path(__file__).resolve().parent / 'results'
VOCAB = 1024
TEXT_LENGTH, TEXT_DIM = 32, 64
TRAIN_LATENT = (5, 8, 8)
DECODE_LATENTS = {320: (5, 8, 8), 1280: (5, 16, 16)}
TRAIN_BATCH = {'tiny': 8, 'small': 4, 'base': 2, 'large': 1, 'xl': 1}
QUICKSTART = 'quickstart'  # Train variant: the quickstart's model, batch and device split.
QUICKSTART_VOCAB = 1000
QUICKSTART_LATENT = (3, 8, 8)


@dataclasses.dataclass
class TrainRow:
  variant: str
  params: int
  batch: int
  tokens_per_step: int
  step_seconds: float
  tokens_per_second: float
  model_tflops_per_second: float
  reference_tflops_per_second: float
  mfu: float
  attention_backend: str = 'auto'
  peak_bytes: int = 0  # `peak_bytes` of the compiled step.
  xla_flops_per_step: float = 0.0  # `xla_flops` of the compiled step (analytic FLOPs give the MFU).


@dataclasses.dataclass
class DecodeRow:
  variant: str
  tokens_per_clip: int
  batch: int
  cached_seconds: float  # Whole clip.
  cached_tokens_per_second: float
  uncached_positions: int
  uncached_seconds: float  # For `uncached_positions` positions.
  uncached_tokens_per_second: float
  speedup: float


def make_spec(
  variant: str, latent: tuple[int, int, int], dtype: str, attention_backend: str = 'auto'
) -> TransformerSpec:
  config = transformer_config.model_config(variant)
  config.attention_backend = attention_backend
  return TransformerSpec.from_config(
    config,
    vocab_size=VOCAB,
    latent_shape=latent,
    text_dim=TEXT_DIM,
    compute_dtype=dtype,
  )


def peak_bytes(compiled) -> int:
  """Device bytes a compiled program needs at its peak: arguments, outputs
  (less the donated buffers they reuse) and temporaries (XLA's memory analysis)."""
  stats = compiled.memory_analysis()
  return int(
    stats.argument_size_in_bytes
    + stats.output_size_in_bytes
    - stats.alias_size_in_bytes
    + stats.temp_size_in_bytes
  )


def xla_flops(compiled) -> float:
  """FLOPs XLA counts in a compiled program (custom calls such as cuDNN attention count 0)."""
  cost = compiled.cost_analysis()
  if isinstance(cost, (list, tuple)):
    cost = cost[0] if cost else {}
  return float((cost or {}).get('flops', 0.0))


def _best_time(fn, repeats: int) -> float:
  best = float('inf')
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn())
    best = min(best, time.perf_counter() - start)
  return best


def quickstart_spec() -> tuple[TransformerSpec, int]:
  """The quickstart's own transformer (`configs/shapes/transformer.py:size=tiny`) and batch.

  Its clips are 9x32x32 frames = 3x8x8 tokens of the tiny FSQ tokenizer
  (1000 codes); its captions come from the default T5 (width 64).
  """
  from videogen import quickstart  # noqa: PLC0415

  config = quickstart.stage_config('transformer', pathlib.Path('unused'))
  spec = TransformerSpec.from_config(
    config.model,
    vocab_size=QUICKSTART_VOCAB,
    latent_shape=QUICKSTART_LATENT,
    text_dim=TEXT_DIM,
    compute_dtype=config.compute_dtype,
  )
  return spec, config.batch_size


def bench_train(
  variant: str,
  dtype: str,
  repeats: int,
  reference: float,
  latent: tuple[int, int, int] = TRAIN_LATENT,
  batch: int = 0,
  attention_backend: str = 'auto',
) -> TrainRow:
  """One train step of `variant` on clips of `latent` tokens; batch 0 = `TRAIN_BATCH`.

  Variant 'quickstart' is the quickstart's transformer at its batch, split
  over every device as its training splits it (`quickstart_spec`).
  """
  if variant == QUICKSTART:
    spec, batch = quickstart_spec()
    vocab = QUICKSTART_VOCAB
  else:
    spec = make_spec(variant, latent, dtype, attention_backend)
    batch = batch or TRAIN_BATCH[variant]
    vocab = VOCAB
  net = model.init_transformer(spec, jax.random.key(0, impl='unsafe_rbg'))
  graphdef, params = nnx.split(net, nnx.Param)
  optimizer = optax.adamw(1e-4)
  keys = jax.random.split(jax.random.key(1), 2)
  tokens = jax.random.randint(keys[0], (batch, spec.seq_length), 0, vocab)
  text = jax.random.normal(keys[1], (batch, TEXT_LENGTH, TEXT_DIM))
  mask = jnp.ones((batch, TEXT_LENGTH), jnp.int32)
  if variant == QUICKSTART:  # Batch over every device, parameters replicated.
    mesh = jax.sharding.Mesh(np.array(jax.devices()), ('data',))
    by_example = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec('data'))
    tokens, text, mask = (jax.device_put(x, by_example) for x in (tokens, text, mask))

  def step(params, opt_state, tokens, text, mask):
    def loss_fn(params):
      logits = nnx.merge(graphdef, params)(model.shift_right(tokens, spec.bos_id), text, mask)
      return losses.token_metrics(logits, tokens, 1e-4)[0]

    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  opt_state = jax.jit(optimizer.init)(params)
  compiled = (
    jax.jit(step, donate_argnums=(0, 1)).lower(params, opt_state, tokens, text, mask).compile()
  )
  state = {'params': params, 'opt': opt_state}

  def run():
    state['params'], state['opt'], loss = compiled(
      state['params'], state['opt'], tokens, text, mask
    )
    return loss

  run()  # Warm-up (first-run allocations).
  seconds = _best_time(run, repeats)
  flops = losses.train_step_flops(spec, batch, spec.seq_length, TEXT_LENGTH)
  count = model.count_params(net)
  tokens_per_step = batch * spec.seq_length
  return TrainRow(
    variant,
    count,
    batch,
    tokens_per_step,
    seconds,
    tokens_per_step / seconds,
    flops / seconds / 1e12,
    reference / 1e12,
    flops / seconds / reference,
    attention_backend,
    peak_bytes(compiled),
    xla_flops(compiled),
  )


def decode_setup(variant: str, latent: tuple[int, int, int], batch: int, dtype: str):
  """(spec, graphdef, state, timed) for decoding clips of `latent` tokens.

  `timed(prefix, use_cache, repeats=1)` compiles `sampling.sample_window`
  ahead of time and returns the best seconds of `repeats` calls that each
  sample the rest of the clip after the int32 [batch, K] `prefix`.
  """
  spec = make_spec(variant, latent, dtype)
  net = model.init_transformer(spec, jax.random.key(0, impl='unsafe_rbg'))
  graphdef, state = nnx.split(net)
  text = jax.random.normal(jax.random.key(1), (batch, TEXT_LENGTH, TEXT_DIM))
  mask = jnp.ones((batch, TEXT_LENGTH), jnp.int32)
  # frame offset, key, cfg scale, and the temperature at each position.
  scalars = (jnp.int32(0), jax.random.key(2), jnp.float32(1.0), jnp.ones(spec.seq_length))
  settings = dict(length=spec.seq_length, top_k=0, top_p=1.0, guided=False)

  def timed(prefix, use_cache, repeats=1):
    args = (graphdef, state, text, mask, prefix, *scalars)
    compiled = (
      sampling.sample_window.trace(*args, **settings, use_cache=use_cache).lower().compile()
    )
    call_args = (state, text, mask, prefix, *scalars)
    return _best_time(lambda: compiled(*call_args), repeats)

  return spec, graphdef, state, timed


def bench_decode(
  variant: str, length: int, batch: int, dtype: str, uncached_positions: int
) -> DecodeRow:
  _, _, _, timed = decode_setup(variant, DECODE_LATENTS[length], batch, dtype)
  cached = timed(jnp.zeros((batch, 0), jnp.int32), True)
  positions = min(uncached_positions, length)
  prefix = jax.random.randint(jax.random.key(3), (batch, length - positions), 0, VOCAB)
  uncached = timed(prefix, False)
  cached_rate = batch * length / cached
  uncached_rate = batch * positions / uncached
  return DecodeRow(
    variant,
    length,
    batch,
    cached,
    cached_rate,
    positions,
    uncached,
    uncached_rate,
    cached_rate / uncached_rate,
  )


def markdown(result: dict) -> str:
  lines = [
    f'# Transformer benchmark ({result["device"]}, {result["compute_dtype"]})',
    '',
    f'MFU reference: {result["reference"]}, measured again before each train row '
    f'(column "ref"); load average {result["load_average_before"]} before, '
    f'{result["load_average_after"]} after.',
    '',
    '## Train step (5x8x8 = 320 tokens per clip, vocab 1024)',
    '',
    'Row "quickstart": the quickstart\'s transformer (3 layers, width 96) on its own clips '
    '(3x8x8 = 192 tokens, vocab 1000) at its batch, split over every device like its run.',
    '',
    '| variant | params | batch | tokens/clip | step s | tokens/s | model TFLOP/s | ref TFLOP/s '
    '| MFU |',
    '|---|---:|---:|---:|---:|---:|---:|---:|---:|',
  ]
  for row in result['train']:
    lines.append(
      f'| {row["variant"]} | {row["params"] / 1e6:.1f}M | {row["batch"]} | '
      f'{row["tokens_per_step"] // row["batch"]} | '
      f'{row["step_seconds"]:.3f} | {row["tokens_per_second"]:.0f} | '
      f'{row["model_tflops_per_second"]:.4f} | {row["reference_tflops_per_second"]:.4f} | '
      f'{row["mfu"]:.1%} |'
    )
  lines += [
    '',
    '## Decode (no guidance; uncached = full forward pass per position)',
    '',
    '| variant | tokens/clip | batch | KV cache tokens/s | no cache tokens/s | speed-up |',
    '|---|---:|---:|---:|---:|---:|',
  ]
  for row in result['decode']:
    lines.append(
      f'| {row["variant"]} | {row["tokens_per_clip"]} | {row["batch"]} | '
      f'{row["cached_tokens_per_second"]:.1f} | {row["uncached_tokens_per_second"]:.2f} | '
      f'{row["speedup"]:.1f}x |'
    )
  return '\n'.join(lines) + '\n'


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--train_variants', default='quickstart,tiny,small,base')
  parser.add_argument('--decode_variants', default='tiny,small')
  parser.add_argument('--decode_lengths', default='320,1280')
  parser.add_argument('--decode_batches', default='1,8')
  parser.add_argument('--uncached_positions', type=int, default=4)
  parser.add_argument('--repeats', type=int, default=3)
  parser.add_argument('--dtype', default='float32')
  parser.add_argument('--out', default=str(RESULTS / 'transformer.json'))
  args = parser.parse_args()
  # The CPU split into devices and XLA:CPU flags as `videogen` sets them (the quickstart row
  # runs as the quickstart does); no effect on GPU/TPU.
  distributed.set_cpu_devices()

  load_before = os.getloadavg()[0]
  reference, reference_name = throughput.reference_flops()
  result = {
    'device': f'{jax.devices()[0].device_kind} x{jax.device_count()} ({platform.machine()})',
    'compute_dtype': args.dtype,
    'reference': reference_name,
    'reference_flops': reference,
    'load_average_before': round(load_before, 2),
    'train': [],
    'decode': [],
  }
  for variant in filter(None, args.train_variants.split(',')):
    if reference_name.startswith('measured'):
      # Re-measured next to each step: on a shared CPU both move with the load.
      reference = throughput.measured_matmul_flops.__wrapped__()
    row = bench_train(variant, args.dtype, args.repeats, reference)
    print(row, flush=True)
    result['train'].append(dataclasses.asdict(row))
  for variant in filter(None, args.decode_variants.split(',')):
    for length in (int(v) for v in args.decode_lengths.split(',')):
      for batch in (int(v) for v in args.decode_batches.split(',')):
        row = bench_decode(variant, length, batch, args.dtype, args.uncached_positions)
        print(row, flush=True)
        result['decode'].append(dataclasses.asdict(row))
  result['load_average_after'] = round(os.getloadavg()[0], 2)
  out = pathlib.Path(args.out)
  out.parent.mkdir(parents=True, exist_ok=True)
  out.write_text(json.dumps(result, indent=2) + '\n')
  table = markdown(result)
  out.with_suffix('.md').write_text(table)
  print(table)


if __name__ == '__main__':
  main()
