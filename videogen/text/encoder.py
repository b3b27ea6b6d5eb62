"""`T5Encoder`: a frozen T5 encoder with its tokenizer, loaded from HF-layout checkpoints.

  enc = T5Encoder.from_pretrained('/ckpt/flan-t5-xl', dtype='bfloat16')
  emb, mask = enc.encode_text(['a red circle moving left'], max_length=32)

Inside another jitted step (the transformer's train step) use the pure form:
`encode_fn(enc.graphdef, enc.state, ids, mask)`; the state may be sharded
with `sharding.tree_shardings(enc.state, mesh, rules)`, or loaded sharded
directly with `from_pretrained(..., mesh=mesh, rules=rules)`.
"""

from __future__ import annotations

import json
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
from etils import epath
from flax import nnx
from jax.sharding import NamedSharding

from videogen.parallel import sharding
from videogen.safetensors_io import save_file
from videogen.text import checkpoint
from videogen.text.t5 import T5EncoderConfig, T5Stack, encode_jit
from videogen.text.tokenizer import SentencePieceTokenizer

_DTYPES = {
  'float32': (jnp.float32, np.float32),
  'bfloat16': (jnp.bfloat16, ml_dtypes.bfloat16),
}


def _dtypes(dtype: str) -> tuple[Any, Any]:
  if dtype not in _DTYPES:
    raise ValueError(f'dtype must be one of {sorted(_DTYPES)}, got {dtype!r}.')
  return _DTYPES[dtype]


class T5Encoder(nnx.Module):
  """A T5-family encoder plus its sentencepiece tokenizer.

  Attributes:
    network: the `T5Stack` module.
    config: its `T5EncoderConfig`.
    tokenizer: `SentencePieceTokenizer`, or None when the checkpoint has none.
    embed_dim: D, the width of the embeddings.
  """

  def __init__(self, network: T5Stack, tokenizer: SentencePieceTokenizer | None = None):
    self.network = network
    self.config: T5EncoderConfig = network.config
    self.tokenizer = tokenizer
    if tokenizer is not None and tokenizer.vocab_size > self.config.vocab_size:
      raise ValueError(
        f'The tokenizer has {tokenizer.vocab_size} pieces but the encoder embeds only '
        f'{self.config.vocab_size} ids; they do not belong together.'
      )

  @classmethod
  def from_config(
    cls,
    config: T5EncoderConfig,
    *,
    dtype: str = 'float32',
    seed: int = 0,
    tokenizer: SentencePieceTokenizer | None = None,
  ) -> T5Encoder:
    """A randomly initialised encoder (HF's init), e.g. for benchmarks."""
    compute_dtype, _ = _dtypes(dtype)
    network = T5Stack(config, dtype=compute_dtype, param_dtype=compute_dtype, rngs=nnx.Rngs(seed))
    return cls(network, tokenizer)

  @classmethod
  def from_pretrained(
    cls,
    path: str | epath.PathLike,
    dtype: str = 'float32',
    *,
    tokenizer_path: str | epath.PathLike | None = None,
    mesh: jax.sharding.Mesh | None = None,
    rules: Sequence[Sequence[Any]] | None = None,
  ) -> T5Encoder:
    """Loads an HF-layout T5 / FLAN-T5 / mT5 / UMT5 checkpoint directory.

    Args:
      path: directory with config.json and model.safetensors (or sharded
        safetensors with model.safetensors.index.json).
      dtype: 'float32' or 'bfloat16', for the weights and the matmuls.
      tokenizer_path: sentencepiece model; default `<path>/spiece.model`, else
        `<path>/../tokenizer/spiece.model` (diffusers layout); no tokenizer
        when neither exists (then only `encode_ids` works).
      mesh: when given, parameters are placed sharded on `mesh` by their
        logical axes (each device receives only its shard); otherwise they go
        to the default device.
      rules: logical axis rules for `mesh`; default
        `sharding.DEFAULT_LOGICAL_AXIS_RULES`.

    Raises:
      FileNotFoundError: a missing config, weights file or tokenizer_path.
      checkpoint.CheckpointError: an unsupported architecture, or a missing
        tensor / a tensor whose shape does not match the config (named).
    """
    directory = epath.Path(path)
    if not directory.exists():
      raise FileNotFoundError(f'T5 checkpoint directory {directory} does not exist.')
    config = checkpoint.read_config(directory)
    compute_dtype, host_dtype = _dtypes(dtype)
    arrays = checkpoint.load_encoder_arrays(directory, config, host_dtype)
    network = nnx.eval_shape(
      lambda: T5Stack(config, dtype=compute_dtype, param_dtype=compute_dtype, rngs=nnx.Rngs(0))
    )
    for param_path, array in arrays.items():
      variable = network
      for name in param_path.split('.'):
        variable = getattr(variable, name)
      variable.value = _place(array, variable, mesh, rules)
    unset = [v for v in jax.tree.leaves(nnx.state(network)) if not isinstance(v, jax.Array)]
    if unset:
      raise checkpoint.CheckpointError(
        f'{len(unset)} encoder parameters have no checkpoint mapping.'
      )
    if tokenizer_path is not None:
      spiece = epath.Path(tokenizer_path)
      if not spiece.exists():
        raise FileNotFoundError(f'tokenizer_path {spiece} does not exist.')
    else:
      spiece = checkpoint.find_spiece_model(directory)
    tokenizer = SentencePieceTokenizer(spiece) if spiece is not None else None
    return cls(network, tokenizer)

  def save_pretrained(self, path: str | epath.PathLike) -> None:
    """Writes config.json, model.safetensors (float32) and spiece.model in HF layout.

    The result loads with `from_pretrained` and with transformers'
    `T5EncoderModel.from_pretrained` / `UMT5EncoderModel.from_pretrained`.
    """
    directory = epath.Path(path)
    directory.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for spec in checkpoint.tensor_maps(self.config):
      variable = self.network
      for name in spec.param.split('.'):
        variable = getattr(variable, name)
      arrays[spec.param] = np.asarray(jax.device_get(variable[...]), np.float32)
    if self.tokenizer is not None:
      (directory / checkpoint.SPIECE_NAME).write_bytes(self.tokenizer.model_proto)
    save_file(
      checkpoint.encoder_tensors(arrays, self.config),
      directory / checkpoint.WEIGHTS_NAME,
    )
    hf_config = checkpoint.config_to_hf_dict(self.config)
    (directory / checkpoint.CONFIG_NAME).write_text(json.dumps(hf_config, indent=2) + '\n')

  @property
  def embed_dim(self) -> int:
    return self.config.d_model

  @property
  def graphdef(self) -> nnx.GraphDef:
    """Static structure of the network, for `encode_fn`."""
    return nnx.split(self.network)[0]

  @property
  def state(self) -> nnx.State:
    """The network's parameters (Variables with logical axes), for `encode_fn`."""
    return nnx.split(self.network)[1]

  def encode_ids(self, input_ids: Any, attention_mask: Any) -> jax.Array:
    """Encodes token ids (jitted; one compile per shape).

    Args:
      input_ids: int [B, L], ids < vocab_size.
      attention_mask: [B, L], nonzero for real tokens.

    Returns:
      float32 [B, L, D].
    """
    input_ids = jnp.asarray(input_ids, jnp.int32)
    attention_mask = jnp.asarray(attention_mask, jnp.int32)
    if input_ids.ndim != 2 or input_ids.shape != attention_mask.shape:
      raise ValueError(
        f'input_ids and attention_mask must both be [batch, length]; got '
        f'{input_ids.shape} and {attention_mask.shape}.'
      )
    if input_ids.size == 0:
      return jnp.zeros((*input_ids.shape, self.embed_dim), jnp.float32)
    if int(input_ids.min()) < 0 or int(input_ids.max()) >= self.config.vocab_size:
      raise ValueError(f'input_ids must lie in [0, {self.config.vocab_size}).')
    graphdef, state = nnx.split(self.network)
    return encode_jit(graphdef, state, input_ids, attention_mask)

  def encode_text(self, texts: Sequence[str], max_length: int = 32) -> tuple[jax.Array, jax.Array]:
    """Tokenizes and encodes prompts.

    Args:
      texts: B prompts; B may be 0.
      max_length: L tokens per prompt, eos included; longer prompts are
        truncated (with one warning).

    Returns:
      embeddings float32 [B, L, D] and mask int32 [B, L].
    """
    if self.tokenizer is None:
      raise ValueError(
        'This T5 checkpoint has no spiece.model; pass tokenizer_path= to '
        'from_pretrained, or tokenize yourself and call encode_ids.'
      )
    ids, mask = self.tokenizer(texts, max_length)
    return self.encode_ids(ids, mask), jnp.asarray(mask)


def _place(
  array: np.ndarray,
  variable: nnx.Variable,
  mesh: jax.sharding.Mesh | None,
  rules: Sequence[Sequence[Any]] | None,
) -> jax.Array:
  """Puts a host array on device(s); sharded by the variable's logical axes on `mesh`."""
  if mesh is None:
    return jnp.asarray(array)
  axes = sharding.param_logical_axes(variable)
  rules = sharding.normalize_rules(
    rules if rules is not None else sharding.DEFAULT_LOGICAL_AXIS_RULES
  )
  spec = sharding.logical_to_spec(axes, rules, mesh, array.shape)
  return jax.make_array_from_callback(
    array.shape, NamedSharding(mesh, spec), lambda index: array[index]
  )
