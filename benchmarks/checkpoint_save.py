"""Checkpoint save time: videogen's orbax manager against orbax's default handlers.

  python benchmarks/checkpoint_save.py [--repeats 3] [--states tokenizer,transformer]
      [--out DIR] [--tmp_dir DIR]

Runs on 8 virtual CPU devices (`XLA_FLAGS=--xla_force_host_platform_device_count=8`
unless XLA_FLAGS already names a device count; `JAX_PLATFORMS=cpu` unless set).
Builds two real train states the way `videogen.train.loop` does (the stage's
task from `videogen.stages.create_task`, `sharding.tree_shardings` of the
abstract state, `compilation.run_once` of `task.init_state`) on the configs'
own mesh (`data=-1`, i.e. data=8: every leaf replicated):

  tokenizer    `configs/shapes/tokenizer.py:size=tiny`, as configured;
  transformer  `configs/shapes/transformer.py:size=tiny`, with
               `text.cache_embeddings=False` (the cache is filled from the built
               dataset and is no part of the train state). Its
               state carries the frozen encoders' weights, so the task gets a
               `TextToVideo` of an untrained tokenizer of
               `configs/shapes/tokenizer.py:size=tiny` (the tokenizer that config
               is sized for) and the offline default T5 built from every shapes
               caption of one or two objects (the real run builds it from its
               dataset's captions; its vocabulary may differ by a few rows).

Each state is saved `--repeats` times (after one warm-up save each), into a
fresh directory every time, alternating two managers, both synchronous:
  videogen  `checkpointing.save` through `checkpointing.make_manager` (its
            handler registry: replica-parallel writes only for slices of at
            least `MIN_SLICE_BYTES_FOR_REPLICA_PARALLEL`), data iterator None;
            this time includes the integrity manifest (file sizes and CRC-32s)
            written after the commit (`manifest s` in the table);
  default   `ocp.CheckpointManager(item_names=(state, metadata))`: orbax's
            default handlers (replica-parallel for every replicated array),
            the same metadata JSON, no manifest.
The figure is the ratio of medians, default / videogen, measured in the same
run. The warm-up saves are timed too (`first save`): a process's first save
also compiles the eager slicing ops of every array shape it writes, which is
where replica-parallel writes cost most (videogen's warm-up runs first, so
shapes both write are compiled on its time). Each state's videogen checkpoint is then restored once with
`checkpointing.restore` (manifest check, shape check, onto the same shardings)
and must equal the saved arrays bit for bit (`restores_equal`; anything else
raises). The CPU is recorded (platform, `os.cpu_count()`, load average, a
2048x2048 f32 matmul's FLOP/s) since timings move with a shared machine's load.

Writes `checkpoint_save.json` and `checkpoint_save.md` to `--out`
(default `benchmarks/results/`) and prints the table.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pathlib
import platform
import statistics
import sys
import tempfile
import time
from typing import Any

DEVICES = 8
# Before jax is imported: 8 virtual CPU devices, unless the caller chose a count.
if 'xla_force_host_platform_device_count' not in os.environ.get('XLA_FLAGS', ''):
  os.environ['XLA_FLAGS'] = (
    os.environ.get('XLA_FLAGS', '') + f' --xla_force_host_platform_device_count={DEVICES}'
  ).strip()
os.environ.setdefault('JAX_PLATFORMS', 'cpu')

import jax  # noqa: E402
import numpy as np  # noqa: E402
import orbax.checkpoint as ocp  # noqa: E402
from etils import epath  # noqa: E402

from videogen import config_lib, integrity, stages  # noqa: E402
from videogen.parallel import compilation, sharding  # noqa: E402
from videogen.parallel import mesh as mesh_lib  # noqa: E402
from videogen.train import checkpointing, throughput  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parent.parent
RESULTS = REPO / 'benchmarks' / 'results'
NAME = 'checkpoint_save'
CONFIGS = {
  'tokenizer': 'configs/shapes/tokenizer.py:size=tiny',
  'transformer': 'configs/shapes/transformer.py:size=tiny',
}
# The transformer's frozen tokenizer: the one `size=tiny` is sized for (9x32x32 -> 3x8x8).
TRANSFORMER_TOKENIZER = CONFIGS['tokenizer']


@dataclasses.dataclass
class Row:
  state: str
  config: str
  mesh: str
  leaves: int
  replicated_leaves: int
  bytes: int
  repeats: int
  videogen_seconds: list[float]
  default_seconds: list[float]
  manifest_seconds: list[float]  # Part of videogen_seconds: the integrity manifest.
  warmup_videogen_s: float  # The first save of each (not in the medians).
  warmup_default_s: float
  videogen_median_s: float
  default_median_s: float
  manifest_median_s: float
  ratio_default_over_videogen: float
  restores_equal: bool


def load_config(path_and_arg: str):
  config = config_lib.load_config_file(str(REPO / path_and_arg))
  # Saves commit inside the call, so a save's time is all of it.
  return config_lib.apply_overrides(config, {'checkpoint.async_save': False})


def _all_captions() -> list[str]:
  """Every shapes caption of one or two objects (what the dataset's captions draw from)."""
  from videogen.data import shapes

  phrases = [
    shapes.ObjectSpec(color, shape, motion).phrase
    for color in shapes.PALETTE
    for shape in shapes.SHAPES
    for motion in shapes.MOTIONS
  ]
  return phrases + [f'{a} and {b}' for a in phrases for b in phrases if a != b]


def transformer_model(config, workdir: epath.Path):
  """The frozen encoders of a `configs/shapes/transformer.py` run, weightless."""
  from videogen import text, vq
  from videogen.transformer.inference import TextToVideo
  from videogen.vq.model import create_model

  tokenizer_model = load_config(TRANSFORMER_TOKENIZER).model
  tokenizer = vq.Tokenizer.from_model(
    create_model(tokenizer_model, jax.random.key(0)), tokenizer_model
  )
  encoder = text.load_text_encoder(config.text, workdir=workdir, captions=_all_captions())
  return TextToVideo(config, tokenizer, encoder)


def build_state(name: str, config, workdir: epath.Path) -> tuple[Any, Any, Any, str]:
  """(state, abstract state, shardings, mesh description) as `train_and_evaluate` builds them."""
  mesh = mesh_lib.create_mesh(config.mesh)
  kwargs = {'model': transformer_model(config, workdir)} if name == 'transformer' else {}
  task = stages.create_task(config, mesh, workdir, **kwargs)
  init_rng, _ = jax.random.split(jax.random.key(config.seed))
  with sharding.axis_rules(mesh, config.logical_axis_rules):
    abstract_state = jax.eval_shape(task.init_state, init_rng)
    state_shardings = sharding.tree_shardings(abstract_state, mesh, config.logical_axis_rules)
    state = compilation.run_once(task.init_state, init_rng, out_shardings=state_shardings)
  jax.block_until_ready(state)
  return state, abstract_state, state_shardings, mesh_lib.describe(mesh)


def default_manager(directory: epath.Path, config) -> ocp.CheckpointManager:
  """The manager `make_manager` builds, with orbax's default handlers instead."""
  options = ocp.CheckpointManagerOptions(
    max_to_keep=config.checkpoint.max_to_keep,
    keep_period=config.checkpoint.keep_period or None,
    enable_async_checkpointing=False,
    cleanup_tmp_directories=True,
    create=True,
  )
  return ocp.CheckpointManager(
    checkpointing.checkpoint_dir(directory),
    item_names=(checkpointing.STATE, checkpointing.METADATA),
    options=options,
  )


def save_videogen(root: str, config, state) -> tuple[float, float, epath.Path]:
  """(seconds of `checkpointing.save`, of its manifest, the workdir) in a fresh workdir."""
  workdir = epath.Path(tempfile.mkdtemp(prefix='videogen_', dir=root))
  manager = checkpointing.make_manager(workdir, config.checkpoint)
  start = time.perf_counter()
  checkpointing.save(manager, 1, state, None, config)
  seconds = time.perf_counter() - start
  manager.close()
  manifest = json.loads((manager.directory / '1' / integrity.MANIFEST).read_text())
  return seconds, manifest['checksum_seconds'] or 0.0, workdir


def save_default(root: str, config, state) -> float:
  """Seconds of the same save through orbax's default handlers, in a fresh workdir."""
  workdir = epath.Path(tempfile.mkdtemp(prefix='default_', dir=root))
  manager = default_manager(workdir, config)
  items = {
    checkpointing.STATE: ocp.args.PyTreeSave(state),
    checkpointing.METADATA: ocp.args.JsonSave(checkpointing.step_metadata(config, 1)),
  }
  start = time.perf_counter()
  manager.save(1, args=ocp.args.Composite(**items))
  manager.wait_until_finished()
  seconds = time.perf_counter() - start
  manager.close()
  workdir.rmtree()
  return seconds


def _bits(x: jax.Array) -> np.ndarray:
  if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
    x = jax.random.key_data(x)
  return np.asarray(x).reshape(-1).view(np.uint8)


def restores_equal(workdir: epath.Path, config, state, abstract_state, state_shardings) -> bool:
  """Restores `workdir`'s step 1 with `checkpointing.restore`; raises unless bit-equal."""
  manager = checkpointing.make_manager(workdir, config.checkpoint, read_only=True)
  restored, saved_metadata = checkpointing.restore(
    manager, 1, abstract_state, state_shardings, None
  )
  manager.close()
  saved, loaded = jax.tree_util.tree_flatten_with_path(state)[0], jax.tree.leaves(restored)
  if len(saved) != len(loaded) or jax.tree.structure(state) != jax.tree.structure(restored):
    raise AssertionError(f'restored tree differs: {len(loaded)} leaves, {len(saved)} saved')
  for (path, a), b in zip(saved, loaded, strict=True):
    name = jax.tree_util.keystr(path)
    if a.dtype != b.dtype or a.shape != b.shape:
      raise AssertionError(f'{name}: restored {b.dtype}{b.shape}, saved {a.dtype}{a.shape}')
    if not np.array_equal(_bits(a), _bits(b)):
      raise AssertionError(f'{name}: restored values differ from the saved ones')
    if not b.sharding.is_equivalent_to(a.sharding, a.ndim):
      raise AssertionError(f'{name}: restored sharding {b.sharding}, saved {a.sharding}')
  if saved_metadata['step'] != 1 or saved_metadata['stage'] != config.stage:
    raise AssertionError(f'restored metadata {saved_metadata} is not the saved one')
  return True


def benchmark(name: str, repeats: int, tmp_root: str) -> Row:
  config = load_config(CONFIGS[name])
  if name == 'transformer':
    # The caption embedding cache is filled from the built dataset and is no part of
    # the train state (the frozen T5 weights are, either way).
    config = config_lib.apply_overrides(config, {'text.cache_embeddings': False})
  with tempfile.TemporaryDirectory(prefix=f'{NAME}_{name}_', dir=tmp_root) as root:
    state, abstract_state, state_shardings, mesh = build_state(
      name, config, epath.Path(root) / 'run'
    )
    leaves = jax.tree.leaves(state)
    print(
      f'{name}: {len(leaves)} leaves, {sum(x.nbytes for x in leaves) / 2**20:.2f} MiB on {mesh}; '
      f'warm-up saves ...',
      flush=True,
    )
    warmup_videogen, _, warm = save_videogen(root, config, state)
    equal = restores_equal(warm, config, state, abstract_state, state_shardings)
    warm.rmtree()
    warmup_default = save_default(root, config, state)
    print(
      f'{name}: warm-up: videogen {warmup_videogen:.2f} s, default {warmup_default:.2f} s; '
      f'restores equal: {equal}',
      flush=True,
    )
    ours, default, manifest = [], [], []
    for repeat in range(repeats):
      seconds, manifest_seconds, workdir = save_videogen(root, config, state)
      workdir.rmtree()
      ours.append(seconds)
      manifest.append(manifest_seconds)
      default.append(save_default(root, config, state))
      print(
        f'{name}: save {repeat + 1}/{repeats}: videogen {ours[-1]:.2f} s '
        f'(manifest {manifest_seconds:.2f} s), default {default[-1]:.2f} s',
        flush=True,
      )
  return Row(
    state=name,
    config=CONFIGS[name],
    mesh=mesh,
    leaves=len(leaves),
    replicated_leaves=sum(x.sharding.is_fully_replicated for x in leaves),
    bytes=sum(x.nbytes for x in leaves),
    repeats=repeats,
    videogen_seconds=ours,
    default_seconds=default,
    manifest_seconds=manifest,
    warmup_videogen_s=warmup_videogen,
    warmup_default_s=warmup_default,
    videogen_median_s=statistics.median(ours),
    default_median_s=statistics.median(default),
    manifest_median_s=statistics.median(manifest),
    ratio_default_over_videogen=statistics.median(default) / statistics.median(ours),
    restores_equal=equal,
  )


def markdown(rows: list[Row], env: dict[str, Any]) -> str:
  lines = [
    f'{env["device_count"]} virtual {env["platform"]} devices on {env["machine"]} '
    f'({env["cpu_count"]} cores, load {env["load_average_1min"]:.1f}, 2048x2048 f32 matmul '
    f'{env["matmul_flops"] / 1e9:.1f} GFLOP/s); synchronous saves, median of '
    f'{rows[0].repeats if rows else 0} after one warm-up.',
    '',
    '| state | mesh | leaves (replicated) | MB | videogen s | of which manifest s '
    '| orbax default s | default / videogen | first save: videogen / default s '
    '| restores equal |',
    '|---|---|---|---|---|---|---|---|---|---|',
  ]
  for r in rows:
    lines.append(
      f'| {r.state} (`{r.config}`) | {r.mesh} | {r.leaves} ({r.replicated_leaves}) | '
      f'{r.bytes / 1e6:.2f} | {r.videogen_median_s:.2f} | {r.manifest_median_s:.2f} | '
      f'{r.default_median_s:.2f} | {r.ratio_default_over_videogen:.1f}x | '
      f'{r.warmup_videogen_s:.2f} / {r.warmup_default_s:.2f} | {r.restores_equal} |'
    )
  return '\n'.join(lines)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--repeats', type=int, default=3, help='Timed saves per state and manager.')
  parser.add_argument(
    '--states', default='tokenizer,transformer', help='Comma-separated: tokenizer, transformer.'
  )
  parser.add_argument('--out', default=str(RESULTS), help='Directory for the JSON and markdown.')
  parser.add_argument('--tmp_dir', default=None, help='Where checkpoints go; default: $TMPDIR.')
  args = parser.parse_args()
  unknown = sorted(set(args.states.split(',')) - set(CONFIGS))
  if unknown:
    parser.error(f'--states: unknown {", ".join(unknown)}; valid: {", ".join(CONFIGS)}')
  if args.repeats < 1:
    parser.error(f'--repeats={args.repeats}: give at least 1')

  start = time.perf_counter()
  env = {
    'device_count': jax.device_count(),
    'platform': jax.default_backend(),
    'machine': platform.platform(),
    'processor': platform.processor() or platform.machine(),
    'cpu_count': os.cpu_count(),
    'load_average_1min': os.getloadavg()[0],
    'matmul_flops': throughput.measured_matmul_flops(),
    'jax_version': jax.__version__,
    'orbax_version': ocp.__version__,
    'xla_flags': os.environ.get('XLA_FLAGS', ''),
    'min_slice_bytes_for_replica_parallel': checkpointing.MIN_SLICE_BYTES_FOR_REPLICA_PARALLEL,
  }
  print(
    f'{env["device_count"]} {env["platform"]} devices; matmul '
    f'{env["matmul_flops"] / 1e9:.1f} GFLOP/s',
    flush=True,
  )
  rows = [benchmark(name, args.repeats, args.tmp_dir) for name in args.states.split(',')]
  env['load_average_1min_end'] = os.getloadavg()[0]
  result = {
    'benchmark': NAME,
    'command': ' '.join(['python', 'benchmarks/checkpoint_save.py', *sys.argv[1:]]),
    'wall_s': time.perf_counter() - start,
    'env': env,
    'rows': [dataclasses.asdict(r) for r in rows],
  }
  out = pathlib.Path(args.out)
  out.mkdir(parents=True, exist_ok=True)
  (out / f'{NAME}.json').write_text(json.dumps(result, indent=2) + '\n')
  table = markdown(rows, env)
  (out / f'{NAME}.md').write_text(table + '\n')
  print(table)
  print(f'\nWrote {out / NAME}.json and .md')


if __name__ == '__main__':
  main()
