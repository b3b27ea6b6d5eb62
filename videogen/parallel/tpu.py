"""TPU chips and slices by their Cloud TPU names, for ahead-of-time compilation.

`slice_devices('v5p-128')` gives the 64 devices of that slice on any machine
with libtpu installed (no TPU needed): the XLA:TPU compiler builds real
executables for them. `CHIPS` holds each generation's published figures,
which turn compiled FLOPs and bytes into roofline estimates.

Sources of the chip figures (per chip, bf16 peak, HBM capacity and
bandwidth, inter-chip interconnect bandwidth):
  v4:  https://cloud.google.com/tpu/docs/v4   (275 TFLOP/s, 32 GiB, 1200 GB/s, ICI 2400 Gbps)
  v5e: https://cloud.google.com/tpu/docs/v5e  (197 TFLOP/s, 16 GiB, 819 GB/s, ICI 1600 Gbps)
  v5p: https://cloud.google.com/tpu/docs/v5p  (459 TFLOP/s, 95 GiB, 2765 GB/s, ICI 4800 Gbps,
                                               DCN 50 Gbps)
  v6e: https://cloud.google.com/tpu/docs/v6e  (918 TFLOP/s, 32 GiB, 1640 GB/s, ICI 3584 Gbps)
Topology names and host bounds follow MaxText's `accelerator_to_spec_map.py`
(AI-Hypercomputer/maxtext), which mirrors what the TPU runtime expects.
"""

from __future__ import annotations

import dataclasses
import math
import re

GIB = 2**30


@dataclasses.dataclass(frozen=True)
class Chip:
  """Published figures of one TPU chip.

  Attributes:
    name: generation, as in accelerator names ('v5p').
    peak_bf16_flops: peak dense bf16 FLOP/s.
    hbm_bytes: HBM capacity in bytes.
    hbm_bandwidth: HBM bytes/s.
    ici_bandwidth: inter-chip interconnect bytes/s (all links of a chip).
    dcn_bandwidth: data-centre network bytes/s per chip across slices, or
      None where the documentation gives none.
    topology_prefix: the generation's name in topology strings ('v5' for v5p).
    chip_config: 'megacore' (one device per chip of two TensorCores) or 'default'.
    cores_per_chip: what the accelerator name counts per chip (v4/v5p: cores).
    dims: torus dimensions (3 for v4/v5p, 2 for v5e/v6e).
  """

  name: str
  peak_bf16_flops: float
  hbm_bytes: int
  hbm_bandwidth: float
  ici_bandwidth: float
  dcn_bandwidth: float | None
  topology_prefix: str
  chip_config: str
  cores_per_chip: int
  dims: int


CHIPS: dict[str, Chip] = {
  'v4': Chip('v4', 275e12, 32 * GIB, 1200e9, 2400e9 / 8, None, 'v4', 'megacore', 2, 3),
  'v5e': Chip('v5e', 197e12, 16 * GIB, 819e9, 1600e9 / 8, None, 'v5e', 'default', 1, 2),
  'v5p': Chip('v5p', 459e12, 95 * GIB, 2765e9, 4800e9 / 8, 50e9 / 8, 'v5', 'megacore', 2, 3),
  'v6e': Chip('v6e', 918e12, 32 * GIB, 1640e9, 3584e9 / 8, None, 'v6e', 'default', 1, 2),
}
_ALIASES = {'v5litepod': 'v5e'}

# Chips -> topology of the usual slice shapes (MaxText's accelerator map).
_SHAPES_3D = {
  4: (2, 2, 1),
  8: (2, 2, 2),
  16: (2, 2, 4),
  32: (2, 4, 4),
  64: (4, 4, 4),
  128: (4, 4, 8),
  256: (4, 8, 8),
  512: (8, 8, 8),
  1024: (8, 8, 16),
  2048: (8, 16, 16),
  4096: (16, 16, 16),
}
_SHAPES_2D = {
  1: (1, 1),
  4: (2, 2),
  8: (2, 4),
  16: (4, 4),
  32: (4, 8),
  64: (8, 8),
  128: (8, 16),
  256: (16, 16),
}


@dataclasses.dataclass(frozen=True)
class TpuSlice:
  """One slice type, e.g. v5p-128.

  Attributes:
    accelerator: the Cloud TPU name ('v5p-128').
    chip: the chip's figures.
    num_chips: chips (= JAX devices) in one slice.
    topology: the topology string libtpu takes ('v5:4x4x4').
    wrap: torus wrap-around per dimension (full 3D cubes and 16-wide 2D sides).
  """

  accelerator: str
  chip: Chip
  num_chips: int
  topology: str
  wrap: tuple[bool, bool, bool]


def parse_accelerator(name: str) -> TpuSlice:
  """`v5p-128`, `v5e-64`/`v5litepod-64`, `v6e-256`, `v4-8`, or a topology such as `v5e:2x2`.

  Raises:
    ValueError: naming the accepted forms and sizes.
  """
  match = re.fullmatch(r'(v4|v5e|v5litepod|v5p|v6e)-(\d+)', name)
  if match:
    chip = CHIPS[_ALIASES.get(match.group(1), match.group(1))]
    count = int(match.group(2))
    if count % chip.cores_per_chip:
      raise ValueError(f'{name}: {chip.name} sizes count {chip.cores_per_chip} cores per chip.')
    num_chips = count // chip.cores_per_chip
    shapes = _SHAPES_3D if chip.dims == 3 else _SHAPES_2D
    if num_chips not in shapes:
      valid = ', '.join(f'{chip.name}-{n * chip.cores_per_chip}' for n in shapes)
      raise ValueError(f'Unknown slice {name!r}; valid {chip.name} slices: {valid}')
    shape = shapes[num_chips]
  else:
    match = re.fullmatch(r'(v4|v5e|v5|v6e):(\d+(?:x\d+){1,2})', name)
    if not match:
      raise ValueError(
        f'Unknown TPU {name!r}; use an accelerator type such as v5p-128, v5e-64 '
        '(or v5litepod-64), v6e-256, v4-128, or a topology such as v5e:2x2 or v5:4x4x4.'
      )
    prefix = match.group(1)
    chip = next(c for c in CHIPS.values() if c.topology_prefix == prefix)
    shape = tuple(int(s) for s in match.group(2).split('x'))
    if len(shape) != chip.dims:
      raise ValueError(f'A {chip.name} topology has {chip.dims} dimensions, got {name!r}.')
    num_chips = math.prod(shape)
  topology = f'{chip.topology_prefix}:{"x".join(str(s) for s in shape)}'
  if chip.dims == 3:
    wrap = (num_chips >= 64,) * 3
  else:
    wrap = (shape[0] >= 16, shape[1] >= 16, False)
  return TpuSlice(name, chip, num_chips, topology, wrap)


def slice_devices(tpu: TpuSlice, num_slices: int = 1) -> list:
  """The compile-only devices of `num_slices` slices of `tpu` (needs libtpu, no TPU).

  Returns:
    `num_slices * tpu.num_chips` devices with their physical coordinates and
    `slice_index`, usable in a `Mesh` for ahead-of-time compilation.

  Raises:
    RuntimeError: libtpu is not installed (`pip install 'videogen[tpu]'`).
  """
  import importlib.util  # noqa: PLC0415

  if importlib.util.find_spec('libtpu') is None:
    raise RuntimeError(
      "Compiling for TPU needs libtpu: pip install -e '.[tpu]' (jax[tpu] of the installed JAX)."
    )
  import os  # noqa: PLC0415

  from jax.experimental import topologies  # noqa: PLC0415

  from videogen.parallel import platform  # noqa: PLC0415

  if not platform.tpu_visible():
    # Without chips, libtpu's one-process lock only serialises compilations
    # (two `videogen compile` runs, parallel tests); it guards nothing here.
    os.environ.setdefault('ALLOW_MULTIPLE_LIBTPU_LOAD', '1')

  host_bounds = (1, 1, 1) if tpu.num_chips == 1 else (2, 2, 1)
  description = topologies.get_topology_desc(
    platform='tpu',
    topology_name=tpu.topology,
    chip_config_name=tpu.chip.chip_config,
    chips_per_host_bounds=host_bounds,
    num_slices=num_slices,
    wrap=tpu.wrap,
  )
  return list(description.devices)
