"""A per-operation roofline of an optimised HLO module (XLA:TPU's `compiled.as_text()`).

XLA's `cost_analysis()` gives one total per program: it counts a `while`
loop's body once (a scanned stack of N layers reads as one layer), a Pallas
kernel as 0 FLOPs, and its totals can only be bounded as if every operation
overlapped every other. This module walks the program instead, the way it
runs: every top-level operation of the entry computation, loop bodies times
their trip count (read off the loop condition), and for each operation

* FLOPs of its matrix units: the convolutions and dots it holds (XLA:TPU
  writes every `dot_general` as a convolution), counting only the kernel
  positions that meet data, as XLA's own cost analysis does; splash
  attention kernels by their matmuls at the causal mask's block density;
* HBM bytes: its operands and results at their tiled (padded) layout sizes,
  a sliced operand (a scanned layer's weights) at the slice it reads and an
  in-place update at the update's size. Arrays the compiler placed in another
  memory space (`S(1)`: on-chip VMEM; SMEM, semaphores) move no HBM bytes:
  the asynchronous copies and slices that fill VMEM from HBM (`copy-start`,
  `slice-start`) count the HBM side once, and their readers read VMEM;

and estimates its time as max(FLOPs / peak, bytes / HBM bandwidth). The
program's time is the sum: operations run one after another on a TPU core,
each bound by its own roofline. Collectives (sent bytes by ring algorithm)
are summed apart, per trip as well, for the ICI/DCN terms. Vector-unit work
(elementwise math) is not counted as compute: on TPU it is almost always
bounded by the bytes it moves. Everything here is an ESTIMATE.
"""

from __future__ import annotations

import collections
import dataclasses
import math
import re

import numpy as np

_DTYPE_BYTES = {
  'pred': 1, 's4': 0.5, 'u4': 0.5, 's8': 1, 'u8': 1, 'f8e4m3fn': 1, 'f8e5m2': 1, 's16': 2,
  'u16': 2, 'f16': 2, 'bf16': 2, 's32': 4, 'u32': 4, 'f32': 4, 's64': 8, 'u64': 8, 'f64': 8,
  'c64': 8, 'c128': 16,
}  # fmt: skip
_ARRAY = re.compile(r'\b(' + '|'.join(_DTYPE_BYTES) + r')\[([\d,]*)\](\{[^}]*\})?')
_MEMORY_SPACE = re.compile(r'S\((\d+)\)')
_HEADER = re.compile(r'^(ENTRY\s+)?%([\w.\-]+)\s.*\{\s*$')
_INSTRUCTION = re.compile(r'^\s*(ROOT\s+)?%([\w.\-]+)\s*=\s*')
_OPERAND = re.compile(r'%([\w.\-]+)')
_NO_TRAFFIC = {
  'parameter', 'constant', 'get-tuple-element', 'tuple', 'bitcast', 'after-all',
  'partition-id', 'replica-id', 'opt-barrier', 'add-dependency', 'copy-done',
  'all-gather-done', 'all-reduce-done', 'collective-permute-done', 'send-done', 'recv-done',
}  # fmt: skip
COLLECTIVES = ('all-gather', 'all-reduce', 'reduce-scatter', 'all-to-all', 'collective-permute')
# Matmuls of the splash attention kernels (forward: QK^T, PV; dq: QK^T, dO V^T,
# dS K; dkv: QK^T, P^T dO, dO V^T, dS^T Q), each 2*Sq*Skv*D FLOPs per head.
_SPLASH_MATMULS = (('dkv', 4), ('dq', 3), ('fwd', 2))
_SPLASH_BLOCK = 512  # The largest block `transformer.attention` gives the kernel.


@dataclasses.dataclass
class Instruction:
  name: str
  opcode: str
  shape: str  # The result type, with layouts.
  operands: list[str]
  arguments: str  # The text between the opcode's parentheses.
  attributes: str  # Everything after the operand list.
  is_root: bool

  def attribute(self, key: str) -> str | None:
    match = re.search(rf'\b{key}=(\{{[^}}]*\}}|"[^"]*"|%?[\w.\->]+)', self.attributes)
    return match.group(1).strip('"') if match else None

  @property
  def op_name(self) -> str:
    match = re.search(r'op_name="([^"]*)"', self.attributes)
    return match.group(1) if match else self.name


@dataclasses.dataclass
class Computation:
  name: str
  instructions: dict[str, Instruction]
  root: str

  def users(self, name: str) -> list[Instruction]:
    return [i for i in self.instructions.values() if name in i.operands]


def _split_type(text: str) -> tuple[str, str]:
  """('(f32[2], s32[])', rest) or ('f32[2]{0}', rest): the leading HLO type and what follows."""
  if text.startswith('('):
    depth = 0
    for i, char in enumerate(text):
      depth += char == '('
      depth -= char == ')'
      if depth == 0:
        return text[: i + 1], text[i + 1 :].lstrip()
  head, _, rest = text.partition(' ')
  return head, rest


def _parse_instruction(line: str) -> Instruction | None:
  match = _INSTRUCTION.match(line)
  if not match:
    return None
  shape, rest = _split_type(line[match.end() :])
  opcode_match = re.match(r'([\w\-]+)\(', rest)
  if not opcode_match:
    return None
  depth, start = 0, opcode_match.end() - 1
  end = len(rest)
  for i in range(start, len(rest)):
    depth += rest[i] == '('
    depth -= rest[i] == ')'
    if depth == 0:
      end = i
      break
  operands = _OPERAND.findall(rest[start:end])
  return Instruction(
    name=match.group(2),
    opcode=opcode_match.group(1),
    shape=shape,
    operands=operands,
    arguments=rest[start + 1 : end],
    attributes=rest[end + 1 :],
    is_root=bool(match.group(1)),
  )


def _logical_lines(hlo_text: str):
  """Lines of the module with an instruction's continuation lines (a kernel's
  multi-line backend config) joined to it."""
  pending = ''
  for line in hlo_text.splitlines():
    starts = line.rstrip() == '}' or _HEADER.match(line) or _INSTRUCTION.match(line)
    if starts or not pending:
      if pending:
        yield pending
      pending = line
    else:
      pending += ' ' + line.strip()
  if pending:
    yield pending


def parse_module(hlo_text: str) -> tuple[dict[str, Computation], str]:
  """The computations of an HLO module by name, and the entry's name.

  Lines outside any computation (a fragment) form the entry computation.
  """
  computations: dict[str, Computation] = {}
  entry = ''
  current: Computation | None = None
  loose = Computation('<fragment>', {}, '')
  for line in _logical_lines(hlo_text):
    header = _HEADER.match(line)
    if header and '=' not in line.split('(')[0]:
      current = Computation(header.group(2), {}, '')
      computations[current.name] = current
      if header.group(1):
        entry = current.name
      continue
    if line.rstrip() == '}':
      current = None
      continue
    instruction = _parse_instruction(line)
    if instruction is None:
      continue
    target = current if current is not None else loose
    target.instructions[instruction.name] = instruction
    if instruction.is_root:
      target.root = instruction.name
  if not entry:
    computations[loose.name] = loose
    entry = loose.name
  return computations, entry


def array_bytes(shape: str, hbm_only: bool = False) -> float:
  """Bytes of every array in an HLO type, at its tiled layout when one is given.

  A TPU layout `{1,0:T(8,128)}` stores the two most-minor dimensions in
  8x128 tiles, so f32[8,24]{1,0:T(8,128)} occupies 8x128 words, not 8x24.
  With `hbm_only`, arrays whose layout names a memory space other than 0
  (`{1,0:T(8,128)S(1)}`: VMEM) count 0.
  """
  total = 0.0
  for dtype, dims_text, layout in _ARRAY.findall(shape):
    if hbm_only and not in_hbm(layout):
      continue
    dims = [int(d) for d in dims_text.split(',') if d]
    if layout and dims:
      order_text, _, tiling = layout.strip('{}').partition(':')
      order = [int(d) for d in order_text.split(',') if d.strip().isdigit()]
      tile = re.match(r'T\(([\d,]+)\)', tiling)
      if tile and len(order) == len(dims):
        tile_dims = [int(t) for t in tile.group(1).split(',')]
        minor = order[: len(tile_dims)][::-1]  # Tile dims run major -> minor.
        for dim, size in zip(minor, tile_dims[-len(minor) :], strict=True):
          dims[dim] = -(-dims[dim] // size) * size
    total += _DTYPE_BYTES[dtype] * math.prod(dims)
  return total


def in_hbm(layout: str) -> bool:
  """Whether an array with this layout (`{1,0:T(8,128)S(1)}`) lives in HBM:
  memory space 0, the default; XLA:TPU writes S(1) for VMEM, S(2) for SMEM."""
  space = _MEMORY_SPACE.search(layout or '')
  return space is None or space.group(1) == '0'


def _arrays(shape: str) -> list[str]:
  """The array types of an HLO type, flattened in order ('(f32[2]{0}, s32[])' -> two)."""
  return [match.group(0) for match in _ARRAY.finditer(shape)]


def _dims(shape: str) -> list[int]:
  match = _ARRAY.search(shape)
  return [int(d) for d in match.group(2).split(',') if d] if match else []


def _window(text: str | None) -> dict[str, list[list[int]]]:
  fields: dict[str, list[list[int]]] = {}
  for key, value in re.findall(r'(\w+)=([\d_x\-]+)', (text or '').strip('{}')):
    fields[key] = [[int(v) for v in part.split('_')] for part in value.split('x')]
  return fields


def _valid_pairs(out: int, kernel: int, size: int, stride: int, lo: int, lhs_dil: int,
                 rhs_dil: int) -> int:  # fmt: skip
  """(output, kernel) position pairs of one spatial dimension that read real input."""
  positions = np.arange(out)[:, None] * stride + np.arange(kernel)[None, :] * rhs_dil - lo
  valid = (positions >= 0) & (positions % lhs_dil == 0) & (positions // lhs_dil < size)
  return int(valid.sum())


def convolution_flops(instruction: Instruction, shapes: dict[str, str]) -> float:
  """2 x multiply-adds of a convolution, counting kernel taps that meet input only."""
  labels = instruction.attribute('dim_labels')
  if not labels or len(instruction.operands) < 2:
    return 0.0
  lhs_labels, rest = labels.split('_', 1)
  rhs_labels, out_labels = rest.split('->')
  lhs = _dims(shapes[instruction.operands[0]])
  rhs = _dims(shapes[instruction.operands[1]])
  out = _dims(instruction.shape)
  window = _window(instruction.attribute('window'))
  flops = 2.0 * out[out_labels.index('b')] * out[out_labels.index('f')] * rhs[rhs_labels.index('i')]
  spatial = sorted(c for c in out_labels if c.isdigit())
  for n, label in enumerate(spatial):

    def field(key, default, n=n):
      return window[key][n] if key in window else default

    flops *= _valid_pairs(
      out[out_labels.index(label)],
      rhs[rhs_labels.index(label)],
      lhs[lhs_labels.index(label)],
      field('stride', [1])[0],
      field('pad', [0, 0])[0],
      field('lhs_dilate', [1])[0],
      field('rhs_dilate', [1])[0],
    )
  return flops


def dot_flops(instruction: Instruction, shapes: dict[str, str]) -> float:
  lhs = _dims(shapes[instruction.operands[0]])
  contracting = instruction.attribute('lhs_contracting_dims') or '{}'
  size = math.prod(lhs[int(d)] for d in contracting.strip('{}').split(',') if d)
  return 2.0 * math.prod(_dims(instruction.shape)) * size


def splash_flops(instruction: Instruction, shapes: dict[str, str]) -> float:
  """FLOPs of a splash attention kernel from its q and k operands.

  Self-attention (q and k of one length) is causal in videogen: the kernel
  computes the blocks on or below the diagonal; cross-attention is full.
  """
  arrays = [_dims(shapes[o]) for o in instruction.operands if o in shapes]
  q, k = [d for d in arrays if len(d) == 4][:2] or [[0] * 4, [0] * 4]
  batch, heads, q_length, head_dim = q
  kv_length = k[2]
  density = 1.0
  if q_length == kv_length:
    block = re.search(r'block_q\\?"\s*:\s*(\d+)', instruction.attributes)
    block_q = int(block.group(1)) if block else min(q_length, _SPLASH_BLOCK)
    blocks = max(1, -(-q_length // block_q))
    density = (blocks + 1) / (2 * blocks)
  matmuls = next((n for key, n in _SPLASH_MATMULS if f'_{key}' in instruction.name), 2)
  return matmuls * 2.0 * batch * heads * q_length * kv_length * head_dim * density


_IOTA_GROUPS = re.compile(r'replica_groups=\[([\d,]+)\]<=\[([\d,]+)\](?:T\(([\d,]+)\))?')
_LIST_GROUPS = re.compile(r'replica_groups=\{(\{[\d,]*\}(?:,\{[\d,]*\})*)\}')


def replica_groups(attributes: str) -> list[list[int]] | None:
  """The device groups of a collective, from either of HLO's spellings."""
  match = _IOTA_GROUPS.search(attributes)
  if match:
    groups = [int(d) for d in match.group(1).split(',')]
    dims = [int(d) for d in match.group(2).split(',')]
    ids = np.arange(math.prod(dims)).reshape(dims)
    if match.group(3):
      ids = ids.transpose([int(d) for d in match.group(3).split(',')])
    return ids.reshape(groups).tolist()
  match = _LIST_GROUPS.search(attributes)
  if match:
    return [
      [int(i) for i in g.split(',') if i] for g in re.findall(r'\{([\d,]*)\}', match.group(1))
    ]
  return None


def collective_sent(instruction: Instruction) -> tuple[float, list[int] | None]:
  """Bytes one chip sends in a collective (ring algorithms), and its first replica group."""
  size = sum(
    _DTYPE_BYTES[dtype] * math.prod(int(d) for d in dims.split(',') if d)
    for dtype, dims, _ in _ARRAY.findall(instruction.shape)
  )
  groups = replica_groups(instruction.attributes)
  n = len(groups[0]) if groups and groups[0] else 0
  op = instruction.opcode.removesuffix('-start')
  if op == 'all-gather':
    sent = size * (n - 1) / n if n else size
  elif op == 'reduce-scatter':
    sent = size * (n - 1) if n else size
  elif op == 'all-reduce':
    sent = 2 * size * (n - 1) / n if n else size
  else:
    sent = size
  if n == 1 and op != 'collective-permute':
    sent = 0.0
  return sent, groups[0] if groups else None


@dataclasses.dataclass
class OpCost:
  """One operation's estimate, times how often it runs per step."""

  name: str  # The source op (JAX's `op_name` metadata).
  kind: str  # 'matmul', 'attention kernel', 'other'.
  flops: float
  bytes: float
  count: int


@dataclasses.dataclass
class Roofline:
  """The program's per-operation roofline estimate on one chip.

  Attributes:
    seconds: sum over operations of max(compute, HBM) time.
    flops, bytes: matrix-unit FLOPs and HBM bytes per step, loops per trip.
    compute_bound_s, memory_bound_s: the parts of `seconds` spent in
      operations bound by compute and by HBM.
    kernel_s: the part spent in Pallas (Mosaic) kernels.
    collective_bytes, dcn_bytes: sent by this chip in collectives, per trip.
    top: the costliest sources (op_name, seconds, bound), most first.
  """

  seconds: float
  flops: float
  bytes: float
  compute_bound_s: float
  memory_bound_s: float
  kernel_s: float
  collective_bytes: float
  dcn_bytes: float
  top: list[tuple[str, float, str]]


class _Walker:
  def __init__(self, computations: dict[str, Computation]):
    self.computations = computations
    self.ops: list[OpCost] = []
    self.collectives: list[tuple[float, list[int] | None, int]] = []

  def shapes(self, computation: Computation) -> dict[str, str]:
    return {name: i.shape for name, i in computation.instructions.items()}

  def trip_count(self, condition: str | None) -> int:
    """A scan's trip count: the largest scalar integer constant its condition compares with."""
    computation = self.computations.get((condition or '').lstrip('%'))
    if computation is None:
      return 1
    bounds = [
      int(i.arguments)
      for i in computation.instructions.values()
      if i.opcode == 'constant' and re.fullmatch(r'-?\d+', i.arguments.strip())
    ]
    return max([b for b in bounds if b > 0] or [1])

  def fused_flops(self, name: str) -> float:
    computation = self.computations.get(name.lstrip('%'))
    if computation is None:
      return 0.0
    shapes = self.shapes(computation)
    flops = 0.0
    for instruction in computation.instructions.values():
      if instruction.opcode == 'convolution':
        flops += convolution_flops(instruction, shapes)
      elif instruction.opcode == 'dot':
        flops += dot_flops(instruction, shapes)
      elif instruction.opcode == 'fusion':
        flops += self.fused_flops(instruction.attribute('calls') or '')
    return flops

  def fusion_bytes(self, instruction: Instruction, shapes: dict[str, str]) -> float:
    """Operand and result bytes of a fusion, reading slices and updates in place."""
    fused = self.computations.get((instruction.attribute('calls') or '').lstrip('%'))
    operand_bytes = [array_bytes(shapes.get(o, ''), hbm_only=True) for o in instruction.operands]
    if fused is None:
      return sum(operand_bytes) + array_bytes(instruction.shape, hbm_only=True)
    relabel = ('bitcast', 'parameter', 'tuple', 'get-tuple-element')
    if all(i.opcode in relabel for i in fused.instructions.values()):
      return 0.0  # A relabelling: no data moves.
    params = [i for i in fused.instructions.values() if i.opcode == 'parameter']
    total = 0.0
    updated = set()
    root = fused.instructions.get(fused.root)
    roots = [root] if root is not None else []
    if root is not None and root.opcode == 'tuple':
      roots = [fused.instructions[o] for o in root.operands if o in fused.instructions]
    # The fusion's own type says where each result lives; its body's may not.
    placed = _arrays(instruction.shape)
    result = 0.0
    for position, out in enumerate(roots):
      in_place = out.opcode == 'dynamic-update-slice' and len(out.operands) > 1
      if in_place:
        updated.add(out.operands[0])
      if len(placed) == len(roots) and not in_hbm(placed[position]):
        continue
      if in_place:
        result += array_bytes(fused.instructions[out.operands[1]].shape)
      else:
        result += array_bytes(out.shape)
    for param in params:
      index = _parameter_index(param)
      if index is None or index >= len(operand_bytes):
        continue
      if param.name in updated:
        continue
      total += min(operand_bytes[index], self.read_bytes(fused, param.name, operand_bytes[index]))
    return total + result

  def read_bytes(self, computation: Computation, name: str, full: float) -> float:
    """Bytes a fused computation reads of its value `name`: the slices it takes
    when every use is a slice (also inside nested fusions), else all of it."""
    users = computation.users(name)
    if not users:
      return full
    read = 0.0
    for user in users:
      if user.opcode in ('dynamic-slice', 'slice', 'gather') and user.operands[0] == name:
        read += array_bytes(user.shape)
      elif user.opcode == 'fusion':
        nested = self.computations.get((user.attribute('calls') or '').lstrip('%'))
        if nested is None:
          return full
        for position, operand in enumerate(user.operands):
          if operand != name:
            continue
          inner = [i for i in nested.instructions.values() if _parameter_index(i) == position]
          if not inner:
            return full
          read += self.read_bytes(nested, inner[0].name, full)
      else:
        return full
    return read

  def walk(self, name: str, count: int) -> None:
    computation = self.computations[name]
    shapes = self.shapes(computation)
    for instruction in computation.instructions.values():
      opcode = instruction.opcode
      if opcode in _NO_TRAFFIC or opcode.endswith('-done'):
        continue
      if opcode == 'while':
        trips = self.trip_count(instruction.attribute('condition'))
        body = (instruction.attribute('body') or '').lstrip('%')
        if body in self.computations:
          self.walk(body, count * trips)
        continue
      if opcode in ('call', 'async-start'):
        called = instruction.attribute('to_apply') or instruction.attribute('calls') or ''
        if called.lstrip('%') in self.computations:
          self.walk(called.lstrip('%'), count)
        continue
      if opcode == 'conditional':
        branches = _OPERAND.findall(instruction.attribute('branch_computations') or '')
        for branch in branches[:1]:  # One branch runs; the first stands for them.
          if branch in self.computations:
            self.walk(branch, count)
        continue
      if opcode.removesuffix('-start') in COLLECTIVES:
        sent, group = collective_sent(instruction)
        self.collectives.append((sent, group, count))
        continue
      kind, flops = 'other', 0.0
      if opcode == 'fusion':
        flops = self.fused_flops(instruction.attribute('calls') or '')
        moved = self.fusion_bytes(instruction, shapes)
      else:
        moved = _unfused_bytes(instruction, shapes)
        if opcode == 'convolution':
          flops = convolution_flops(instruction, shapes)
        elif opcode == 'dot':
          flops = dot_flops(instruction, shapes)
        elif opcode == 'custom-call' and instruction.attribute('custom_call_target') == (
          'tpu_custom_call'
        ):
          kind = 'attention kernel'
          flops = splash_flops(instruction, shapes) if 'splash' in instruction.name else 0.0
      if flops and kind == 'other':
        kind = 'matmul'
      self.ops.append(OpCost(instruction.op_name, kind, flops, moved, count))


def _unfused_bytes(instruction: Instruction, shapes: dict[str, str]) -> float:
  """HBM bytes of an operation outside a fusion: what it reads and writes in HBM."""
  opcode = instruction.opcode
  if opcode == 'custom-call' and instruction.attribute('custom_call_target') == 'ConcatBitcast':
    return 0.0  # Joins the slices of one prefetch in VMEM: a relabelling.
  results = _arrays(instruction.shape)
  if opcode == 'copy-start':  # (destination, source, context): the source is the operand.
    results = results[:1]
  elif opcode == 'slice-start':  # ((operand), slice, context)
    results = results[1:2]
  written = sum(array_bytes(result, hbm_only=True) for result in results)
  if opcode in ('slice-start', 'slice', 'dynamic-slice') and instruction.operands:
    # Only the slice is read, and only from HBM if the operand lives there.
    source = _arrays(shapes.get(instruction.operands[0], ''))
    read = sum(array_bytes(r) for r in results) if source and in_hbm(source[0]) else 0.0
    return read + written
  return written + sum(array_bytes(shapes.get(o, ''), hbm_only=True) for o in instruction.operands)


def _parameter_index(instruction: Instruction) -> int | None:
  text = instruction.arguments.strip()
  return int(text) if instruction.opcode == 'parameter' and text.isdigit() else None


def analyse(
  hlo_text: str,
  *,
  peak_flops: float,
  hbm_bandwidth: float,
  slice_of: list[int] | None = None,
  top: int = 5,
) -> Roofline:
  """The per-operation roofline ESTIMATE of an optimised HLO module on one chip.

  Args:
    hlo_text: `compiled.as_text()` (an SPMD-partitioned module: one chip's program).
    peak_flops: the chip's peak matrix FLOP/s.
    hbm_bandwidth: the chip's HBM bytes/s.
    slice_of: slice index of each logical device id, for the DCN share of collectives.
    top: how many of the costliest sources to name.
  """
  computations, entry = parse_module(hlo_text)
  walker = _Walker(computations)
  walker.walk(entry, 1)
  seconds = compute_bound = memory_bound = kernel = flops = moved = 0.0
  by_source: dict[str, list[float]] = collections.defaultdict(lambda: [0.0, 0.0])
  for op in walker.ops:
    compute_s = op.count * op.flops / peak_flops
    memory_s = op.count * op.bytes / hbm_bandwidth
    time_s = max(compute_s, memory_s)
    seconds += time_s
    flops += op.count * op.flops
    moved += op.count * op.bytes
    if compute_s >= memory_s:
      compute_bound += time_s
    else:
      memory_bound += time_s
    if op.kind == 'attention kernel':
      kernel += time_s
    source = by_source[_source(op.name)]
    source[0] += compute_s
    source[1] += memory_s
  sent = across = 0.0
  for size, group, count in walker.collectives:
    sent += size * count
    if slice_of and group and len({slice_of[i] for i in group if i < len(slice_of)}) > 1:
      across += size * count
  ranked = sorted(by_source.items(), key=lambda item: -max(item[1]))[:top]
  return Roofline(
    seconds=seconds,
    flops=flops,
    bytes=moved,
    compute_bound_s=compute_bound,
    memory_bound_s=memory_bound,
    kernel_s=kernel,
    collective_bytes=sent,
    dcn_bytes=across,
    top=[(name, max(c, m), 'compute' if c >= m else 'HBM') for name, (c, m) in ranked],
  )


_WRAPPER = re.compile(r'^(?:jit|jvp|transpose|vmap|remat|checkpoint|shard_map)\((.*)\)$')


def _source(op_name: str) -> str:
  """A readable source for an op: its primitive, the einsum it came from, and
  'backward' for the gradient pass (JAX's `transpose(jvp(...))`)."""
  parts = []
  for part in op_name.split('/'):
    inner = _WRAPPER.match(part)
    if inner:
      part = inner.group(1)
      if not ('->' in part or ',' in part):
        continue
    if part and part not in ('while', 'body', 'closed_call', 'cond'):
      parts.append(part)
  text = '/'.join(parts[-2:]) if parts else op_name
  return ('backward ' if 'transpose(' in op_name else '') + text
