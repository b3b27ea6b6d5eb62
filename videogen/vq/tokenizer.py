"""The public video tokenizer: clips <-> int32 tokens, jitted.

```
tokenizer = Tokenizer.load('runs/tokenizer')        # workdir, checkpoints/<step> or export
tokens = tokenizer.encode(video)                    # float [B, T, H, W, 3] in [-1, 1]
video = tokenizer.decode(tokens)                    # int32 [B, t, h, w] -> [B, T, H, W, 3]
```

Inside another stage's jitted step use the pure functions on the split
model: `encode_fn(tokenizer.graphdef, tokenizer.state, video)`. How the
tokens are quantized (FSQ, LFQ, VQ) is invisible from here.
"""

from __future__ import annotations

import functools
import json
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from etils import epath
from flax import nnx

from videogen import weights
from videogen.parallel import sharding
from videogen.vq.model import VideoAutoencoder

EXPORT_WEIGHTS = 'model.safetensors'  # Weights file of an exported tokenizer directory.


def encode_fn(graphdef: nnx.GraphDef, state: nnx.State, video: jax.Array) -> jax.Array:
  """Tokenizes clips (pure; jit it or call it inside a jitted function).

  Args:
    graphdef: `Tokenizer.graphdef`.
    state: `Tokenizer.state` (parameters and codebook state).
    video: float [batch, T, H, W, 3] in [-1, 1], T = 1 + temporal_downsample * k.

  Returns:
    int32 [batch, t, h, w] tokens in [0, codebook_size).
  """
  return nnx.merge(graphdef, state).encode(video)


def decode_fn(graphdef: nnx.GraphDef, state: nnx.State, tokens: jax.Array) -> jax.Array:
  """Decodes tokens to clips (pure).

  Args:
    graphdef: `Tokenizer.graphdef`.
    state: `Tokenizer.state`.
    tokens: int32 [batch, t, h, w].

  Returns:
    float32 [batch, 1 + temporal_downsample * (t - 1), H, W, 3] in [-1, 1].
  """
  return nnx.merge(graphdef, state).decode(tokens)


class Tokenizer:
  """A trained video tokenizer with jitted encode/decode.

  Build with `Tokenizer.load(path)` or `Tokenizer.from_model(model, config)`.

  Attributes:
    config: the model section (`config.model`) it was built from.
    graphdef: the model's static structure, for `encode_fn`/`decode_fn`.
    state: its variables (an `nnx.State`: parameters and codebook state).
    mesh: the mesh the state is sharded over, or None (one device).
    step: the training step `load` restored, None for exports and built models.
  """

  def __init__(
    self,
    graphdef: nnx.GraphDef,
    state: nnx.State,
    config: ml_collections.ConfigDict,
    *,
    mesh: jax.sharding.Mesh | None = None,
    rules: Sequence[Sequence[Any]] | None = None,
  ):
    self.graphdef = graphdef
    self.state = state
    self.config = config
    self.mesh = mesh
    self.step: int | None = None  # The checkpoint step `load` restored (None: not from a run).
    self._rules = rules
    self._model = nnx.merge(graphdef, state)
    self._encode = jax.jit(functools.partial(encode_fn, graphdef))
    self._decode = jax.jit(functools.partial(decode_fn, graphdef))

  @classmethod
  def from_model(
    cls,
    model: VideoAutoencoder,
    config: ml_collections.ConfigDict,
    *,
    mesh: jax.sharding.Mesh | None = None,
    rules: Sequence[Sequence[Any]] | None = None,
  ) -> Tokenizer:
    """Wraps a built model.

    Args:
      model: a `VideoAutoencoder`.
      config: its model section (`config.model`).
      mesh: where the model's arrays live, when sharded; activations are
        then constrained by `rules`.
      rules: logical axis rules (default: videogen's defaults).
    """
    graphdef, state = nnx.split(model)
    return cls(graphdef, state, config, mesh=mesh, rules=rules)

  @classmethod
  def load(
    cls,
    path: str,
    *,
    mesh: jax.sharding.Mesh | None = None,
    use_ema: bool = True,
    dtype: str = 'float32',
  ) -> Tokenizer:
    """Restores a trained tokenizer.

    Args:
      path: a tokenizer workdir (latest step), `workdir/checkpoints/<step>`,
        or an exported tokenizer directory (`config.json` + `model.safetensors`);
        local or remote (`gs://`).
      mesh: shard the parameters over this mesh by the run's logical axis
        rules; None puts everything on the first local device.
      use_ema: take the EMA parameters when the run kept them (an export
        holds the weights it was written with).
      dtype: activation dtype of the convolutions ('float32' or 'bfloat16').
    """
    config = weights.read_config(path)
    if config.get('stage') != 'tokenizer':
      raise ValueError(f'{path} is a {config.get("stage")!r} run, not a tokenizer run.')
    abstract = nnx.eval_shape(
      lambda: VideoAutoencoder(config.model, dtype=jnp.dtype(dtype), rngs=nnx.Rngs(0))
    )
    graphdef, abstract_params, abstract_model_state = nnx.split(abstract, nnx.Param, ...)
    rules = config.logical_axis_rules
    shardings = {}
    if mesh is not None:
      shardings = {
        'params': sharding.tree_shardings(abstract_params, mesh, rules),
        'model_state': sharding.tree_shardings(abstract_model_state, mesh, rules),
      }
    step = None
    if weights.is_workdir(path) or epath.Path(path).parent.name == 'checkpoints':
      step, params, model_state = weights.restore_model_at(
        path, abstract_params, abstract_model_state, use_ema=use_ema, shardings=shardings
      )
    else:
      variables = weights.load_tree(
        epath.Path(path) / EXPORT_WEIGHTS,
        {'params': abstract_params, 'model_state': abstract_model_state},
        shardings=shardings or None,
      )
      params, model_state = variables['params'], variables['model_state']
    model = nnx.merge(graphdef, params, model_state)
    tokenizer = cls.from_model(model, config.model, mesh=mesh, rules=rules)
    tokenizer.step = step
    return tokenizer

  def export(self, out: str | epath.PathLike, *, dtype: str | None = None) -> int:
    """Writes a self-contained tokenizer directory that `Tokenizer.load` reads.

    `out/config.json` (stage, model section, axis rules) and
    `out/model.safetensors` (parameters and model state by logical path; no
    orbax, no pickle).

    Args:
      out: the directory to write (local or remote).
      dtype: cast floating-point weights (e.g. 'bfloat16'); None keeps float32.

    Returns:
      Bytes written.
    """
    out = epath.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    config = ml_collections.ConfigDict(
      {
        'stage': 'tokenizer',
        'model': self.config.to_dict(),
        'logical_axis_rules': [list(r) for r in self._rules or sharding.DEFAULT_LOGICAL_AXIS_RULES],
      }
    )
    text = json.dumps(config.to_dict(), indent=2, sort_keys=True)
    (out / weights.CONFIG_FILE).write_text(text)
    _, params, model_state = nnx.split(self._model, nnx.Param, ...)
    size = weights.save_tree(
      out / EXPORT_WEIGHTS, {'params': params, 'model_state': model_state}, dtype=dtype
    )
    return size + len(text)

  def _context(self):
    if self.mesh is None:  # On one device: constraints of a caller's training mesh do not apply.
      return sharding.local_computation()
    rules = self._rules if self._rules is not None else sharding.DEFAULT_LOGICAL_AXIS_RULES
    return sharding.axis_rules(self.mesh, rules)

  @property
  def codebook_size(self) -> int:
    """Number of distinct tokens."""
    return self._model.quantizer.codebook_size

  def latent_shape(self, num_frames: int, height: int, width: int) -> tuple[int, int, int]:
    """(t, h, w) tokens of a [num_frames, height, width] clip; raises if it does not fit."""
    return self._model.latent_shape(num_frames, height, width)

  def num_frames_for(self, latent_frames: int) -> int:
    """Frames that `latent_frames` token frames decode to."""
    return self._model.num_frames_for(latent_frames)

  def num_frames(self, latent_frames: int) -> int:
    """Same as `num_frames_for` (the name the module contract uses)."""
    return self.num_frames_for(latent_frames)

  def encode(self, video: jax.Array | np.ndarray) -> jax.Array:
    """video: float [batch, T, H, W, 3] in [-1, 1] -> int32 tokens [batch, t, h, w]."""
    if video.ndim != 5 or video.shape[-1] != 3:
      raise ValueError(f'encode expects video [batch, T, H, W, 3], got shape {video.shape}')
    self.latent_shape(*video.shape[1:4])
    with self._context():
      return self._encode(self.state, jnp.asarray(video, jnp.float32))

  def decode(self, tokens: jax.Array | np.ndarray) -> jax.Array:
    """tokens: int32 [batch, t, h, w] -> float32 [batch, T, H, W, 3] in [-1, 1]."""
    if tokens.ndim != 4:
      raise ValueError(f'decode expects tokens [batch, t, h, w], got shape {tokens.shape}')
    with self._context():
      return self._decode(self.state, jnp.asarray(tokens, jnp.int32))

  def encode_uint8(self, video: np.ndarray) -> jax.Array:
    """video: uint8 [batch, T, H, W, 3] -> int32 tokens [batch, t, h, w]."""
    return self.encode(np.asarray(video, np.float32) / 127.5 - 1.0)

  def decode_uint8(self, tokens: jax.Array | np.ndarray) -> np.ndarray:
    """tokens: int32 [batch, t, h, w] -> uint8 numpy [batch, T, H, W, 3]."""
    video = np.asarray(self.decode(tokens))
    return np.round((video + 1.0) * 127.5).clip(0, 255).astype(np.uint8)

  def device_encoder(self) -> Callable[[np.ndarray], jax.Array]:
    """An `encode` for bulk encoding that keeps every local device of this process busy.

    The variables are replicated over the local devices and each call's clips
    are split between them (a call whose clip count is not a multiple of the
    device count is padded with copies of its last clip). Calls do not block
    until their result is read, so the caller can prepare the next batch while
    the devices encode this one. Each process encodes on its own devices only:
    multi-process callers give each process its own clips.

    Returns:
      encode: float [b, T, H, W, 3] in [-1, 1] -> int32 tokens [b, t, h, w]
      (a lazy array; `np.asarray` it to wait).
    """
    from jax.sharding import NamedSharding, PartitionSpec  # noqa: PLC0415

    devices = jax.local_devices()
    mesh = jax.sharding.Mesh(np.array(devices), ('clips',))
    replicated = NamedSharding(mesh, PartitionSpec())
    by_clip = NamedSharding(mesh, PartitionSpec('clips'))
    state = jax.device_put(self.state, replicated)
    encode = jax.jit(
      functools.partial(encode_fn, self.graphdef),
      in_shardings=(replicated, by_clip),
      out_shardings=by_clip,
    )

    def encode_clips(video: np.ndarray) -> jax.Array:
      video = np.asarray(video, np.float32)
      if video.ndim != 5 or video.shape[-1] != 3:
        raise ValueError(f'encode expects video [batch, T, H, W, 3], got shape {video.shape}')
      count = len(video)
      missing = -count % len(devices)
      if missing:
        video = np.concatenate([video, np.repeat(video[-1:], missing, axis=0)])
      with sharding.local_computation():
        tokens = encode(state, jax.device_put(video, by_clip))  # Local devices only.
      return tokens[:count] if missing else tokens

    return encode_clips
