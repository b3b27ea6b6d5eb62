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
FLOPs and bytes per step and collective bytes read off the optimised HLO,
and a per-operation roofline ESTIMATE of step time, tokens/s and MFU from the
chip's published figures (`videogen.parallel.tpu.CHIPS`,
`videogen.parallel.hlo_roofline`), with the costliest operations named.
Nothing is run.

The transformer's frozen encoders are sized from `config.tokenizer.checkpoint`
when it names a local tokenizer run, else from the tokenizer variant its
size trains on (`tiny` for tiny, `base` otherwise), and the T5 of
`config.text` (its `config.json` when `text.path` is set, else the offline
default's sizes).

`--out FILE` saves the compiled train step for `videogen train
--config.compiled_train_step=FILE` (`videogen.train.compiled_step`), which runs
it instead of compiling when versions, devices and config match.
`--topology cpu` (or `gpu`) compiles for this machine's devices instead of a
TPU slice; it prints no HBM report.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging
from flax import nnx

from videogen import compile_report
from videogen.compile_report import CompileReport, ProgramReport
from videogen.parallel import mesh as mesh_lib
from videogen.parallel import platform as platform_lib
from videogen.parallel import sharding, tpu


class CompileUsageError(ValueError):
  """The accelerator, slice count, mesh or batch cannot describe a run."""


def _with_shardings(abstract: Any, shardings: Any) -> Any:
  return jax.tree.map(
    lambda leaf, s: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=s), abstract, shardings
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

  platform = platform_lib.current()  # The target `_compile_train_step` runs under.
  resolved = attention.resolve_backend(backend, platform=platform)
  return f'splash (Pallas, {platform.upper()})' if resolved == 'pallas' else resolved


def _bytes_per_chip(tree: Any) -> int:
  """Bytes of one chip's shards of the abstract arrays in `tree`."""
  total = 0
  for leaf in jax.tree.leaves(tree):
    shard = leaf.sharding.shard_shape(leaf.shape)
    itemsize = 8 if jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key) else leaf.dtype.itemsize
    total += math.prod(shard) * itemsize
  return total


def _compile(jitted, platform: str, *args: Any) -> tuple[Any, float]:
  """Traces, lowers and compiles `jitted` for `args` on `platform`; returns it (or
  `OutOfHbm` when the compiler finds it cannot fit) and the seconds taken."""
  start = time.perf_counter()
  with platform_lib.target(platform):
    lowered = jitted.lower(*args)
    traced = time.perf_counter()
    try:
      compiled = lowered.compile()
    except jax.errors.JaxRuntimeError as error:
      if 'RESOURCE_EXHAUSTED' not in str(error):
        raise
      compiled = compile_report.OutOfHbm(str(error).strip().splitlines()[0])
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


@dataclasses.dataclass
class _TrainStep:
  stage: _Stage
  mesh: jax.sharding.Mesh
  args: tuple[Any, Any, Any]  # Abstract (state, batch, rng), sharded over `mesh`.
  compiled: Any  # jax.stages.Compiled, or compile_report.OutOfHbm.
  seconds: float


def _check_batch(config: ml_collections.ConfigDict, mesh, where: str) -> None:
  batch_shards = mesh.shape['data'] * mesh.shape['fsdp']
  if config.batch_size % batch_shards:
    raise CompileUsageError(
      f'batch_size {config.batch_size} is not divisible by the batch axes data*fsdp = '
      f'{batch_shards} of {where}; set --config.batch_size to a multiple of {batch_shards}.'
    )


def _compile_train_step(config: ml_collections.ConfigDict, mesh, platform: str) -> _TrainStep:
  """The loop's train step (`loop.jit_train_step`) compiled for `mesh` from abstract
  arguments; call under `sharding.axis_rules` and `platform_lib.target(platform)`."""
  from videogen.train import loop  # noqa: PLC0415

  rules = config.logical_axis_rules
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
  compiled, seconds = _compile(step_fn, platform, state, batch, rng)
  return _TrainStep(stage, mesh, (state, batch, rng), compiled, seconds)


def _save(config, step: _TrainStep, out: str, topology: str) -> str:
  from videogen.train import compiled_step  # noqa: PLC0415

  return compiled_step.save(
    step.compiled, out, config=config, mesh=step.mesh, args=step.args, topology=topology
  )


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
    out: write the train step here for `videogen train --config.compiled_train_step`
      (`videogen.train.compiled_step`).

  Returns:
    A CompileReport (estimates are labelled as such in its summary).

  Raises:
    ValueError: unknown accelerator, a mesh or batch that does not divide.
  """
  if num_slices < 1:
    raise CompileUsageError(f'--num_slices must be at least 1, got {num_slices}.')
  try:
    slice_type = tpu.parse_accelerator(accelerator)
    devices = tpu.slice_devices(slice_type, num_slices)
    mesh = slice_mesh(config, devices, num_slices)
  except ValueError as error:
    raise CompileUsageError(str(error)) from None
  _check_batch(config, mesh, accelerator)
  slice_of = [getattr(d, 'slice_index', 0) for d in mesh.devices.flat]
  chip = slice_type.chip
  programs = []
  with sharding.axis_rules(mesh, config.logical_axis_rules), platform_lib.target('tpu'):
    step = _compile_train_step(config, mesh, 'tpu')
    stage = step.stage
    cost = stage.task.step_cost(config.batch_size)
    items = cost.tokens if stage.item_name == 'tokens' else cost.frames
    programs.append(
      compile_report.analyse_program(
        'train step',
        step.compiled,
        step.seconds,
        chip,
        slice_of,
        model_flops=cost.flops / mesh.size,
        items=items,
        item_name=stage.item_name,
        argument_bytes=_bytes_per_chip(step.args),
      )
    )
    notes = []
    if out and not isinstance(step.compiled, compile_report.OutOfHbm):
      notes.append(_save(config, step, out, accelerator))
    if decode and config.stage == 'transformer':
      programs.append(_decode_program(config, stage.task, mesh, chip, slice_of))
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


LOCAL_PLATFORMS = ('cpu', 'gpu')


def compile_local(config: ml_collections.ConfigDict, platform: str, out: str | None = None) -> str:
  """Compiles `config`'s train step for this machine's `platform` devices, on the
  mesh `videogen train` makes of them; nothing runs.

  Args:
    config: a locked experiment config.
    platform: 'cpu' or 'gpu'.
    out: write the train step here for `videogen train --config.compiled_train_step`.

  Returns:
    What was compiled (and written), in lines.

  Raises:
    CompileUsageError: no such devices here, or a batch that does not divide.
  """
  try:
    devices = jax.devices(platform)
  except RuntimeError as error:
    raise CompileUsageError(f'no {platform} devices on this machine ({error})') from None
  mesh = mesh_lib.create_mesh(config.mesh, devices)
  _check_batch(config, mesh, f'the {len(devices)} {platform} devices here')
  with sharding.axis_rules(mesh, config.logical_axis_rules), platform_lib.target(platform):
    step = _compile_train_step(config, mesh, platform)
  mesh_text = ', '.join(f'{k}={v}' for k, v in mesh.shape.items())
  lines = [
    step.stage.description,
    f'train step compiled for {len(devices)} {platform} devices (mesh {mesh_text}) in '
    f'{step.seconds:.1f} s',
  ]
  if out:
    lines.append(_save(config, step, out, platform))
  return '\n'.join(lines)


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
    prefix=(
      array((rows, spec.prefix_length), jnp.int32, ('batch', None)) if spec.copy_tasks else None
    ),
  )
  token = array((rows,), jnp.int32, ('batch',))
  index = jax.ShapeDtypeStruct((), jnp.int32, sharding=sharding.replicated(mesh))

  def decode_step(params, token, index, cache):
    model = nnx.merge(graphdef, params)
    return model.decode_step(token, index, cache)

  step = jax.jit(decode_step, donate_argnums=(3,))
  compiled, seconds = _compile(step, 'tpu', params, token, index, cache)
  # One position of the forward pass, attending on average half the cache.
  flops = losses.forward_flops(spec, rows, 1, text_length)
  flops += rows * spec.num_layers * 2.0 * length * spec.num_heads * spec.head_dim
  return compile_report.analyse_program(
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
