"""A pluggable LPIPS-style perceptual loss, loaded from a weights file.

No weights ship with videogen (nothing is downloaded at run time); with
`config.loss.perceptual_weights = ''` the loss is off. Given a file, the
network is LPIPS (Zhang et al., 2018) on VGG16 features: frames are shifted
and scaled as LPIPS does, VGG16's five blocks give features at relu1_2,
relu2_2, relu3_3, relu4_3 and relu5_3, each is unit-normalised over channels,
and the squared differences are weighted per channel by LPIPS's linear
layers, averaged over pixels and summed over layers.

Weights file: `.safetensors` or `.npz` (read with allow_pickle=False) with
torchvision's VGG16 names `features.{i}.weight` ([out, in, 3, 3]) and
`features.{i}.bias` for the conv layers i in (0, 2, 5, 7, 10, 12, 14, 17,
19, 21, 24, 26, 28), and LPIPS's `lin{k}.model.1.weight` ([1, c_k, 1, 1]),
k = 0..4. Converting the LPIPS release once with PyTorch:
`safetensors.torch.save_file({**vgg16().features.state_dict() as
'features.*', **lpips_state_dict}, 'lpips_vgg.safetensors')`. Channel counts
are read from the file, so smaller VGG-shaped networks load as well.
"""

from __future__ import annotations

import dataclasses
import os

import jax
import jax.numpy as jnp
import numpy as np

# torchvision VGG16 `features` indices of convs; a 2x2 max-pool follows the
# last conv of each of the first four blocks, and LPIPS taps each block's end.
VGG16_BLOCKS = ((0, 2), (5, 7), (10, 12, 14), (17, 19, 21), (24, 26, 28))
# LPIPS's input normalisation for frames in [-1, 1].
_SHIFT = np.array([-0.030, -0.088, -0.188], np.float32)
_SCALE = np.array([0.458, 0.448, 0.450], np.float32)


def _read_weights(path: str) -> dict[str, np.ndarray]:
  if path.endswith('.safetensors'):
    from safetensors.numpy import load_file  # Only needed when a file is given.

    return dict(load_file(path))
  if path.endswith('.npz'):
    with np.load(path, allow_pickle=False) as data:
      return {key: data[key] for key in data.files}
  raise ValueError(f'Perceptual weights must be .safetensors or .npz, got {path}')


@dataclasses.dataclass(frozen=True)
class PerceptualLoss:
  """LPIPS distance between frames, with weights as constant arrays.

  Build it with `PerceptualLoss.load(path)`; call it on videos.

  Attributes:
    convs: per VGG block, per conv, (kernel [3, 3, in, out], bias [out]).
    linear: per block, the LPIPS channel weights [c].
  """

  convs: tuple[tuple[tuple[jax.Array, jax.Array], ...], ...]
  linear: tuple[jax.Array, ...]

  @classmethod
  def load(cls, path: str) -> PerceptualLoss:
    """Reads a weights file (see the module docstring for its layout)."""
    if not os.path.exists(path):
      raise FileNotFoundError(
        f'loss.perceptual_weights={path!r} does not exist; set it to an LPIPS-VGG16 '
        "weights file or to '' to train without the perceptual loss."
      )
    weights = _read_weights(path)
    convs, linear = [], []
    for block, indices in enumerate(VGG16_BLOCKS):
      layers = []
      for index in indices:
        kernel_key, bias_key = f'features.{index}.weight', f'features.{index}.bias'
        if kernel_key not in weights or bias_key not in weights:
          raise ValueError(f'{path} has no {kernel_key!r}/{bias_key!r} (VGG16 layout expected)')
        kernel = np.transpose(weights[kernel_key], (2, 3, 1, 0))  # OIHW -> HWIO
        layers.append(
          (
            jnp.asarray(kernel, jnp.float32),
            jnp.asarray(weights[bias_key], jnp.float32),
          )
        )
      convs.append(tuple(layers))
      lin_key = f'lin{block}.model.1.weight'
      if lin_key not in weights:
        raise ValueError(f'{path} has no {lin_key!r} (LPIPS linear layers expected)')
      linear.append(jnp.asarray(weights[lin_key], jnp.float32).reshape(-1))
    return cls(tuple(convs), tuple(linear))

  def features(self, frames: jax.Array) -> list[jax.Array]:
    """frames: [n, H, W, 3] in [-1, 1] -> the five block outputs [n, h, w, c]."""
    x = (frames.astype(jnp.float32) - _SHIFT) / _SCALE
    outputs = []
    for block, layers in enumerate(self.convs):
      if block > 0:
        x = jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 2, 2, 1), (1, 2, 2, 1), 'VALID')
      for kernel, bias in layers:
        x = jax.lax.conv_general_dilated(
          x, kernel, (1, 1), 'SAME', dimension_numbers=('NHWC', 'HWIO', 'NHWC')
        )
        x = jax.nn.relu(x + bias)
      outputs.append(x)
    return outputs

  def __call__(self, video: jax.Array, reconstruction: jax.Array) -> jax.Array:
    """Mean LPIPS distance over all frames.

    Args:
      video: [batch, T, H, W, 3] in [-1, 1].
      reconstruction: same shape.

    Returns:
      float32 scalar (0 for identical inputs).
    """
    frames = video.shape[-3:]
    both = jnp.concatenate([video.reshape(-1, *frames), reconstruction.reshape(-1, *frames)])
    total = jnp.float32(0.0)
    for feature, weight in zip(self.features(both), self.linear, strict=True):
      feature = feature * jax.lax.rsqrt(jnp.sum(jnp.square(feature), -1, keepdims=True) + 1e-10)
      real, fake = jnp.split(feature, 2)
      total += jnp.mean(jnp.sum(jnp.square(real - fake) * weight, axis=-1))
    return total
