"""Hugging Face-layout T5 checkpoints: `config.json` + safetensors, no torch, no pickle.

A directory as `save_pretrained(safe_serialization=True)` writes it for
`T5EncoderModel`, `T5ForConditionalGeneration`, `MT5*` or `UMT5*`:

  config.json                                  HF T5Config (d_model, num_layers, ...)
  model.safetensors                            or, when sharded,
  model-00001-of-0000N.safetensors ...         with
  model.safetensors.index.json                 {"weight_map": {tensor name: file}}
  spiece.model                                 (optional) the sentencepiece model

Only encoder tensors are read; decoder and LM-head tensors are ignored. The
embedding table is `encoder.embed_tokens.weight` when stored, else
`shared.weight` (T5EncoderModel stores only the latter for the tied table).
HF Linear weights are (out, in); ours are (in, out) with heads split out.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Callable, Mapping

import numpy as np
from etils import epath

from videogen.safetensors_io import SafetensorsFile
from videogen.text.t5 import T5EncoderConfig

CONFIG_NAME = 'config.json'
WEIGHTS_NAME = 'model.safetensors'
INDEX_NAME = 'model.safetensors.index.json'
SPIECE_NAME = 'spiece.model'

# model_type -> every layer has its own relative position bias.
_MODEL_TYPES = {'t5': False, 'mt5': False, 'umt5': True}
_ARCHITECTURE_TYPES = {
  'T5EncoderModel': 't5',
  'T5ForConditionalGeneration': 't5',
  'T5Model': 't5',
  'MT5EncoderModel': 'mt5',
  'MT5ForConditionalGeneration': 'mt5',
  'MT5Model': 'mt5',
  'UMT5EncoderModel': 'umt5',
  'UMT5ForConditionalGeneration': 'umt5',
  'UMT5Model': 'umt5',
}
_EMBEDDING_NAMES = ('encoder.embed_tokens.weight', 'shared.weight')


class CheckpointError(ValueError):
  """A checkpoint directory that cannot be loaded as a T5 encoder."""


def read_config(path: str | epath.PathLike) -> T5EncoderConfig:
  """Reads `config.json` of an HF T5-family checkpoint.

  Raises:
    FileNotFoundError: no config.json.
    CheckpointError: not a T5-family architecture, or missing size fields.
  """
  file = epath.Path(path) / CONFIG_NAME
  if not file.exists():
    raise FileNotFoundError(
      f'{file} not found: a T5 checkpoint directory needs config.json '
      '(Hugging Face layout, as save_pretrained writes it).'
    )
  values = json.loads(file.read_text())
  model_type = values.get('model_type')
  if model_type is None:
    architectures = values.get('architectures') or []
    model_type = next(
      (_ARCHITECTURE_TYPES[a] for a in architectures if a in _ARCHITECTURE_TYPES), None
    )
  if model_type not in _MODEL_TYPES:
    raise CheckpointError(
      f'{file}: unsupported architecture (model_type={values.get("model_type")!r}, '
      f'architectures={values.get("architectures")!r}); supported model types: '
      f'{sorted(_MODEL_TYPES)}.'
    )
  required = ('vocab_size', 'd_model', 'd_kv', 'd_ff', 'num_layers', 'num_heads')
  missing = [key for key in required if key not in values]
  if missing:
    raise CheckpointError(f'{file} lacks the T5 config fields {missing}.')
  return T5EncoderConfig(
    **{key: int(values[key]) for key in required},
    relative_attention_num_buckets=int(values.get('relative_attention_num_buckets', 32)),
    relative_attention_max_distance=int(values.get('relative_attention_max_distance', 128)),
    feed_forward_proj=values.get('feed_forward_proj', 'relu'),
    layer_norm_epsilon=float(values.get('layer_norm_epsilon', 1e-6)),
    per_layer_position_bias=_MODEL_TYPES[model_type],
  )


def config_to_hf_dict(
  config: T5EncoderConfig, *, tie_word_embeddings: bool = True
) -> dict[str, Any]:
  """HF `T5Config` / `UMT5Config` keys for an encoder-only checkpoint."""
  umt5 = config.per_layer_position_bias
  return {
    'architectures': ['UMT5EncoderModel' if umt5 else 'T5EncoderModel'],
    'model_type': 'umt5' if umt5 else 't5',
    'vocab_size': config.vocab_size,
    'd_model': config.d_model,
    'd_kv': config.d_kv,
    'd_ff': config.d_ff,
    'num_layers': config.num_layers,
    'num_decoder_layers': config.num_layers,
    'num_heads': config.num_heads,
    'relative_attention_num_buckets': config.relative_attention_num_buckets,
    'relative_attention_max_distance': config.relative_attention_max_distance,
    'feed_forward_proj': config.feed_forward_proj,
    'layer_norm_epsilon': config.layer_norm_epsilon,
    'dropout_rate': 0.0,
    'initializer_factor': 1.0,
    'tie_word_embeddings': tie_word_embeddings,
    'is_encoder_decoder': False,
    'use_cache': False,
    'pad_token_id': 0,
    'eos_token_id': 1,
    'decoder_start_token_id': 0,
  }


def weight_files(path: str | epath.PathLike) -> dict[str, str]:
  """Maps every tensor name to the safetensors file (full path) holding it.

  Raises:
    FileNotFoundError: no safetensors weights, or a shard the index names is absent.
  """
  directory = epath.Path(path)
  index = directory / INDEX_NAME
  if index.exists():
    weight_map = json.loads(index.read_text()).get('weight_map')
    if not isinstance(weight_map, dict) or not weight_map:
      raise CheckpointError(f'{index} has no "weight_map".')
    for shard in sorted(set(weight_map.values())):
      if not (directory / shard).exists():
        raise FileNotFoundError(f'{directory / shard} not found; {index} lists it as a shard.')
    return {name: str(directory / shard) for name, shard in weight_map.items()}
  single = directory / WEIGHTS_NAME
  if single.exists():
    return {name: str(single) for name in SafetensorsFile(single).names}
  pickled = [
    n for n in ('pytorch_model.bin', 'pytorch_model.bin.index.json') if (directory / n).exists()
  ]
  hint = (
    f' Found {pickled[0]} (a torch pickle, which videogen does not load); re-save it with '
    'save_pretrained(dir, safe_serialization=True).'
    if pickled
    else ''
  )
  raise FileNotFoundError(f'No {WEIGHTS_NAME} or {INDEX_NAME} in {directory}.{hint}')


@dataclasses.dataclass(frozen=True)
class _TensorMap:
  """How one of our parameters is stored in an HF checkpoint.

  Attributes:
    param: attribute path in `T5Stack`, e.g. 'layers.query'.
    hf_names: the HF tensor of each layer (one name when not per layer).
    hf_shape: shape of one HF tensor.
    to_ours: HF tensor -> ours; `to_hf` the inverse.
  """

  param: str
  hf_names: tuple[str, ...]
  hf_shape: tuple[int, ...]
  to_ours: Callable[[np.ndarray], np.ndarray]
  to_hf: Callable[[np.ndarray], np.ndarray]

  @property
  def stacked(self) -> bool:
    return self.param.startswith('layers.')


def tensor_maps(config: T5EncoderConfig, embedding_name: str = 'shared.weight') -> list[_TensorMap]:
  """The mapping between our parameters and HF tensor names for `config`."""
  d, h, k, f = config.d_model, config.num_heads, config.d_kv, config.d_ff
  same = lambda x: x
  transpose = lambda x: x.T

  def heads_in(x):  # (h*k, d) -> (d, h, k).
    return x.T.reshape(d, h, k)

  def heads_in_hf(x):
    return x.reshape(d, h * k).T

  def heads_out(x):  # (d, h*k) -> (h, k, d).
    return x.T.reshape(h, k, d)

  def heads_out_hf(x):
    return x.reshape(h * k, d).T

  def per_layer(template):
    return tuple(f'encoder.block.{i}.{template}' for i in range(config.num_layers))

  attention = 'layer.0.SelfAttention'
  mlp = 'layer.1.DenseReluDense'
  maps = [
    _TensorMap('token_embedding', (embedding_name,), (config.vocab_size, d), same, same),
    _TensorMap('layers.attention_norm', per_layer('layer.0.layer_norm.weight'), (d,), same, same),
    _TensorMap(
      'layers.query',
      per_layer(f'{attention}.q.weight'),
      (h * k, d),
      heads_in,
      heads_in_hf,
    ),
    _TensorMap(
      'layers.key',
      per_layer(f'{attention}.k.weight'),
      (h * k, d),
      heads_in,
      heads_in_hf,
    ),
    _TensorMap(
      'layers.value',
      per_layer(f'{attention}.v.weight'),
      (h * k, d),
      heads_in,
      heads_in_hf,
    ),
    _TensorMap(
      'layers.out',
      per_layer(f'{attention}.o.weight'),
      (d, h * k),
      heads_out,
      heads_out_hf,
    ),
    _TensorMap('layers.mlp_norm', per_layer('layer.1.layer_norm.weight'), (d,), same, same),
    _TensorMap('layers.wo', per_layer(f'{mlp}.wo.weight'), (d, f), transpose, transpose),
    _TensorMap('final_norm', ('encoder.final_layer_norm.weight',), (d,), same, same),
  ]
  if config.is_gated:
    maps.append(
      _TensorMap('layers.wi', per_layer(f'{mlp}.wi_0.weight'), (f, d), transpose, transpose)
    )
    maps.append(
      _TensorMap(
        'layers.wi_linear',
        per_layer(f'{mlp}.wi_1.weight'),
        (f, d),
        transpose,
        transpose,
      )
    )
  else:
    maps.append(
      _TensorMap('layers.wi', per_layer(f'{mlp}.wi.weight'), (f, d), transpose, transpose)
    )
  bias_shape = (config.relative_attention_num_buckets, h)
  if config.per_layer_position_bias:
    names = per_layer(f'{attention}.relative_attention_bias.weight')
    maps.append(_TensorMap('layers.relative_attention_bias', names, bias_shape, same, same))
  else:
    name = f'encoder.block.0.{attention}.relative_attention_bias.weight'
    maps.append(_TensorMap('relative_attention_bias', (name,), bias_shape, same, same))
  return maps


def load_encoder_arrays(
  path: str | epath.PathLike, config: T5EncoderConfig, dtype: Any
) -> dict[str, np.ndarray]:
  """Reads the encoder tensors of a checkpoint into our layout, on the host.

  Args:
    path: the checkpoint directory.
    config: its config (from `read_config`).
    dtype: numpy dtype of the returned arrays (float32 or ml_dtypes.bfloat16).

  Returns:
    param path (e.g. 'layers.query') -> array; per-layer tensors stacked
    along a leading layers axis.

  Raises:
    CheckpointError: a missing tensor or one whose shape does not match the
      config (the message names it).
  """
  locations = weight_files(path)
  embedding_name = next((n for n in _EMBEDDING_NAMES if n in locations), None)
  if embedding_name is None:
    raise CheckpointError(f'{path}: no embedding table; expected one of {list(_EMBEDDING_NAMES)}.')
  files: dict[str, SafetensorsFile] = {}

  def read(name: str, expected: tuple[int, ...]) -> np.ndarray:
    if name not in locations:
      raise CheckpointError(f'{path}: tensor {name!r} is missing from the checkpoint.')
    file_path = locations[name]
    if file_path not in files:
      files[file_path] = SafetensorsFile(file_path)
    file = files[file_path]
    if file.shape(name) != expected:
      raise CheckpointError(
        f'{path}: tensor {name!r} has shape {file.shape(name)} but the config '
        f'(d_model={config.d_model}, num_heads={config.num_heads}, d_kv={config.d_kv}, '
        f'd_ff={config.d_ff}, vocab_size={config.vocab_size}, '
        f'relative_attention_num_buckets={config.relative_attention_num_buckets}) '
        f'implies {expected}.'
      )
    return file.get(name)

  arrays = {}
  for spec in tensor_maps(config, embedding_name):
    parts = [spec.to_ours(read(name, spec.hf_shape)).astype(dtype) for name in spec.hf_names]
    arrays[spec.param] = np.stack(parts) if spec.stacked else parts[0]
  return arrays


def encoder_tensors(
  arrays: Mapping[str, np.ndarray], config: T5EncoderConfig
) -> dict[str, np.ndarray]:
  """Our parameter arrays (as `load_encoder_arrays` returns) -> HF tensors."""
  tensors = {}
  for spec in tensor_maps(config):
    value = np.asarray(arrays[spec.param])
    parts = list(value) if spec.stacked else [value]
    for name, part in zip(spec.hf_names, parts, strict=True):
      tensors[name] = np.ascontiguousarray(spec.to_hf(part))
  return tensors


def find_spiece_model(path: str | epath.PathLike) -> epath.Path | None:
  """The sentencepiece model of a checkpoint: `<path>/spiece.model`, else the
  `tokenizer/` sibling that diffusers pipelines use, else None."""
  directory = epath.Path(path)
  for candidate in (
    directory / SPIECE_NAME,
    directory.parent / 'tokenizer' / SPIECE_NAME,
  ):
    if candidate.exists():
      return candidate
  return None
