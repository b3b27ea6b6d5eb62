"""`videogen compile`: build a config's steps for a TPU slice on any machine, and size them.

```
videogen compile --config configs/shapes/transformer.py:size=8b --topology v5p-128
```

With libtpu installed, `jax.experimental.topologies` describes the devices of
a TPU slice on a CPU-only machine and the real XLA:TPU compiler builds the
executables. For the config's stage this compiles the train step exactly as
`videogen train` jits it (abstract train state sharded by the config's mesh
and axis rules, state donated) and, for the transformer, the KV-cached decode
step of sampling. From the compiler's own memory and cost analyses it reports
per chip: argument, output, temporary and peak memory against the chip's HBM,
FLOPs and bytes per step, collective bytes read off the optimised HLO, and a
roofline ESTIMATE of step time, tokens/s and MFU from the chip's published
figures (`videogen.parallel.tpu.CHIPS`). Nothing is run.

The transformer's frozen encoders are sized from `config.tokenizer.checkpoint`
when it names a local tokenizer run, else from the tokenizer variant its
size trains on (`tiny` for tiny, `base` otherwise), and the T5 of
`config.text` (its `config.json` when `text.path` is set, else the offline
default's sizes).
"""

from __future__ import annotations

import copy
import dataclasses
import math
import re
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging
from flax import nnx

from videogen.parallel import mesh as mesh_lib
from videogen.parallel import platform as platform_lib
from videogen.parallel import sharding, tpu

GIB = 2**30


class CompileUsageError(ValueError):
  """The accelerator, slice count, mesh or batch cannot describe a run."""


@dataclasses.dataclass
class ProgramReport:
  """One compiled program on one chip of the slice; times and MFU are estimates.

  Attributes:
    name: 'train step', 'decode step'.
    compile_seconds: wall time of lowering + XLA:TPU compilation here.
    argument_bytes, output_bytes, temp_bytes, alias_bytes, code_bytes: the
      compiler's memory analysis, per chip (aliased = donated outputs).
    peak_bytes: argument + output - aliased + temporary + code: what one
      chip must hold while the step runs.
    hbm_bytes: the chip's HBM.
    flops: compiled FLOPs per chip per step (Pallas kernels count 0 here).
    bytes_accessed: compiled HBM bytes per chip per step.
    collective_bytes: bytes each chip sends in the step's collectives (ICI).
    dcn_bytes: the part of them that crosses slices.
    model_flops: analytic model FLOPs per chip per step (0 if unknown).
    items: tokens (transformer) or frames (tokenizer) per step, all chips.
    item_name: 'tokens' or 'frames'.
    compute_s, memory_s, ici_s, dcn_s: roofline terms in seconds.
    mosaic_kernels: Pallas (Mosaic) kernels in the executable, e.g. splash attention.
    compiler_error: XLA:TPU's message when it refused the program for lack of
      HBM (then only arguments and the compiler's stated need are known).
  """

  name: str
  compile_seconds: float
  argument_bytes: int
  output_bytes: int
  temp_bytes: int
  alias_bytes: int
  code_bytes: int
  hbm_bytes: int
  flops: float
  bytes_accessed: float
  collective_bytes: float
  dcn_bytes: float
  model_flops: float
  items: int
  item_name: str
  compute_s: float
  memory_s: float
  ici_s: float
  dcn_s: float
  mosaic_kernels: int = 0
  compiler_error: str = ''

  @property
  def peak_bytes(self) -> int:
    return (
      self.argument_bytes + self.output_bytes - self.alias_bytes + self.temp_bytes + self.code_bytes
    )

  @property
  def fits(self) -> bool:
    return not self.compiler_error and self.peak_bytes <= self.hbm_bytes

  @property
  def step_seconds(self) -> float:
    """Roofline estimate: the slowest of compute, HBM, ICI and DCN, fully overlapped."""
    return max(self.compute_s, self.memory_s, self.ici_s, self.dcn_s, 1e-12)

  @property
  def bound(self) -> str:
    terms = {'compute': self.compute_s, 'HBM': self.memory_s, 'ICI': self.ici_s, 'DCN': self.dcn_s}
    return max(terms, key=terms.get)

  def mfu(self, peak_flops: float) -> float:
    flops = self.model_flops or self.flops
    return flops / (self.step_seconds * peak_flops)

  def items_per_second(self) -> float:
    return self.items / self.step_seconds

  def to_json(self, peak_flops: float) -> dict[str, Any]:
    values = dataclasses.asdict(self)
    values.update(
      peak_bytes=self.peak_bytes,
      fits=self.fits,
      estimated_step_seconds=self.step_seconds,
      estimated_bound=self.bound,
      estimated_mfu=self.mfu(peak_flops),
      estimated_items_per_second=self.items_per_second(),
    )
    return values


@dataclasses.dataclass
class CompileReport:
  """What `compile_config` found for one config on one TPU slice."""

  accelerator: str
  num_slices: int
  chip: tpu.Chip
  num_chips: int
  mesh: dict[str, int]
  description: str
  programs: list[ProgramReport]
  notes: list[str] = dataclasses.field(default_factory=list)

  @property
  def fits(self) -> bool:
    return all(p.fits for p in self.programs)

  def verdict(self) -> str:
    """One line: whether every program fits in HBM, and by how much."""
    parts = []
    for program in self.programs:
      room = (program.hbm_bytes - program.peak_bytes) / GIB
      state = 'fits' if room >= 0 else 'does not fit'
      parts.append(
        f'the {program.name} {state} on {self.accelerator} '
        f'({program.peak_bytes / GIB:.2f} GiB peak per chip of {program.hbm_bytes / GIB:.0f} GiB '
        f'HBM, {abs(room):.2f} GiB {"free" if room >= 0 else "over"})'
      )
    advice = (
      ''
      if self.fits
      else (
        '; try a larger slice, more fsdp/tensor sharding, a smaller batch, bfloat16 '
        'activations or --config.model.remat_policy=full'
      )
    )
    return '; '.join(parts) + advice

  def summary(self) -> str:
    """The report as `videogen compile` prints it."""
    chip = self.chip
    slices = f' x {self.num_slices} slices' if self.num_slices > 1 else ''
    mesh = ', '.join(f'{k}={v}' for k, v in self.mesh.items())
    lines = [
      f'{self.accelerator}{slices}: {self.num_chips} chips of TPU {chip.name} '
      f'({chip.hbm_bytes / GIB:.0f} GiB HBM, {chip.peak_bf16_flops / 1e12:.0f} TFLOP/s bf16 peak); '
      f'mesh {mesh}',
      self.description,
    ]
    for program in self.programs:
      verdict = 'fits' if program.fits else 'DOES NOT FIT'
      room = program.hbm_bytes - program.peak_bytes
      by = f'{abs(room) / GIB:.2f} GiB {"free" if room >= 0 else "over"}'
      if program.compiler_error:
        lines += [
          f'{program.name} (compile stopped after {program.compile_seconds:.1f} s), per chip:',
          f'  memory: arguments {program.argument_bytes / GIB:.2f} GiB; XLA:TPU: '
          f'{program.compiler_error}',
          f'  DOES NOT FIT: {program.peak_bytes / GIB:.2f} GiB needed of '
          f'{program.hbm_bytes / GIB:.0f} GiB HBM ({by})',
        ]
        continue
      lines += [
        f'{program.name} (compiled in {program.compile_seconds:.1f} s), per chip:',
        f'  memory: arguments {program.argument_bytes / GIB:.2f} GiB, outputs '
        f'{program.output_bytes / GIB:.2f} GiB (donated {program.alias_bytes / GIB:.2f} GiB), '
        f'temporaries {program.temp_bytes / GIB:.2f} GiB, peak {program.peak_bytes / GIB:.2f} GiB '
        f'of {program.hbm_bytes / GIB:.0f} GiB HBM: {verdict} ({by})',
        f'  compiled: {program.flops / 1e12:.3f} TFLOP, {program.bytes_accessed / GIB:.2f} GiB '
        f'HBM traffic, {program.collective_bytes / GIB:.3f} GiB sent in collectives'
        + (f' ({program.dcn_bytes / GIB:.3f} GiB across slices)' if self.num_slices > 1 else '')
        + f', {program.mosaic_kernels} Mosaic kernels',
        f'  ESTIMATE (roofline from published chip figures, not measured): step '
        f'{program.step_seconds * 1e3:.2f} ms ({program.bound}-bound; compute '
        f'{program.compute_s * 1e3:.2f}, HBM {program.memory_s * 1e3:.2f}, ICI '
        f'{program.ici_s * 1e3:.2f} ms), {program.items_per_second():,.0f} {program.item_name}/s, '
        f'MFU {100 * program.mfu(chip.peak_bf16_flops):.0f}%',
      ]
    lines += self.notes
    return '\n'.join(lines)

  def to_json(self) -> dict[str, Any]:
    return {
      'accelerator': self.accelerator,
      'num_slices': self.num_slices,
      'chip': self.chip.name,
      'num_chips': self.num_chips,
      'mesh': self.mesh,
      'description': self.description,
      'fits': self.fits,
      'programs': [p.to_json(self.chip.peak_bf16_flops) for p in self.programs],
      'notes': self.notes,
    }


# --- collectives in the optimised HLO ----------------------------------------

_COLLECTIVE = re.compile(
  r'=\s*(?P<shape>\(.*?\)|\S+)\s+(?P<op>all-gather|all-reduce|reduce-scatter|all-to-all|'
  r'collective-permute)(?:-start)?\('
)
_ARRAY = re.compile(
  r'(pred|s8|u8|s16|u16|s32|u32|s64|u64|f16|bf16|f32|f64|f8e4m3fn|f8e5m2)\[([\d,]*)\]'
)
_BYTES = {
  'pred': 1, 's8': 1, 'u8': 1, 'f8e4m3fn': 1, 'f8e5m2': 1, 's16': 2, 'u16': 2, 'f16': 2,
  'bf16': 2, 's32': 4, 'u32': 4, 'f32': 4, 's64': 8, 'u64': 8, 'f64': 8,
}  # fmt: skip
_IOTA_GROUPS = re.compile(r'replica_groups=\[([\d,]+)\]<=\[([\d,]+)\](?:T\(([\d,]+)\))?')
_LIST_GROUPS = re.compile(r'replica_groups=\{(\{[\d,]*\}(?:,\{[\d,]*\})*)\}')


def _shape_bytes(shape: str) -> int:
  total = 0
  for dtype, dims in _ARRAY.findall(shape):
    total += _BYTES[dtype] * math.prod(int(d) for d in dims.split(',') if d)
  return total


def _replica_groups(line: str) -> list[list[int]] | None:
  match = _IOTA_GROUPS.search(line)
  if match:
    groups = [int(d) for d in match.group(1).split(',')]
    dims = [int(d) for d in match.group(2).split(',')]
    ids = np.arange(math.prod(dims)).reshape(dims)
    if match.group(3):
      ids = ids.transpose([int(d) for d in match.group(3).split(',')])
    return ids.reshape(groups).tolist()
  match = _LIST_GROUPS.search(line)
  if match:
    return [
      [int(i) for i in g.split(',') if i] for g in re.findall(r'\{([\d,]*)\}', match.group(1))
    ]
  return None


def collective_bytes(hlo_text: str, slice_of: list[int]) -> tuple[float, float]:
  """Bytes one chip sends in the collectives of an optimised HLO module.

  Ring algorithms: an all-gather of output S over n chips sends S(n-1)/n,
  a reduce-scatter of output S sends S(n-1), an all-reduce of S sends
  2S(n-1)/n; all-to-all and permutes send their output once.

  Args:
    hlo_text: `compiled.as_text()`.
    slice_of: slice index of each logical device id (for DCN traffic).

  Returns:
    (all bytes, bytes of collectives whose groups span slices).
  """
  total = dcn = 0.0
  for line in hlo_text.splitlines():
    match = _COLLECTIVE.search(line)
    if not match or '-done(' in line:
      continue
    size = _shape_bytes(match.group('shape'))
    op = match.group('op')
    groups = _replica_groups(line)
    n = len(groups[0]) if groups and groups[0] else len(slice_of)
    if n <= 1 and op != 'collective-permute':
      continue
    if op == 'all-gather':
      sent = size * (n - 1) / n
    elif op == 'reduce-scatter':
      sent = size * (n - 1)
    elif op == 'all-reduce':
      sent = 2 * size * (n - 1) / n
    else:
      sent = size
    total += sent
    if groups and len({slice_of[i] for i in groups[0] if i < len(slice_of)}) > 1:
      dcn += sent
  return total, dcn


# --- the programs --------------------------------------------------------------


def _with_shardings(abstract: Any, shardings: Any) -> Any:
  return jax.tree.map(
    lambda leaf, s: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=s), abstract, shardings
  )


def _recompute_factor(config) -> float:
  """Train-step work over model FLOPs from rematerialisation: 'full' runs the
  forward pass again in the backward pass (4 forward-equivalents, not 3)."""
  model = config.get('model')
  policy = model.get('remat_policy', 'none') if model is not None else 'none'
  return 4.0 / 3.0 if policy == 'full' else 1.0


def _analyse(
  name: str,
  compiled,
  seconds: float,
  chip: tpu.Chip,
  slice_of: list[int],
  *,
  model_flops: float,
  items: int,
  item_name: str,
  argument_bytes: int = 0,
  recompute: float = 1.0,
) -> ProgramReport:
  if isinstance(compiled, _OutOfHbm):
    return ProgramReport(
      name=name,
      compile_seconds=seconds,
      argument_bytes=argument_bytes,
      output_bytes=0,
      temp_bytes=compiled.need if 'temporar' in compiled.what else 0,
      alias_bytes=0,
      code_bytes=0 if 'temporar' in compiled.what else compiled.need,
      hbm_bytes=chip.hbm_bytes,
      flops=0.0,
      bytes_accessed=0.0,
      collective_bytes=0.0,
      dcn_bytes=0.0,
      model_flops=model_flops,
      items=items,
      item_name=item_name,
      compute_s=model_flops / chip.peak_bf16_flops,
      memory_s=0.0,
      ici_s=0.0,
      dcn_s=0.0,
      compiler_error=compiled.message,
    )
  memory = compiled.memory_analysis()
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  flops = float(cost.get('flops', 0.0))
  bytes_accessed = float(cost.get('bytes accessed', 0.0))
  hlo = compiled.as_text()
  sent, across = collective_bytes(hlo, slice_of)
  dcn_bandwidth = chip.dcn_bandwidth or chip.ici_bandwidth
  return ProgramReport(
    name=name,
    compile_seconds=seconds,
    argument_bytes=int(memory.argument_size_in_bytes),
    output_bytes=int(memory.output_size_in_bytes),
    temp_bytes=int(memory.temp_size_in_bytes),
    alias_bytes=int(memory.alias_size_in_bytes),
    code_bytes=int(memory.generated_code_size_in_bytes),
    hbm_bytes=chip.hbm_bytes,
    flops=flops,
    bytes_accessed=bytes_accessed,
    collective_bytes=sent,
    dcn_bytes=across,
    model_flops=model_flops,
    items=items,
    item_name=item_name,
    # XLA's cost analysis counts a scanned layer's loop body once and a Pallas
    # kernel (splash attention) as 0 FLOPs, so it undercounts a scanned model;
    # the work is at least the model FLOPs plus what remat recomputes.
    compute_s=max(flops, model_flops * recompute) / chip.peak_bf16_flops,
    memory_s=bytes_accessed / chip.hbm_bandwidth,
    ici_s=(sent - across) / chip.ici_bandwidth,
    dcn_s=across / dcn_bandwidth,
    mosaic_kernels=hlo.count('custom_call_target="tpu_custom_call"'),
  )


class _AbstractEncoder:
  """A frozen model known by shapes only: what `TextToVideo` and the task read of it.

  `state` is zeros of the right shapes, built only inside the traced
  `init_state` (`jax.eval_shape`), so nothing is allocated.
  """

  def __init__(self, module: nnx.Module, **attributes: Any):
    self.module = module
    self.graphdef, self._abstract = nnx.split(module)
    for key, value in attributes.items():
      setattr(self, key, value)

  @property
  def state(self):
    """Shapes outside a trace; inside one (the traced `init_state`), zeros that
    are never materialised."""
    if not isinstance(jnp.zeros((), jnp.int8), jax.core.Tracer):
      return self._abstract
    return jax.tree.map(lambda leaf: jnp.zeros(leaf.shape, leaf.dtype), self._abstract)

  def latent_shape(self, num_frames: int, height: int, width: int):
    return self.module.latent_shape(num_frames, height, width)

  def num_frames(self, latent_frames: int) -> int:
    return self.module.num_frames_for(latent_frames)


def tokenizer_model_config(config: ml_collections.ConfigDict) -> tuple[Any, str]:
  """The tokenizer model section a transformer config trains on, and where it came from."""
  from etils import epath  # noqa: PLC0415

  from videogen.vq import config as vq_config  # noqa: PLC0415

  path = config.tokenizer.checkpoint
  if path and not path.startswith('gs://') and (epath.Path(path) / 'config.json').exists():
    from videogen import weights  # noqa: PLC0415

    return weights.read_config(path).model, f'the tokenizer run in {path}'
  variant = 'tiny' if config.model.variant == 'tiny' else 'base'
  return vq_config.model_config(variant), f'a {variant} FSQ tokenizer (no local run named)'


def _abstract_model(config: ml_collections.ConfigDict):
  """A weightless `TextToVideo` whose frozen encoders are known by shapes only."""
  from videogen.text import checkpoint as t5_checkpoint  # noqa: PLC0415
  from videogen.text.encoder import T5Encoder  # noqa: PLC0415
  from videogen.text.t5 import T5EncoderConfig  # noqa: PLC0415
  from videogen.transformer.inference import TextToVideo  # noqa: PLC0415
  from videogen.vq.model import VideoAutoencoder  # noqa: PLC0415

  model_config, source = tokenizer_model_config(config)
  autoencoder = nnx.eval_shape(lambda: VideoAutoencoder(model_config, rngs=nnx.Rngs(0)))
  tokenizer = _AbstractEncoder(autoencoder, codebook_size=autoencoder.quantizer.codebook_size)
  if config.text.path:
    t5_config = t5_checkpoint.read_config(config.text.path)
  else:
    default = config.text.default_model
    t5_config = T5EncoderConfig(
      vocab_size=default.max_vocab_size,
      d_model=default.d_model,
      d_kv=default.d_kv,
      d_ff=default.d_ff,
      num_layers=default.num_layers,
      num_heads=default.num_heads,
      feed_forward_proj=default.feed_forward_proj,
    )
  encoder = nnx.eval_shape(lambda: T5Encoder.from_config(t5_config, dtype=config.text.dtype))
  text_encoder = _AbstractEncoder(
    encoder.network, embed_dim=t5_config.d_model, tokenizer=None, config=t5_config
  )
  return TextToVideo(config, tokenizer, text_encoder), source


@dataclasses.dataclass
class _Stage:
  task: Any
  batch: dict[str, tuple[tuple[int, ...], Any]]
  description: str
  item_name: str


def _stage(config: ml_collections.ConfigDict, mesh) -> _Stage:
  batch_size = config.batch_size
  data = config.data
  video = ((batch_size, data.num_frames, data.height, data.width, 3), jnp.float32)
  if config.stage == 'tokenizer':
    from videogen.vq.task import TokenizerTask  # noqa: PLC0415

    task = TokenizerTask(config, mesh)
    params = _count_params(task.abstract_model)
    description = (
      f'{config.model.variant} tokenizer ({config.model.quantizer}, {task.codebook_size} codes): '
      f'{params / 1e6:.1f}M parameters, clips of {data.num_frames}x{data.height}x{data.width} -> '
      f'{"x".join(map(str, task.latent_shape))} tokens, global batch {batch_size}, '
      f'{config.compute_dtype} activations, GAN {"on" if config.loss.gan.enabled else "off"}'
    )
    return _Stage(task, {'video': video}, description, 'frames')
  if config.stage != 'transformer':
    raise ValueError(
      f"config.stage {config.stage!r} cannot be compiled; valid: 'tokenizer', 'transformer'"
    )
  from videogen.transformer.task import TransformerTask  # noqa: PLC0415

  model, source = _abstract_model(config)
  # The embedding cache is read from disk at construction; the step only
  # sees its output (`text_emb` in the batch), which is what is compiled.
  task_config = copy.deepcopy(config)
  with task_config.unlocked():
    task_config.text.cache_embeddings = False
  task = TransformerTask(task_config, mesh, workdir='/nonexistent', model=model)
  text_length = config.text.max_length
  batch = {}
  if config.tokenizer.cache_tokens:
    batch['tokens'] = ((batch_size, *task.latent_shape), jnp.int32)
  else:
    batch['video'] = video
  if config.text.cache_embeddings:
    batch['text_emb'] = ((batch_size, text_length, model.text_encoder.embed_dim), jnp.float32)
  else:
    batch['text_ids'] = ((batch_size, text_length), jnp.int32)
  batch['text_mask'] = ((batch_size, text_length), jnp.int32)
  spec = task.spec
  params = _count_params(nnx.eval_shape(lambda: _transformer(spec)))
  description = (
    f'{config.model.variant} transformer: {params / 1e9:.2f}B parameters ({spec.num_layers} '
    f'layers, width {spec.embed_dim}, {spec.num_heads}/{spec.num_kv_heads} q/kv heads), '
    f'{spec.seq_length} tokens per clip ({"x".join(map(str, task.latent_shape))}) of '
    f'{data.num_frames}x{data.height}x{data.width} frames, vocab {spec.vocab_size}, '
    f'global batch {batch_size}, {config.compute_dtype} activations, remat '
    f'{spec.remat_policy}, scan_layers {spec.scan_layers}, attention '
    f'{_attention_name(spec.attention_backend)}; frozen encoders from {source}'
  )
  return _Stage(task, batch, description, 'tokens')


def _transformer(spec):
  from videogen.transformer.model import Transformer  # noqa: PLC0415

  return Transformer(spec, rngs=nnx.Rngs(0))


def _count_params(module: nnx.Module) -> int:
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(nnx.state(module, nnx.Param)))


def _attention_name(backend: str) -> str:
  from videogen.transformer import attention  # noqa: PLC0415

  resolved = attention.resolve_backend(backend, platform='tpu')
  return 'splash (Pallas, TPU)' if resolved == 'pallas' else resolved


_OUT_OF_HBM = re.compile(r'required for (?P<what>[\w ]+?) \((?P<need>[\d.]+)(?P<unit>[KMGT])\)')
_UNITS = {'K': 2**10, 'M': 2**20, 'G': 2**30, 'T': 2**40}


class _OutOfHbm:
  """XLA:TPU refused to compile: what it needed does not fit in HBM."""

  def __init__(self, message: str):
    self.message = message
    match = _OUT_OF_HBM.search(message)
    self.what = match.group('what') if match else 'the program'
    self.need = int(float(match.group('need')) * _UNITS[match.group('unit')]) if match else 0


def _bytes_per_chip(tree: Any) -> int:
  """Bytes of one chip's shards of the abstract arrays in `tree`."""
  total = 0
  for leaf in jax.tree.leaves(tree):
    shard = leaf.sharding.shard_shape(leaf.shape)
    itemsize = 8 if jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key) else leaf.dtype.itemsize
    total += math.prod(shard) * itemsize
  return total


def _compile(jitted, *args: Any) -> tuple[Any, float]:
  """Traces, lowers and compiles `jitted` for `args`; returns it (or `_OutOfHbm`
  when the compiler finds it cannot fit) and the seconds taken."""
  start = time.perf_counter()
  with platform_lib.target('tpu'):
    lowered = jitted.lower(*args)
    traced = time.perf_counter()
    try:
      compiled = lowered.compile()
    except jax.errors.JaxRuntimeError as error:
      if 'RESOURCE_EXHAUSTED' not in str(error):
        raise
      compiled = _OutOfHbm(str(error).strip().splitlines()[0])
  end = time.perf_counter()
  logging.info('Traced and lowered in %.1f s, compiled in %.1f s.', traced - start, end - traced)
  return compiled, end - start


def slice_mesh(config: ml_collections.ConfigDict, devices: list, num_slices: int):
  """The config's (data, fsdp, tensor) mesh over `devices`; slices go to `dcn_data`
  unless the config already splits them.

  Raises:
    ValueError: when the config's DCN axes name another number of slices.
  """
  mesh_config = copy.deepcopy(config.mesh)
  dcn = mesh_config.dcn_data * mesh_config.dcn_fsdp * mesh_config.dcn_tensor
  if dcn != num_slices:
    if dcn != 1:
      raise ValueError(
        f'config.mesh has DCN axes for {dcn} slices but --num_slices is {num_slices}; set '
        'config.mesh.dcn_data/dcn_fsdp/dcn_tensor to multiply to the slices.'
      )
    with mesh_config.unlocked():
      mesh_config.dcn_data = num_slices
  return mesh_lib.create_mesh(mesh_config, devices)


def compile_config(
  config: ml_collections.ConfigDict,
  accelerator: str,
  num_slices: int = 1,
  *,
  decode: bool = True,
  out: str | None = None,
) -> CompileReport:
  """Compiles `config`'s train step (and decode step) for a TPU slice; nothing runs.

  Args:
    config: a locked experiment config.
    accelerator: 'v5p-128', 'v5e-64', 'v6e-256', ... or a topology ('v5e:2x2').
    num_slices: slices joined over DCN (multi-slice).
    decode: also compile the transformer's KV-cached decode step.
    out: write the serialized train-step executable here (see `save_executable`).

  Returns:
    A CompileReport (estimates are labelled as such in its summary).

  Raises:
    ValueError: unknown accelerator, a mesh or batch that does not divide.
  """
  from videogen.train import loop  # noqa: PLC0415

  if num_slices < 1:
    raise CompileUsageError(f'--num_slices must be at least 1, got {num_slices}.')
  try:
    slice_type = tpu.parse_accelerator(accelerator)
    devices = tpu.slice_devices(slice_type, num_slices)
    mesh = slice_mesh(config, devices, num_slices)
  except ValueError as error:
    raise CompileUsageError(str(error)) from None
  rules = config.logical_axis_rules
  batch_shards = mesh.shape['data'] * mesh.shape['fsdp']
  if config.batch_size % batch_shards:
    raise CompileUsageError(
      f'batch_size {config.batch_size} is not divisible by the batch axes data*fsdp = '
      f'{batch_shards} of {accelerator}; set --config.batch_size to a multiple of {batch_shards}.'
    )
  slice_of = [getattr(d, 'slice_index', 0) for d in mesh.devices.flat]
  chip = slice_type.chip
  programs = []
  with sharding.axis_rules(mesh, rules), platform_lib.target('tpu'):
    stage = _stage(config, mesh)
    task = stage.task
    rng_key = jax.random.key(config.seed)
    abstract_state = jax.eval_shape(task.init_state, rng_key)
    state_shardings = sharding.tree_shardings(abstract_state, mesh, rules)
    state = _with_shardings(abstract_state, state_shardings)
    batch = {
      key: jax.ShapeDtypeStruct(
        shape, dtype, sharding=sharding.batch_sharding(mesh, rules, len(shape))
      )
      for key, (shape, dtype) in stage.batch.items()
    }
    rng = jax.ShapeDtypeStruct(rng_key.shape, rng_key.dtype, sharding=sharding.replicated(mesh))
    step_fn = loop.jit_train_step(task, config, mesh, state_shardings)
    compiled, seconds = _compile(step_fn, state, batch, rng)
    cost = task.step_cost(config.batch_size)
    items = cost.tokens if stage.item_name == 'tokens' else cost.frames
    programs.append(
      _analyse(
        'train step',
        compiled,
        seconds,
        chip,
        slice_of,
        model_flops=cost.flops / mesh.size,
        items=items,
        item_name=stage.item_name,
        argument_bytes=_bytes_per_chip((state, batch, rng)),
        recompute=_recompute_factor(config),
      )
    )
    notes = []
    if out and not isinstance(compiled, _OutOfHbm):
      notes.append(save_executable(compiled, out))
    if decode and config.stage == 'transformer':
      programs.append(_decode_program(config, task, mesh, chip, slice_of))
  return CompileReport(
    accelerator=accelerator,
    num_slices=num_slices,
    chip=chip,
    num_chips=mesh.size,
    mesh=dict(mesh.shape),
    description=stage.description,
    programs=programs,
    notes=notes,
  )


def _decode_program(config, task, mesh, chip: tpu.Chip, slice_of: list[int]) -> ProgramReport:
  """One KV-cached decoding position for `config.batch_size` rows, cache at the clip length."""
  from videogen.transformer import losses  # noqa: PLC0415
  from videogen.transformer.model import DecodeCache  # noqa: PLC0415

  rules = sharding.normalize_rules(config.logical_axis_rules)
  spec = dataclasses.replace(task.spec, scan_layers=False)
  graphdef, abstract_params = nnx.split(nnx.eval_shape(lambda: _transformer(spec)))
  params = _with_shardings(abstract_params, sharding.tree_shardings(abstract_params, mesh, rules))
  rows, length, text_length = config.batch_size, spec.seq_length, config.text.max_length
  dtype = jnp.dtype(spec.dtype)

  def array(shape, array_dtype, axes):
    spec_ = sharding.logical_to_spec(axes, rules, mesh, shape)
    return jax.ShapeDtypeStruct(
      shape, array_dtype, sharding=jax.sharding.NamedSharding(mesh, spec_)
    )

  self_shape = (rows, spec.num_kv_heads, length, spec.head_dim)
  cross_shape = (rows, text_length, spec.num_kv_heads, spec.head_dim)
  self_axes = ('batch', 'kv_heads', 'kv_length', 'head_dim')
  cross_axes = ('batch', 'text_length', 'kv_heads', 'head_dim')
  layers = range(spec.num_layers)
  cache = DecodeCache(
    key=tuple(array(self_shape, dtype, self_axes) for _ in layers),
    value=tuple(array(self_shape, dtype, self_axes) for _ in layers),
    cross_key=tuple(array(cross_shape, dtype, cross_axes) for _ in layers),
    cross_value=tuple(array(cross_shape, dtype, cross_axes) for _ in layers),
    context_mask=array((rows, text_length), jnp.bool_, ('batch', None)),
    frame_offset=array((rows,), jnp.int32, ('batch',)),
  )
  token = array((rows,), jnp.int32, ('batch',))
  index = jax.ShapeDtypeStruct((), jnp.int32, sharding=sharding.replicated(mesh))

  def decode_step(params, token, index, cache):
    model = nnx.merge(graphdef, params)
    return model.decode_step(token, index, cache)

  step = jax.jit(decode_step, donate_argnums=(3,))
  compiled, seconds = _compile(step, params, token, index, cache)
  # One position of the forward pass, attending on average half the cache.
  flops = losses.forward_flops(spec, rows, 1, text_length)
  flops += rows * spec.num_layers * 2.0 * length * spec.num_heads * spec.head_dim
  return _analyse(
    'decode step',
    compiled,
    seconds,
    chip,
    slice_of,
    model_flops=flops / mesh.size,
    items=rows,
    item_name='tokens',
    argument_bytes=_bytes_per_chip((params, token, index, cache)),
  )


def save_executable(compiled, path: str) -> str:
  """Writes the compiled step's serialized XLA:TPU executable to `path`.

  Returns:
    A line saying what was written.
  """
  from etils import epath  # noqa: PLC0415

  data = compiled.runtime_executable().serialize()
  epath.Path(path).write_bytes(data)
  return f'Wrote the serialized train-step executable ({len(data) / 2**20:.1f} MiB) to {path}.'
