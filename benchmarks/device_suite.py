"""One prepared GPU run: attention checks, train-step MFU, decode, tokenizer speed and training.

  benchmarks/device_suite.sh [--out DIR] [--budget_s 480]     # on the H200, within ~8 minutes
  benchmarks/device_suite.sh --dry_run --out /tmp/suite        # tiny shapes on CPU, < 2 minutes

Run it through `device_suite.sh` (it installs the carried wheels and sets
PYTHONPATH); it imports no TensorFlow, TFDS, grain or clu. Each section, and
each case in it, catches its own failure and records it, so one failing
backend loses no other figure; `--budget_s` bounds the whole run (a case
starts only while its section's share of the budget lasts, the tokenizer
training runs for what is left, at most `train_seconds`). The JSON and the
markdown are rewritten after every case.

Sections (GPU sizes; `--dry_run` shrinks every shape, backends that need a GPU
are recorded as skipped with the reason):
  env               device, versions; bf16 and f32 matmul FLOP/s (8192^3) and
                    copy bandwidth (1 GiB, read + write) measured in this run.
  attention         cudnn and pallas (Pallas GPU `mha`) against xla at the
                    `large` training shape (batch 4, 1280 tokens, 8/4 heads of
                    128), bf16 and f32, causal self-attention and text
                    cross-attention with a ragged key mask: relative L2 error of
                    the output and of dq/dk/dv against xla and against a
                    float32 softmax, and forward / forward+backward seconds.
  sharding          three tiny-tokenizer train steps (f32, 'highest' matmul
                    precision) on the accelerator alone, on one host CPU device
                    and on 8 host CPU devices as (data, fsdp, tensor) meshes:
                    the losses and their largest relative difference from one
                    CPU device.
  transformer_train small/base/large/xl, 17x128x128 clips (5x16x16 = 1280
                    tokens), bf16, for each attention backend
                    (`benchmarks/transformer.py`'s step): step seconds,
                    tokens/s, XLA peak bytes, MFU against the chip's dense bf16
                    peak (`videogen.train.throughput`: 989 TFLOP/s for the
                    H200, NVIDIA's H100/H200 SXM datasheet) and against the
                    bf16 matmul of `env`.
  decode            KV-cached sampling of one 1280-token clip, batch 1 and 16:
                    tokens/s, bytes read per decoded position (every weight at
                    its stored dtype, float32, plus the whole static
                    self-attention cache and the text K/V, bf16) and the
                    fraction of the bound copy bandwidth / bytes per token.
  tokenizer_speed   small and base at 17x128x128 (`benchmarks/tokenizer.py`):
                    encode/decode frames/s, train clips/s.
  tokenizer_train   `configs/shapes/tokenizer.py:size=small` (17x64x64, batch
                    16) on clips rendered on the host by `videogen.data.shapes`,
                    for `train_seconds` (240): PSNR of 64 held-out clips every
                    `eval_every_seconds` (the PSNR curve), steps/s.

JSON (`device_suite.json`; the markdown `device_suite.md` shows the same):
  {"schema": "videogen.device_suite/1", "dry_run": bool, "command": str,
   "budget_s": float, "wall_s": float, "env": {...},
   "sections": {NAME: {"status": "ok" | "error" | "skipped", "seconds": float,
                       "error": str (when not ok), "rows": [ROW, ...],
                       "notes": str}}}
  Every ROW has "status" ("ok", "error" or "skipped") and, when not ok,
  "error" or "reason"; its other keys are the section's figures (names carry
  their units: *_seconds, *_per_second, *_bytes, mfu_* are fractions).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import pathlib
import platform
import sys
import threading
import time


def _add_xla_flag(flag: str) -> None:
  name = flag.split('=')[0]
  if name not in os.environ.get('XLA_FLAGS', ''):
    os.environ['XLA_FLAGS'] = f'{os.environ.get("XLA_FLAGS", "")} {flag}'.strip()


# Before JAX is imported: 8 host CPU devices for the sharding check (the GPU
# stays one device); a dry run checks code paths, not speed, and unoptimised
# XLA:CPU programs compile several times faster.
_add_xla_flag('--xla_force_host_platform_device_count=8')
if '--dry_run' in sys.argv:
  _add_xla_flag('--xla_backend_optimization_level=0')

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import tokenizer as tokenizer_bench  # noqa: E402
import transformer as transformer_bench  # noqa: E402
from device_suite_report import Suite  # noqa: E402

from videogen import config_lib  # noqa: E402
from videogen.data import shapes, transforms  # noqa: E402
from videogen.parallel import compilation, sharding  # noqa: E402
from videogen.parallel import mesh as mesh_lib  # noqa: E402
from videogen.train import throughput  # noqa: E402
from videogen.transformer import attention  # noqa: E402
from videogen.vq.task import TokenizerTask  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parent.parent
BACKENDS = ('xla', 'cudnn', 'pallas')


@dataclasses.dataclass(frozen=True)
class Sizes:
  """Every shape the suite runs; `GPU` and `DRY_RUN` below."""

  matmul: int  # Side of the square matmuls of `env`.
  copy_bytes: int  # Array size of the copy-bandwidth pass.
  attention: tuple[int, int, int, int, int, int]  # batch, length, heads, kv heads, head_dim, text.
  train_variants: tuple[str, ...]  # Transformer variants, in the order they run.
  train_latent: tuple[int, int, int]  # Token grid of one clip.
  train_batch: dict  # Variant -> clips per step.
  decode_variants: tuple[str, ...]
  decode_latent: tuple[int, int, int]
  decode_batches: tuple[int, ...]
  tokenizer_variants: tuple[str, ...]
  tokenizer_clip: tuple[int, int, int]  # frames, resolution, batch.
  tokenizer_overrides: dict  # Model fields changed from the variant's (dry run: a toy model).
  train_config: str  # Tokenizer training config (file:arg).
  train_overrides: dict  # Dotted config overrides of the tokenizer training.
  train_seconds: float  # Tokenizer training wall time (compile and evals included).
  eval_every_seconds: float
  eval_clips: int
  sharding_steps: int  # Train steps per mesh of the sharding check.
  cpu_meshes: tuple  # (data, fsdp, tensor) host-CPU meshes of the sharding check; first = 1 device.
  attention_dtypes: tuple[str, ...]
  pool_clips: int  # Training clips rendered (in a background thread) and cycled.
  shares: dict  # Section -> most seconds it may start cases in.


GPU = Sizes(
  matmul=8192,
  copy_bytes=1 << 30,
  attention=(4, 1280, 8, 4, 128, 32),
  train_variants=('large', 'xl', 'base', 'small'),
  train_latent=(5, 16, 16),
  train_batch={'small': 32, 'base': 16, 'large': 16, 'xl': 8},
  decode_variants=('large', 'base'),
  decode_latent=(5, 16, 16),
  decode_batches=(1, 16),
  tokenizer_variants=('small', 'base'),
  tokenizer_clip=(17, 128, 4),
  tokenizer_overrides={},
  train_config='configs/shapes/tokenizer.py:size=small',
  train_overrides={},
  train_seconds=240.0,
  eval_every_seconds=30.0,
  eval_clips=64,
  sharding_steps=3,
  cpu_meshes=((1, 1, 1), (8, 1, 1), (2, 2, 2)),
  attention_dtypes=('bfloat16', 'float32'),
  pool_clips=4096,
  shares={
    'env': 10,
    'attention': 25,
    'sharding': 25,
    'transformer_train': 110,
    'decode': 30,
    'tokenizer_speed': 30,
  },
)
# A toy tokenizer (4x spatial, 4x temporal compression) for the sharding check
# and the dry run: XLA:CPU compiles it in seconds.
TOY_TOKENIZER_MODEL = {
  'channels': 8,
  'channel_multipliers': (1, 1, 1),
  'norm_groups': 4,
  'spatial_downsample': 4,
  'num_res_blocks': 1,
}
TINY_TOKENIZER = {
  'data.num_frames': 5,
  'data.height': 16,
  'data.width': 16,
  'batch_size': 2,
  'optimizer.warmup_steps': 1,
  **{f'model.{key}': value for key, value in TOY_TOKENIZER_MODEL.items()},
}
DRY_RUN = Sizes(
  matmul=256,
  copy_bytes=1 << 22,
  attention=(1, 32, 4, 2, 16, 8),
  train_variants=('tiny',),
  train_latent=(2, 4, 4),
  train_batch={'tiny': 2},
  decode_variants=('tiny',),
  decode_latent=(2, 4, 4),
  decode_batches=(1,),
  tokenizer_variants=('tiny',),
  tokenizer_clip=(5, 16, 1),
  tokenizer_overrides=TOY_TOKENIZER_MODEL,
  train_config='configs/shapes/tokenizer.py:size=tiny',
  train_overrides=TINY_TOKENIZER,
  train_seconds=6.0,
  eval_every_seconds=3.0,
  eval_clips=4,
  sharding_steps=2,
  cpu_meshes=((1, 1, 1), (2, 2, 2)),
  attention_dtypes=('bfloat16',),
  pool_clips=32,
  shares={
    'env': 10,
    'attention': 20,
    'sharding': 30,
    'transformer_train': 20,
    'decode': 10,
    'tokenizer_speed': 20,
  },
)


def _relative_error(got, want) -> float:
  got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
  return float(np.linalg.norm(got - want) / max(np.linalg.norm(want), 1e-30))


# --- sections ------------------------------------------------------------------


def env_section(suite: Suite, record: dict) -> None:
  sizes = suite.sizes
  device = jax.devices()[0]
  peak = throughput.chip_peak_flops(device)
  env = {
    'device_kind': device.device_kind,
    'platform': jax.default_backend(),
    'device_count': jax.device_count(),
    'host': f'{platform.machine()} {os.cpu_count()} CPUs',
    'python': platform.python_version(),
    'jax_version': jax.__version__,
    'chip_peak_bf16_flops': peak,
    'chip_peak_source': 'NVIDIA H100/H200 SXM datasheet, dense bf16'
    if peak
    else 'none (no published peak for this device)',
  }
  suite.result['env'] = env
  for name, fn in (
    ('bf16_matmul_flops', lambda: throughput.measured_matmul_flops(sizes.matmul, 'bfloat16')),
    ('f32_matmul_flops', lambda: throughput.measured_matmul_flops(sizes.matmul, 'float32')),
    ('copy_bytes_per_second', lambda: throughput.measured_copy_bandwidth(sizes.copy_bytes)),
  ):
    suite.case(record, {'measure': name}, lambda fn=fn: {'value': fn()})
    env[name] = record['rows'][-1].get('value')


def attention_section(suite: Suite, record: dict) -> None:
  batch, length, heads, kv_heads, head_dim, text = suite.sizes.attention
  keys = jax.random.split(jax.random.key(0), 6)
  q32 = jax.random.normal(keys[0], (batch, length, heads, head_dim))
  k32 = jax.random.normal(keys[1], (batch, length, kv_heads, head_dim))
  v32 = jax.random.normal(keys[2], (batch, length, kv_heads, head_dim))
  tk32 = jax.random.normal(keys[3], (batch, text, kv_heads, head_dim))
  tv32 = jax.random.normal(keys[4], (batch, text, kv_heads, head_dim))
  lengths = jnp.maximum(1, (jnp.arange(batch) + 1) * text // batch)
  text_mask = jnp.arange(text)[None, :] < lengths[:, None]
  interpret = not suite.on_gpu
  cases = {
    'causal_self': (q32, k32, v32, dict(causal=True)),
    'masked_cross': (q32, tk32, tv32, dict(kv_mask=text_mask)),
  }
  for dtype in suite.sizes.attention_dtypes:
    for kind, (q, k, v, options) in cases.items():
      q, k, v = (x.astype(dtype) for x in (q, k, v))
      reference = attention.reference_attention(q, k, v, **options)

      def run(backend, q=q, k=k, v=v, options=options):
        extra = dict(pallas_kernel='mha', interpret=interpret) if backend == 'pallas' else {}

        def forward(q, k, v):
          return attention.dot_product_attention(q, k, v, backend=backend, **options, **extra)

        def loss(q, k, v):
          out = forward(q, k, v).astype(jnp.float32)
          return jnp.sum(out * jnp.cos(out))  # A cotangent that is not all ones.

        forward_jit = jax.jit(forward)
        grad_jit = jax.jit(jax.grad(loss, argnums=(0, 1, 2)))
        out = forward_jit(q, k, v)
        grads = grad_jit(q, k, v)
        repeats = 5 if suite.on_gpu else 1
        return (
          out,
          grads,
          {
            'forward_seconds': transformer_bench._best_time(lambda: forward_jit(q, k, v), repeats),
            'forward_backward_seconds': transformer_bench._best_time(
              lambda: grad_jit(q, k, v), repeats
            ),
          },
        )

      baseline = {}

      def xla_case(baseline=baseline, reference=reference):
        out, grads, times = run('xla')
        baseline.update(out=out, grads=grads)
        return {'error_vs_f32_softmax': _relative_error(out, reference), **times}

      fields = {
        'dtype': dtype,
        'kind': kind,
        'shape': f'{batch}x{length}x{heads}/{kv_heads}x{head_dim}',
      }
      suite.case(record, {**fields, 'backend': 'xla'}, xla_case)
      for backend in ('cudnn', 'pallas'):
        skip = ''
        if backend == 'cudnn' and not suite.on_gpu:
          skip = f'cuDNN attention needs an NVIDIA GPU; this is {jax.default_backend()}'
        elif backend == 'cudnn' and dtype == 'float32':
          skip = 'cuDNN flash attention takes only float16/bfloat16 inputs'
        elif backend == 'pallas' and 'kv_mask' in options:
          skip = 'the Pallas GPU kernel has no key mask (the model uses xla there)'
        elif not baseline:
          skip = 'the xla baseline failed'

        def compare(backend=backend, baseline=baseline, reference=reference):
          out, grads, times = run(backend)
          return {
            'error_vs_xla': _relative_error(out, baseline['out']),
            'error_vs_f32_softmax': _relative_error(out, reference),
            'grad_error_vs_xla': max(
              _relative_error(g, w) for g, w in zip(grads, baseline['grads'], strict=True)
            ),
            **times,
            'mode': 'interpret (CPU)' if backend == 'pallas' and interpret else 'compiled',
          }

        suite.case(record, {**fields, 'backend': backend}, compare, skip=skip)


def _sharded_losses(config, sizes, devices, batches) -> list[float]:
  """Losses of `TokenizerTask` train steps on a (data, fsdp, tensor) mesh of `devices`."""
  if len(devices) < math.prod(sizes):
    raise ValueError(f'{len(devices)} devices cannot form the mesh {sizes}')
  with config.unlocked():
    config.mesh.data, config.mesh.fsdp, config.mesh.tensor = sizes
  mesh = mesh_lib.create_mesh(config.mesh, devices=devices[: math.prod(sizes)])
  task = TokenizerTask(config, mesh)
  rules = config.logical_axis_rules
  losses = []
  # 'highest': float32 matmuls and convolutions, not TF32, on the GPU too.
  with jax.default_matmul_precision('highest'), sharding.axis_rules(mesh, rules):
    state = _init_state(task, mesh, rules, jax.random.key(0))
    step = jax.jit(task.train_step, donate_argnums=(0,))
    for index, batch in enumerate(batches):
      batch = sharding.global_batch(batch, mesh, rules, ('video',))
      state, metrics = step(state, batch, jax.random.key(index))
      losses.append(float(metrics['loss']))
  return losses


def _init_state(task, mesh, rules, rng):
  """The task's train state, created sharded (under `sharding.axis_rules`)."""
  shardings = sharding.tree_shardings(jax.eval_shape(task.init_state, rng), mesh, rules)
  return compilation.run_once(task.init_state, rng, out_shardings=shardings)


def _max_relative_difference(losses, reference) -> float:
  return float(np.max(np.abs(np.subtract(losses, reference)) / np.abs(reference)))


def sharding_section(suite: Suite, record: dict) -> None:
  config = config_lib.load_config_file(f'{REPO}/configs/shapes/tokenizer.py:size=tiny,runlocal')
  config_lib.apply_overrides(config, {**TINY_TOKENIZER, 'batch_size': 8})
  rng = np.random.default_rng(0)
  batches = [
    {'video': rng.uniform(-1, 1, (8, 5, 16, 16, 3)).astype(np.float32)}
    for _ in range(suite.sizes.sharding_steps)
  ]
  cpus = jax.devices('cpu')
  reference = {}
  for position, sizes in enumerate(suite.sizes.cpu_meshes):

    def on_cpu(sizes=sizes):
      losses = _sharded_losses(config, sizes, cpus, batches)
      reference.setdefault('losses', losses)  # The first mesh, one device.
      return {
        'losses': losses,
        'max_relative_difference_vs_one_cpu': _max_relative_difference(losses, reference['losses']),
      }

    # The one-device reference and the first sharded mesh run past the section's
    # share: without both there is no comparison (a loaded host can spend the share).
    fields = {'where': 'cpu', 'mesh': 'x'.join(map(str, sizes))}
    suite.case(record, fields, on_cpu, force=position < 2)

  def on_accelerator():
    losses = _sharded_losses(config, (1, 1, 1), jax.devices()[:1], batches)
    row = {'losses': losses}
    if 'losses' in reference:
      row['max_relative_difference_vs_one_cpu'] = _max_relative_difference(
        losses, reference['losses']
      )
    return row

  skip = '' if suite.on_gpu else 'the accelerator is the host CPU (the rows above)'
  fields = {'where': jax.devices()[0].device_kind, 'mesh': '1x1x1'}
  suite.case(record, fields, on_accelerator, skip=skip)


def transformer_train_section(suite: Suite, record: dict) -> None:
  env = suite.result['env']
  peak = env.get('chip_peak_bf16_flops')
  matmul = env.get('bf16_matmul_flops')
  sizes = suite.sizes
  for variant in sizes.train_variants:
    for backend in BACKENDS:
      skip = ''
      if backend != 'xla' and not suite.on_gpu:
        skip = f'the model runs {backend} attention on a GPU only; this is {jax.default_backend()}'

      def train(variant=variant, backend=backend):
        row = transformer_bench.bench_train(
          variant,
          'bfloat16',
          repeats=5 if suite.on_gpu else 1,
          reference=peak or matmul or 1.0,
          latent=sizes.train_latent,
          batch=sizes.train_batch[variant],
          attention_backend=backend,
        )
        figures = dataclasses.asdict(row)
        for key in ('variant', 'attention_backend', 'reference_tflops_per_second', 'mfu'):
          figures.pop(key)
        model_flops = row.model_tflops_per_second * 1e12
        figures['mfu_vs_peak'] = model_flops / peak if peak else None
        figures['mfu_vs_bf16_matmul'] = model_flops / matmul if matmul else None
        return figures

      suite.case(record, {'variant': variant, 'backend': backend}, train, skip=skip)


def decode_section(suite: Suite, record: dict) -> None:
  bandwidth = suite.result['env'].get('copy_bytes_per_second')
  sizes = suite.sizes
  for variant in sizes.decode_variants:
    for batch in sizes.decode_batches:

      def decode(variant=variant, batch=batch):
        spec, _, state, timed = transformer_bench.decode_setup(
          variant, sizes.decode_latent, batch, 'bfloat16'
        )
        seconds = timed(jnp.zeros((batch, 0), jnp.int32), True, repeats=2)
        length = spec.seq_length
        weight_bytes = sum(x.nbytes for x in jax.tree.leaves(state))
        kv_item = jnp.dtype(spec.dtype).itemsize
        cache_bytes = 2 * spec.num_layers * batch * spec.num_kv_heads * length * spec.head_dim
        text_length = transformer_bench.TEXT_LENGTH
        text_bytes = 2 * spec.num_layers * batch * spec.num_kv_heads * text_length * spec.head_dim
        step_bytes = weight_bytes + (cache_bytes + text_bytes) * kv_item
        rate = batch * length / seconds
        bound = bandwidth * batch / step_bytes if bandwidth else None
        return {
          'tokens_per_clip': length,
          'seconds': seconds,
          'tokens_per_second': rate,
          'bytes_per_position': step_bytes,
          'bytes_per_token': step_bytes / batch,
          'bound_tokens_per_second': bound,
          'fraction_of_bound': rate / bound if bound else None,
        }

      suite.case(record, {'variant': variant, 'batch': batch}, decode)


def tokenizer_speed_section(suite: Suite, record: dict) -> None:
  frames, resolution, batch = suite.sizes.tokenizer_clip
  reference = suite.result['env'].get('f32_matmul_flops') or throughput.measured_matmul_flops()
  for variant in suite.sizes.tokenizer_variants:

    def measure(variant=variant):
      result = tokenizer_bench.benchmark(
        variant,
        frames,
        resolution,
        batch,
        3 if suite.on_gpu else 1,
        reference,
        suite.sizes.tokenizer_overrides,
      )
      return {k: v for k, v in dataclasses.asdict(result).items() if k != 'variant'}

    suite.case(record, {'variant': variant, 'clip': f'{frames}x{resolution}x{resolution}'}, measure)


class ClipPool:
  """Training clips rendered by `videogen.data.shapes` in a background thread."""

  def __init__(self, data, size: int, first_seed: int = 0):
    self.data, self.clips = data, []
    self.thread = threading.Thread(target=self._fill, args=(size, first_seed), daemon=True)
    self.thread.start()

  def _render(self, seed: int) -> np.ndarray:
    data = self.data
    example = shapes.generate_example(
      seed, data.num_frames, data.height, data.width, data.min_objects, data.max_objects
    )
    return transforms.normalize(example.video)

  def _fill(self, size: int, first_seed: int) -> None:
    for seed in range(first_seed, first_seed + size):
      self.clips.append(self._render(seed))

  def batch(self, rng: np.random.Generator, batch: int) -> np.ndarray:
    while len(self.clips) < batch:
      time.sleep(0.01)
    indices = rng.integers(0, len(self.clips), batch)
    return np.stack([self.clips[i] for i in indices])


def tokenizer_train_section(suite: Suite, record: dict) -> None:
  sizes = suite.sizes
  config = config_lib.load_config_file(f'{REPO}/{sizes.train_config}')
  config_lib.apply_overrides(config, sizes.train_overrides)
  with config.unlocked():
    config.mesh.data, config.mesh.fsdp, config.mesh.tensor = 1, 1, 1
  # What the budget leaves, but a quarter of the planned run at least.
  seconds = min(sizes.train_seconds, max(suite.left() - 5, sizes.train_seconds / 4))
  data = config.data
  record['config'] = f'{sizes.train_config} {sizes.train_overrides or ""}'.strip()
  record['train_seconds'] = seconds
  pool = ClipPool(data, sizes.pool_clips)
  held_out = ClipPool(data, sizes.eval_clips, first_seed=10**7)
  held_out.thread.join()
  eval_batches = [
    {
      'video': np.stack(held_out.clips[i : i + config.batch_size]),
      'eval_mask': np.ones(config.batch_size, np.float32),
    }
    for i in range(0, len(held_out.clips) - config.batch_size + 1, config.batch_size)
  ]
  mesh = mesh_lib.create_mesh(config.mesh, devices=jax.devices()[:1])
  task = TokenizerTask(config, mesh)
  rules = config.logical_axis_rules
  rng = np.random.default_rng(config.seed)
  start = time.monotonic()
  with sharding.axis_rules(mesh, rules):
    state = _init_state(task, mesh, rules, jax.random.key(config.seed))
    step_fn = jax.jit(task.train_step, donate_argnums=(0,))
    step, next_eval, loss = 0, start, None
    while True:
      now = time.monotonic()
      if now >= next_eval or now - start >= seconds:

        def evaluate(step=step, loss=loss, now=now, state=state):
          metrics = task.evaluate(state, eval_batches, step=step, sample_dir=None)
          return {
            'psnr': metrics['psnr'],
            'ssim': metrics.get('ssim'),
            'train_loss': loss,
            'clips_seen': step * config.batch_size,
          }

        # The run's length already fits the budget: no point of its curve is cut.
        fields = {'step': step, 'elapsed_seconds': round(now - start, 1)}
        suite.case(record, fields, evaluate, force=True)
        next_eval = now + sizes.eval_every_seconds
        if now - start >= seconds and step > 0:  # A loaded machine still trains a step.
          break
      batch = sharding.global_batch({'video': pool.batch(rng, config.batch_size)}, mesh, rules)
      state, metrics = step_fn(state, batch, jax.random.key(step))
      step += 1
      if step % 50 == 0 or step == 1:
        loss = float(metrics['loss'])
  elapsed = time.monotonic() - start
  record['steps'] = step
  record['steps_per_second'] = step / elapsed
  record['clips_rendered'] = len(pool.clips)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--dry_run', action='store_true', help='Tiny shapes on any machine.')
  parser.add_argument(
    '--out',
    default=os.environ.get('OUT') or str(REPO / 'benchmarks' / 'results' / 'device_suite'),
    help='Folder for device_suite.json and device_suite.md (default $OUT).',
  )
  parser.add_argument('--budget_s', type=float, default=0.0, help='0 = 480 (GPU) or 100 (dry run).')
  args = parser.parse_args()
  sizes = DRY_RUN if args.dry_run else GPU
  budget = args.budget_s or (100.0 if args.dry_run else 480.0)
  suite = Suite(pathlib.Path(args.out), sizes, budget, args.dry_run)
  shares = sizes.shares
  suite.section('env', lambda r: env_section(suite, r), shares['env'])
  suite.section('attention', lambda r: attention_section(suite, r), shares['attention'])
  suite.section('sharding', lambda r: sharding_section(suite, r), shares['sharding'])
  suite.section(
    'transformer_train',
    lambda r: transformer_train_section(suite, r),
    shares['transformer_train'],
  )
  suite.section('decode', lambda r: decode_section(suite, r), shares['decode'])
  suite.section(
    'tokenizer_speed', lambda r: tokenizer_speed_section(suite, r), shares['tokenizer_speed']
  )
  suite.section('tokenizer_train', lambda r: tokenizer_train_section(suite, r))
  suite.write()
  print((suite.out / 'device_suite.md').read_text())
  print(f'wrote {suite.out / "device_suite.json"} in {suite.result["wall_s"]} s')


if __name__ == '__main__':
  main()
