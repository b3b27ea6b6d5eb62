"""The device mesh from `config.mesh`."""

from __future__ import annotations

import math
from typing import Sequence

import jax
import ml_collections
import numpy as np
from jax.experimental import mesh_utils
from jax.sharding import AxisType, Mesh

AXES = ('data', 'fsdp', 'tensor')


def resolve_axis_sizes(sizes: Sequence[int], total: int, what: str) -> tuple[int, ...]:
  """Replaces the one `-1` in `sizes` so that their product is `total`.

  Raises:
    ValueError: naming the mesh and the device count when they do not match.
  """
  sizes = list(sizes)
  described = dict(zip(AXES, sizes, strict=True))
  if sizes.count(-1) > 1:
    raise ValueError(f'At most one {what} mesh axis may be -1, got {described}')
  if -1 in sizes:
    known = math.prod(s for s in sizes if s != -1)
    if known <= 0 or total % known:
      raise ValueError(
        f'The {what} mesh {described} does not fit {total} devices: '
        f'{total} is not divisible by {known}.'
      )
    sizes[sizes.index(-1)] = total // known
  if math.prod(sizes) != total:
    raise ValueError(
      f'The {what} mesh {described} has {math.prod(sizes)} devices but '
      f'{total} devices are available; set the sizes to multiply to {total} '
      '(or make one of them -1).'
    )
  return tuple(sizes)


def create_mesh(
  config: ml_collections.ConfigDict, devices: Sequence[jax.Device] | None = None
) -> Mesh:
  """Builds the (data, fsdp, tensor) mesh over all devices (all hosts).

  Args:
    config: `config.mesh`, with `data`, `fsdp`, `tensor` (-1 = the rest) and
      `dcn_data`, `dcn_fsdp`, `dcn_tensor` for multi-slice.
    devices: the devices to use; default `jax.devices()`.

  Returns:
    A mesh with Auto axis types, named `data`, `fsdp`, `tensor`.
  """
  devices = list(devices if devices is not None else jax.devices())
  dcn = (config.dcn_data, config.dcn_fsdp, config.dcn_tensor)
  num_slices = math.prod(dcn)
  if len(devices) % num_slices:
    raise ValueError(f'{len(devices)} devices cannot form {num_slices} slices (dcn mesh {dcn}).')
  ici = resolve_axis_sizes(
    (config.data, config.fsdp, config.tensor), len(devices) // num_slices, 'per-slice'
  )
  if num_slices > 1:
    device_array = mesh_utils.create_hybrid_device_mesh(ici, dcn, devices)
  else:
    try:
      device_array = mesh_utils.create_device_mesh(ici, devices)
    except (AssertionError, NotImplementedError, ValueError):
      # Virtual CPU devices and odd topologies have no physical layout to follow.
      device_array = np.asarray(devices).reshape(ici)
  return Mesh(device_array, AXES, axis_types=(AxisType.Auto,) * len(AXES))


def describe(mesh: Mesh) -> str:
  return ', '.join(f'{name}={size}' for name, size in mesh.shape.items())
