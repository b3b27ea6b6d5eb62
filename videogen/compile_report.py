"""What `videogen compile` reports: per-chip memory, cost and collectives of a
compiled program, and the roofline ESTIMATE built on them.

`analyse_program` reads XLA's memory and cost analyses of one executable and
the collectives of its optimised HLO (`collective_bytes`); `CompileReport`
prints the result the way `videogen compile` does.
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Any

import numpy as np

from videogen.parallel import tpu

GIB = 2**30


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


_OUT_OF_HBM = re.compile(r'required for (?P<what>[\w ]+?) \((?P<need>[\d.]+)(?P<unit>[KMGT])\)')
_UNITS = {'K': 2**10, 'M': 2**20, 'G': 2**30, 'T': 2**40}


class OutOfHbm:
  """XLA:TPU refused to compile: what it needed does not fit in HBM."""

  def __init__(self, message: str):
    self.message = message
    match = _OUT_OF_HBM.search(message)
    self.what = match.group('what') if match else 'the program'
    self.need = int(float(match.group('need')) * _UNITS[match.group('unit')]) if match else 0


def analyse_program(
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
  """The per-chip report of one compiled program (or of the compiler's refusal).

  Args:
    name: 'train step', 'decode step'.
    compiled: the `jax.stages.Compiled` executable, or `OutOfHbm`.
    seconds: wall time of lowering and compiling it.
    chip: the chip's published figures.
    slice_of: slice index of each logical device id.
    model_flops: analytic model FLOPs per chip per step (0 if unknown).
    items: tokens or frames per step, all chips.
    item_name: 'tokens' or 'frames'.
    argument_bytes: per-chip argument bytes (used when the compiler refused).
    recompute: train-step work over model FLOPs from rematerialisation.
  """
  if isinstance(compiled, OutOfHbm):
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
