"""Video tokenizer speed: encode/decode frames/s and train-step clips/s.

  python benchmarks/tokenizer.py                    # tiny and small at 17x64x64, tiny at 17x128x128
  python benchmarks/tokenizer.py --large            # + small at 128, base at 64 and 128
  python benchmarks/tokenizer.py --variants tiny --sizes 64 --iterations 5

Each case builds the variant (FSQ), compiles encode, decode and one train
step on one device, runs one warmup call, then times `--iterations` calls.
FLOP/s are the analytic convolution FLOPs (`VideoAutoencoder.flops`, 3x
forward for a train step) divided by the measured time, and `fraction` is
that over a large matmul's FLOP/s measured in the same run: how much of the
machine's dense-kernel speed the convolutions reach. Results go to
`benchmarks/results/tokenizer.json` and a markdown table on stdout.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from videogen import config_lib
from videogen.parallel import mesh as mesh_lib
from videogen.parallel import sharding
from videogen.train import throughput
from videogen.vq import Tokenizer
from videogen.vq import config as vq_config
from videogen.vq.model import create_model
from videogen.vq.task import TokenizerTask

DEFAULT_CASES = (('tiny', 64), ('small', 64), ('tiny', 128))
LARGE_CASES = (('small', 128), ('base', 64), ('base', 128))
RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'results', 'tokenizer.json')


@dataclasses.dataclass
class Result:
  variant: str
  frames: int
  resolution: int
  batch: int
  parameters: int
  forward_gflops_per_clip: float
  encode_frames_per_s: float
  decode_frames_per_s: float
  train_clips_per_s: float
  encode_gflops_per_s: float
  decode_gflops_per_s: float
  train_gflops_per_s: float
  encode_fraction: float
  decode_fraction: float
  train_fraction: float


def _time(fn, iterations: int) -> float:
  """Seconds per call of `fn` (which blocks), after one warmup call."""
  fn()
  start = time.perf_counter()
  for _ in range(iterations):
    fn()
  return (time.perf_counter() - start) / iterations


def experiment_config(
  variant: str, frames: int, resolution: int, batch: int, model_overrides: dict | None = None
):
  """The FSQ tokenizer config of `variant`, `model_overrides` (field -> value) applied."""
  config = config_lib.train_config()
  config.stage = 'tokenizer'
  config.batch_size = batch
  config.model = vq_config.model_config(variant, 'fsq')
  config.model.update(model_overrides or {})
  config.loss = vq_config.loss_config()
  config.data = ml_collections.ConfigDict(
    {'name': 'shapes', 'num_frames': frames, 'height': resolution, 'width': resolution}
  )
  return config_lib.lock(config)


def _time_codec(config, video: jax.Array, iterations: int) -> tuple[float, float]:
  """Seconds per `Tokenizer.encode` and per `Tokenizer.decode` of `video`."""
  tokenizer = Tokenizer.from_model(create_model(config.model, jax.random.key(0)), config.model)
  tokens = tokenizer.encode(video)
  encode_s = _time(lambda: tokenizer.encode(video).block_until_ready(), iterations)
  decode_s = _time(lambda: tokenizer.decode(tokens).block_until_ready(), iterations)
  return encode_s, decode_s


def _time_train_step(
  task: TokenizerTask, mesh, video: jax.Array, iterations: int
) -> tuple[float, int]:
  """(seconds per train step on `video`, parameter count)."""
  with sharding.axis_rules(mesh, task.config.logical_axis_rules):
    state = jax.jit(task.init_state)(jax.random.key(0))
    parameters = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(state.params))
    step = jax.jit(task.train_step, donate_argnums=(0,))
    holder = {'state': state}
    del state  # Donated on the first call.

    def train_once():
      holder['state'], metrics = step(holder['state'], {'video': video}, jax.random.key(1))
      metrics['loss'].block_until_ready()

    return _time(train_once, iterations), parameters


def benchmark(
  variant: str,
  frames: int,
  resolution: int,
  batch: int,
  iterations: int,
  reference: float,
  model_overrides: dict | None = None,
) -> Result:
  config = experiment_config(variant, frames, resolution, batch, model_overrides)
  device = jax.devices()[:1]
  mesh = mesh_lib.create_mesh(config.mesh, device)
  rng = np.random.default_rng(0)
  video = jnp.asarray(
    rng.uniform(-1, 1, (batch, frames, resolution, resolution, 3)).astype(np.float32)
  )

  encode_s, decode_s = _time_codec(config, video, iterations)
  task = TokenizerTask(config, mesh)
  train_s, parameters = _time_train_step(task, mesh, video, iterations)

  encoder_flops, latent = task.abstract_model.encoder.flops((frames, resolution, resolution))
  decoder_flops, _ = task.abstract_model.decoder.flops(latent)
  train_flops = task.step_cost(batch).flops
  encode_rate = encoder_flops * batch / encode_s
  decode_rate = decoder_flops * batch / decode_s
  train_rate = train_flops / train_s
  return Result(
    variant=variant,
    frames=frames,
    resolution=resolution,
    batch=batch,
    parameters=parameters,
    forward_gflops_per_clip=(encoder_flops + decoder_flops) / 1e9,
    encode_frames_per_s=batch * frames / encode_s,
    decode_frames_per_s=batch * frames / decode_s,
    train_clips_per_s=batch / train_s,
    encode_gflops_per_s=encode_rate / 1e9,
    decode_gflops_per_s=decode_rate / 1e9,
    train_gflops_per_s=train_rate / 1e9,
    encode_fraction=encode_rate / reference,
    decode_fraction=decode_rate / reference,
    train_fraction=train_rate / reference,
  )


def markdown(results: list[Result], reference: float) -> str:
  lines = [
    f'Reference: 2048x2048 f32 matmul = {reference / 1e9:.1f} GFLOP/s on '
    f'{jax.devices()[0].device_kind}.',
    '',
    '| variant | clip | batch | params | fwd GFLOP/clip | encode frames/s | decode frames/s '
    '| train clips/s | encode / decode / train GFLOP/s | fraction of matmul |',
    '|---|---|---|---|---|---|---|---|---|---|',
  ]
  for r in results:
    lines.append(
      f'| {r.variant} | {r.frames}x{r.resolution}x{r.resolution} | {r.batch} | '
      f'{r.parameters / 1e6:.1f}M | {r.forward_gflops_per_clip:.1f} | '
      f'{r.encode_frames_per_s:.1f} | {r.decode_frames_per_s:.1f} | '
      f'{r.train_clips_per_s:.2f} | {r.encode_gflops_per_s:.1f} / '
      f'{r.decode_gflops_per_s:.1f} / {r.train_gflops_per_s:.1f} | '
      f'{r.encode_fraction:.2f} / {r.decode_fraction:.2f} / {r.train_fraction:.2f} |'
    )
  return '\n'.join(lines)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--variants', nargs='*', help='Only these variants.')
  parser.add_argument('--sizes', nargs='*', type=int, help='Only these resolutions.')
  parser.add_argument('--large', action='store_true', help='Add small@128, base@64, base@128.')
  parser.add_argument('--frames', type=int, default=17)
  parser.add_argument('--batch', type=int, default=1)
  parser.add_argument('--iterations', type=int, default=2)
  parser.add_argument('--out', default=RESULTS)
  args = parser.parse_args()

  cases = list(DEFAULT_CASES) + (list(LARGE_CASES) if args.large else [])
  if args.variants:
    cases = [c for c in cases if c[0] in args.variants]
  if args.sizes:
    cases = [c for c in cases if c[1] in args.sizes]
  reference = throughput.measured_matmul_flops()
  results = []
  for variant, resolution in cases:
    print(
      f'benchmarking {variant} at {args.frames}x{resolution}x{resolution} ...',
      flush=True,
    )
    results.append(
      benchmark(variant, args.frames, resolution, args.batch, args.iterations, reference)
    )
  os.makedirs(os.path.dirname(args.out), exist_ok=True)
  with open(args.out, 'w') as f:
    json.dump(
      {
        'device': jax.devices()[0].device_kind,
        'platform': platform.platform(),
        'cpu_count': os.cpu_count(),
        'jax_version': jax.__version__,
        'reference_matmul_flops': reference,
        'results': [dataclasses.asdict(r) for r in results],
      },
      f,
      indent=2,
    )
  print(markdown(results, reference))
  print(f'\nwrote {args.out}')


if __name__ == '__main__':
  main()
