"""What `videogen compile` reports: per-chip memory, cost and collectives of a
compiled program, and the roofline ESTIMATE built on them.

`analyse_program` reads XLA's memory analysis of one executable and walks its
optimised HLO for a per-operation roofline (`videogen.parallel.hlo_roofline`:
loops per trip, kernels by their matmuls, collectives per trip);
`CompileReport` prints the result the way `videogen compile` does.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from videogen.parallel import hlo_roofline, tpu

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
    flops: matrix-unit FLOPs per chip per step of the compiled program: its
      convolutions/dots and splash kernels, loop bodies once per trip, what
      remat recomputes included.
    bytes_accessed: HBM bytes per chip per step at tiled layout sizes (arrays
      in on-chip VMEM excluded; the copies that fill VMEM from HBM counted).
    xla_flops: XLA's own `cost_analysis()` FLOPs, for reference (it counts a
      loop body once and a Pallas kernel as 0).
    collective_bytes: bytes each chip sends in the step's collectives (ICI).
    dcn_bytes: the part of them that crosses slices.
    model_flops: analytic model FLOPs per chip per step (0 if unknown).
    items: tokens (transformer) or frames (tokenizer) per step, all chips.
    item_name: 'tokens' or 'frames'.
    ops_s: sum over the program's operations of max(compute, HBM) time.
    compute_bound_s, memory_bound_s, kernel_s: parts of `ops_s` in operations
      bound by compute, by HBM, and in Pallas kernels.
    compute_s, memory_s: all FLOPs at peak, all bytes at HBM bandwidth.
    ici_s, dcn_s: collective bytes over ICI and DCN bandwidth.
    top_ops: the costliest sources in the program (op_name, seconds, bound).
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
  xla_flops: float
  collective_bytes: float
  dcn_bytes: float
  model_flops: float
  items: int
  item_name: str
  ops_s: float
  compute_bound_s: float
  memory_bound_s: float
  kernel_s: float
  compute_s: float
  memory_s: float
  ici_s: float
  dcn_s: float
  top_ops: list[tuple[str, float, str]] = dataclasses.field(default_factory=list)
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
    """Roofline estimate: the operations one after another, each at its own
    roofline, with collectives overlapped (XLA:TPU runs them asynchronously)."""
    return max(self.ops_s, self.ici_s, self.dcn_s, 1e-12)

  @property
  def bound(self) -> str:
    if self.ops_s >= max(self.ici_s, self.dcn_s):
      return 'compute' if self.compute_bound_s >= self.memory_bound_s else 'HBM'
    return 'ICI' if self.ici_s >= self.dcn_s else 'DCN'

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
        f'  ESTIMATE (per-operation roofline of the compiled program from published chip '
        f'figures, not measured): step {program.step_seconds * 1e3:.2f} ms (operations '
        f'{program.ops_s * 1e3:.2f} ms: {program.compute_bound_s * 1e3:.2f} compute-bound, '
        f'{program.memory_bound_s * 1e3:.2f} HBM-bound, of which attention kernels '
        f'{program.kernel_s * 1e3:.2f}; ICI {program.ici_s * 1e3:.2f} ms overlapped), '
        f'{program.items_per_second():,.0f} {program.item_name}/s, MFU '
        f'{100 * program.mfu(chip.peak_bf16_flops):.0f}%',
      ]
      if program.top_ops:
        lines.append(
          '  costliest: '
          + '; '.join(
            f'{name} {sec * 1e3:.2f} ms ({bound})' for name, sec, bound in program.top_ops
          )
        )
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
      xla_flops=0.0,
      collective_bytes=0.0,
      dcn_bytes=0.0,
      model_flops=model_flops,
      items=items,
      item_name=item_name,
      ops_s=model_flops / chip.peak_bf16_flops,
      compute_bound_s=model_flops / chip.peak_bf16_flops,
      memory_bound_s=0.0,
      kernel_s=0.0,
      compute_s=model_flops / chip.peak_bf16_flops,
      memory_s=0.0,
      ici_s=0.0,
      dcn_s=0.0,
      compiler_error=compiled.message,
    )
  memory = compiled.memory_analysis()
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  hlo = compiled.as_text()
  roofline = hlo_roofline.analyse(
    hlo, peak_flops=chip.peak_bf16_flops, hbm_bandwidth=chip.hbm_bandwidth, slice_of=slice_of
  )
  sent, across = roofline.collective_bytes, roofline.dcn_bytes
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
    flops=roofline.flops,
    bytes_accessed=roofline.bytes,
    xla_flops=float(cost.get('flops', 0.0)),
    collective_bytes=sent,
    dcn_bytes=across,
    model_flops=model_flops,
    items=items,
    item_name=item_name,
    ops_s=roofline.seconds,
    compute_bound_s=roofline.compute_bound_s,
    memory_bound_s=roofline.memory_bound_s,
    kernel_s=roofline.kernel_s,
    compute_s=roofline.flops / chip.peak_bf16_flops,
    memory_s=roofline.bytes / chip.hbm_bandwidth,
    ici_s=(sent - across) / chip.ici_bandwidth,
    dcn_s=across / dcn_bandwidth,
    top_ops=roofline.top,
    mosaic_kernels=hlo.count('custom_call_target="tpu_custom_call"'),
  )
