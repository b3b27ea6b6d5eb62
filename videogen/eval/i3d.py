"""Inception-v1 Inflated 3D ConvNet (I3D), RGB stream, in Flax NNX.

The architecture of deepmind/kinetics-i3d `i3d.py` (`InceptionI3d`, final
endpoint `Logits`), as used through TF-Hub `deepmind/i3d-kinetics-400/1` by
the reference FVD code: Conv3D units without bias followed by batch norm
(offset only, epsilon 1e-3, moving statistics) and ReLU; Inception blocks
Mixed_3b ... Mixed_5c; a [2, 7, 7] average pool, a 1x1x1 conv to 400 logits
and the mean over the remaining time steps. 'SAME' padding everywhere (as in
TensorFlow), so any input size works; for inputs smaller than the standard
224x224 the final pool window shrinks to the feature map (identical at 224).

Weights: `load_weights(path)` reads a file written by `save_weights` (made
from the published checkpoint by `videogen.eval.convert_i3d`): safetensors or
npz, keys are the '/'-joined NNX state paths (e.g.
`mixed_3b/branch_1b/conv/kernel`). No weights ship with videogen.
"""

from __future__ import annotations

import dataclasses
import os

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from videogen.parallel import sharding

NUM_CLASSES = 400
BATCH_NORM_EPSILON = 1e-3  # Sonnet's BatchNorm default.
CONV_AXES = ('conv_kernel', 'conv_kernel', 'conv_kernel', 'conv_in', 'conv_out')


@dataclasses.dataclass(frozen=True)
class MixedSpec:
  """Output channels of one Inception block's branches.

  Attributes:
    branch_0: 1x1x1 conv.
    branch_1: (1x1x1 conv, 3x3x3 conv).
    branch_2: (1x1x1 conv, 3x3x3 conv).
    branch_3: 1x1x1 conv after a 3x3x3 max pool.
  """

  branch_0: int
  branch_1: tuple[int, int]
  branch_2: tuple[int, int]
  branch_3: int

  @property
  def out_channels(self) -> int:
    return self.branch_0 + self.branch_1[1] + self.branch_2[1] + self.branch_3


MIXED_SPECS = {
  'mixed_3b': MixedSpec(64, (96, 128), (16, 32), 32),
  'mixed_3c': MixedSpec(128, (128, 192), (32, 96), 64),
  'mixed_4b': MixedSpec(192, (96, 208), (16, 48), 64),
  'mixed_4c': MixedSpec(160, (112, 224), (24, 64), 64),
  'mixed_4d': MixedSpec(128, (128, 256), (24, 64), 64),
  'mixed_4e': MixedSpec(112, (144, 288), (32, 64), 64),
  'mixed_4f': MixedSpec(256, (160, 320), (32, 128), 128),
  'mixed_5b': MixedSpec(256, (160, 320), (32, 128), 128),
  'mixed_5c': MixedSpec(384, (192, 384), (48, 128), 128),
}


class Unit3D(nnx.Module):
  """Conv3D ('SAME') + optional batch norm (inference statistics) + optional ReLU."""

  def __init__(
    self,
    in_channels: int,
    out_channels: int,
    kernel_size: tuple[int, int, int] = (1, 1, 1),
    strides: tuple[int, int, int] = (1, 1, 1),
    *,
    use_batch_norm: bool = True,
    use_bias: bool = False,
    activation: bool = True,
    rngs: nnx.Rngs,
  ):
    self.conv = nnx.Conv(
      in_channels,
      out_channels,
      kernel_size,
      strides,
      padding='SAME',
      use_bias=use_bias,
      kernel_init=sharding.with_logical(nnx.initializers.lecun_normal(), CONV_AXES),
      bias_init=sharding.with_logical(nnx.initializers.zeros_init(), ('conv_out',)),
      precision=jax.lax.Precision.HIGHEST,
      rngs=rngs,
    )
    self.bn = (
      nnx.BatchNorm(
        out_channels,
        use_running_average=True,
        use_scale=False,
        epsilon=BATCH_NORM_EPSILON,
        bias_init=sharding.with_logical(nnx.initializers.zeros_init(), ('conv_out',)),
        rngs=rngs,
      )
      if use_batch_norm
      else None
    )
    self.activation = activation

  def __call__(self, x: jax.Array) -> jax.Array:
    x = self.conv(x)
    if self.bn is not None:
      x = self.bn(x)
    return nnx.relu(x) if self.activation else x


def _max_pool(x: jax.Array, window: tuple[int, int, int], strides: tuple[int, int, int]):
  return nnx.max_pool(x, window, strides, padding='SAME')


class Mixed(nnx.Module):
  """Inception block: four branches concatenated on channels."""

  def __init__(self, in_channels: int, spec: MixedSpec, *, rngs: nnx.Rngs):
    k3 = (3, 3, 3)
    self.branch_0 = Unit3D(in_channels, spec.branch_0, rngs=rngs)
    self.branch_1a = Unit3D(in_channels, spec.branch_1[0], rngs=rngs)
    self.branch_1b = Unit3D(spec.branch_1[0], spec.branch_1[1], k3, rngs=rngs)
    self.branch_2a = Unit3D(in_channels, spec.branch_2[0], rngs=rngs)
    self.branch_2b = Unit3D(spec.branch_2[0], spec.branch_2[1], k3, rngs=rngs)
    self.branch_3b = Unit3D(in_channels, spec.branch_3, rngs=rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    branch_0 = self.branch_0(x)
    branch_1 = self.branch_1b(self.branch_1a(x))
    branch_2 = self.branch_2b(self.branch_2a(x))
    branch_3 = self.branch_3b(_max_pool(x, (3, 3, 3), (1, 1, 1)))
    return jnp.concatenate([branch_0, branch_1, branch_2, branch_3], axis=-1)


class I3D(nnx.Module):
  """InceptionI3d up to the averaged 400-way Kinetics logits (FVD's embedding)."""

  def __init__(self, num_classes: int = NUM_CLASSES, *, rngs: nnx.Rngs):
    self.conv3d_1a_7x7 = Unit3D(3, 64, (7, 7, 7), (2, 2, 2), rngs=rngs)
    self.conv3d_2b_1x1 = Unit3D(64, 64, rngs=rngs)
    self.conv3d_2c_3x3 = Unit3D(64, 192, (3, 3, 3), rngs=rngs)
    channels = 192
    for name, spec in MIXED_SPECS.items():
      setattr(self, name, Mixed(channels, spec, rngs=rngs))
      channels = spec.out_channels
    self.logits = Unit3D(
      channels,
      num_classes,
      use_batch_norm=False,
      use_bias=True,
      activation=False,
      rngs=rngs,
    )

  def __call__(self, video: jax.Array) -> jax.Array:
    """Kinetics logits averaged over time.

    Args:
      video: float [batch, time, height, width, 3] in [-1, 1]; the standard
        input is 224x224 (see `videogen.eval.fvd` for the FVD protocol).

    Returns:
      float32 [batch, num_classes].
    """
    x = jnp.asarray(video, jnp.float32)
    x = self.conv3d_1a_7x7(x)
    x = _max_pool(x, (1, 3, 3), (1, 2, 2))
    x = self.conv3d_2c_3x3(self.conv3d_2b_1x1(x))
    x = _max_pool(x, (1, 3, 3), (1, 2, 2))
    x = self.mixed_3c(self.mixed_3b(x))
    x = _max_pool(x, (3, 3, 3), (2, 2, 2))
    for name in ('mixed_4b', 'mixed_4c', 'mixed_4d', 'mixed_4e', 'mixed_4f'):
      x = getattr(self, name)(x)
    x = _max_pool(x, (2, 2, 2), (2, 2, 2))
    x = self.mixed_5c(self.mixed_5b(x))
    # [2, 7, 7] at the standard input size; clipped for smaller inputs.
    window = tuple(min(w, s) for w, s in zip((2, 7, 7), x.shape[1:4], strict=True))
    x = nnx.avg_pool(x, window, (1, 1, 1), padding='VALID')
    logits = self.logits(x)  # [batch, time', height', width', classes]
    return jnp.mean(logits, axis=(1, 2, 3))


def flat_state(model: nnx.Module) -> dict[str, jax.Array]:
  """Every variable of `model` by its '/'-joined path."""
  flat = nnx.to_flat_state(nnx.state(model))
  return {'/'.join(str(k) for k in path): variable.get_value() for path, variable in flat}


def abstract_model(num_classes: int = NUM_CLASSES) -> I3D:
  """An I3D with shapes but no values (nothing is computed).

  Loading goes through this: building a random I3D compiles ~230 random
  initialisers, which takes about a minute on CPU.
  """
  return nnx.eval_shape(lambda: I3D(num_classes, rngs=nnx.Rngs(0)))


def save_weights(path: str, weights: dict[str, np.ndarray]) -> None:
  """Writes weights by key as safetensors (`.safetensors`) or npz (otherwise)."""
  weights = {k: np.ascontiguousarray(v, np.float32) for k, v in weights.items()}
  if path.endswith('.safetensors'):
    from safetensors.numpy import save_file

    save_file(weights, path)
  else:
    np.savez(path, **weights)


def read_weights(path: str) -> dict[str, np.ndarray]:
  """Reads a weights file written by `save_weights` (never unpickles)."""
  if path.endswith('.safetensors'):
    from safetensors.numpy import load_file

    return load_file(path)
  with np.load(path, allow_pickle=False) as data:
    return {k: data[k] for k in data.files}


def check_weights(
  weights: dict[str, np.ndarray],
  num_classes: int = NUM_CLASSES,
  model: I3D | None = None,
) -> None:
  """Raises ValueError naming missing, unexpected or mis-shaped entries.

  `model` (abstract or not) saves building the abstract network again.
  """
  model = model if model is not None else abstract_model(num_classes)
  expected = {k: tuple(v.shape) for k, v in flat_state(model).items()}
  missing = sorted(set(expected) - set(weights))
  unexpected = sorted(set(weights) - set(expected))
  wrong = sorted(k for k in set(expected) & set(weights) if tuple(weights[k].shape) != expected[k])
  if missing or unexpected or wrong:
    raise ValueError(
      f'I3D weights do not match the network: missing {missing[:5]} '
      f'({len(missing)}), unexpected {unexpected[:5]} ({len(unexpected)}), '
      f'wrong shape {[(k, weights[k].shape, expected[k]) for k in wrong[:5]]}'
    )


def load_weights(path: str, num_classes: int = NUM_CLASSES) -> I3D:
  """Builds an I3D holding the weights in `path` (see module docstring).

  Raises:
    FileNotFoundError: when `path` does not exist.
    ValueError: when the file does not match the network.
  """
  if not os.path.exists(path):
    raise FileNotFoundError(f'I3D weights not found: {path}')
  weights = read_weights(path)
  model = abstract_model(num_classes)
  check_weights(weights, num_classes, model)
  graphdef, state = nnx.split(model)
  flat = nnx.to_flat_state(state)
  for key_path, variable in flat:
    key = '/'.join(str(k) for k in key_path)
    variable.set_value(jnp.asarray(weights[key], jnp.float32))
  return nnx.merge(graphdef, nnx.from_flat_state(flat))
