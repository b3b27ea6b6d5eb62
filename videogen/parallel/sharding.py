"""Logical axis names on parameters and activations, mapped onto the mesh.

Modules name the axes of what they create (`('embed', 'mlp')`) and of their
activations (`('batch', 'length', 'embed')`); the config's
`logical_axis_rules` alone decide which mesh axes those names go to. Flax's
eager variable sharding is off: parameters carry their logical names as
metadata, and the train loop turns them into `NamedSharding`s for
`jax.jit(out_shardings=...)` (shape first, nothing built whole on one device).
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import math
from typing import Any, Iterator, Mapping, Sequence

import flax
import jax
import numpy as np
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec

# Logical axis name -> mesh axes. Modules name their axes; only this table
# says where they go. Order matters for a name listed twice: first match wins.
DEFAULT_LOGICAL_AXIS_RULES = (
  ('batch', ('data', 'fsdp')),
  ('embed', 'fsdp'),
  ('mlp', 'tensor'),
  ('heads', 'tensor'),
  ('kv_heads', 'tensor'),
  ('head_dim', None),
  ('vocab', 'tensor'),
  ('length', None),
  ('kv_length', None),
  ('text_length', None),
  ('layers', None),
  ('conv_in', None),
  ('conv_out', 'fsdp'),
  ('conv_kernel', None),
  ('codebook', None),
  ('time', None),
  ('height', None),
  ('width', None),
  ('channels', None),
)


# Parameters keep logical names as metadata; shardings come from the rules. The
# global default, for every thread (nnx.use_eager_sharding sets only the calling
# thread's, and `videogen serve` generates in the web server's worker threads).
flax.config.update('flax_always_shard_variable', False)

LogicalAxes = Sequence[str | None]
Rules = tuple[tuple[str, str | tuple[str, ...] | None], ...]


@dataclasses.dataclass(frozen=True)
class _Context:
  mesh: Mesh
  rules: Rules


_CONTEXT: contextvars.ContextVar[_Context | None] = contextvars.ContextVar(
  'videogen_sharding_context', default=None
)


def normalize_rules(rules: Sequence[Sequence[Any]]) -> Rules:
  """Turns config rules (lists) into a hashable tuple of (name, mesh axes)."""
  normalized = []
  for rule in rules:
    if len(rule) != 2:
      raise ValueError(f'A logical axis rule is [name, mesh_axes], got {rule!r}')
    name, axes = rule
    if isinstance(axes, (list, tuple)):
      axes = tuple(axes)
    normalized.append((name, axes))
  return tuple(normalized)


@contextlib.contextmanager
def axis_rules(mesh: Mesh, rules: Sequence[Sequence[Any]]) -> Iterator[None]:
  """Within this context, `constrain` shards activations on `mesh` by `rules`."""
  token = _CONTEXT.set(_Context(mesh, normalize_rules(rules)))
  try:
    yield
  finally:
    _CONTEXT.reset(token)


@contextlib.contextmanager
def local_computation() -> Iterator[None]:
  """Within this context `constrain` is a no-op: for models on one host's device.

  Frozen models loaded onto a single device (e.g. the tokenizer that fills the
  token cache) must not pick up constraints for the training mesh.
  """
  token = _CONTEXT.set(None)
  try:
    yield
  finally:
    _CONTEXT.reset(token)


def current_mesh() -> Mesh | None:
  context = _CONTEXT.get()
  return context.mesh if context else None


def logical_to_spec(
  logical_axes: LogicalAxes,
  rules: Rules,
  mesh: Mesh,
  shape: Sequence[int] | None = None,
) -> PartitionSpec:
  """Maps logical axis names to a PartitionSpec.

  A mesh axis is used at most once (first dimension wins, as in flax's
  logical partitioning). When `shape` is given, mesh axes whose size does not
  divide the dimension are dropped, so odd-sized tensors (3 RGB channels, a
  small codebook) are replicated rather than failing to shard.
  """
  table = dict()
  for name, axes in rules:
    table.setdefault(name, axes)
  used: set[str] = set()
  spec = []
  for dim, name in enumerate(logical_axes):
    axes = table.get(name) if name is not None else None
    if axes is None:
      spec.append(None)
      continue
    axes = (axes,) if isinstance(axes, str) else tuple(axes)
    kept = []
    size = shape[dim] if shape is not None else None
    for axis in axes:
      if axis in used or axis not in mesh.shape:
        continue
      axis_size = mesh.shape[axis]
      if axis_size == 1:
        continue
      divisor = math.prod(mesh.shape[a] for a in kept) * axis_size
      if size is not None and size % divisor:
        continue
      kept.append(axis)
    used.update(kept)
    spec.append(tuple(kept) if len(kept) > 1 else (kept[0] if kept else None))
  return PartitionSpec(*spec)


def current_spec(logical_axes: LogicalAxes, shape: Sequence[int]) -> PartitionSpec | None:
  """The PartitionSpec `constrain` gives an array of `shape` here; None outside
  `axis_rules` or on one device (for `shard_map` around kernels XLA cannot split)."""
  context = _CONTEXT.get()
  if context is None or context.mesh.size == 1:
    return None
  return logical_to_spec(logical_axes, context.rules, context.mesh, shape)


def constrain(x: jax.Array, logical_axes: LogicalAxes) -> jax.Array:
  """Annotates an activation with logical axes; a no-op outside `axis_rules`."""
  context = _CONTEXT.get()
  if context is None or context.mesh.size == 1:
    return x  # On one device a constraint only costs (4.5x slower VQ step on CPU).
  spec = logical_to_spec(logical_axes, context.rules, context.mesh, x.shape)
  return jax.lax.with_sharding_constraint(x, NamedSharding(context.mesh, spec))


def with_logical(initializer, logical_axes: LogicalAxes):
  """Wraps a flax initializer so the parameter it makes carries logical axes."""
  return nnx.with_partitioning(initializer, tuple(logical_axes))


def param_logical_axes(variable: nnx.Variable) -> tuple[str | None, ...] | None:
  """The logical axis names a Variable was created with, if any."""
  metadata = variable.get_metadata()
  axes = metadata.get('out_sharding') or metadata.get('sharding')
  return tuple(axes) if axes else None


def _is_variable(x: Any) -> bool:
  return isinstance(x, nnx.Variable)


def tree_shardings(tree: Any, mesh: Mesh, rules: Sequence[Sequence[Any]]) -> Any:
  """NamedShardings for every array of `tree` (same structure as `tree`).

  Arrays inside an `nnx.Variable` with logical axis metadata are sharded by
  the rules; every other array (step counters, optimizer scalars) is
  replicated. Works on abstract trees from `jax.eval_shape`.
  """
  rules = normalize_rules(rules)
  replicated = NamedSharding(mesh, PartitionSpec())

  def leaf_sharding(leaf, axes):
    shape = getattr(leaf, 'shape', ())
    if axes is None or len(axes) != len(shape):
      return replicated
    return NamedSharding(mesh, logical_to_spec(axes, rules, mesh, shape))

  def node_sharding(node):
    if _is_variable(node):
      axes = param_logical_axes(node)
      return jax.tree.map(lambda leaf: leaf_sharding(leaf, axes), node)
    return replicated if node is not None else None

  return jax.tree.map(node_sharding, tree, is_leaf=_is_variable)


def batch_sharding(mesh: Mesh, rules: Sequence[Sequence[Any]], ndim: int) -> NamedSharding:
  """The sharding of a batch-leading array: dim 0 over the `batch` rule's axes."""
  spec = logical_to_spec(('batch',) + (None,) * (ndim - 1), normalize_rules(rules), mesh)
  return NamedSharding(mesh, spec)


def global_batch(
  local_batch: Mapping[str, np.ndarray],
  mesh: Mesh,
  rules: Sequence[Sequence[Any]],
  keys: Sequence[str] | None = None,
) -> dict[str, jax.Array]:
  """Assembles per-process numpy batches into global arrays sharded by batch.

  Args:
    local_batch: this process's slice of the global batch, e.g. `video`:
      float32 [batch // process_count, time, height, width, 3].
    mesh: the device mesh.
    rules: logical axis rules (the `batch` rule shards dim 0).
    keys: which entries to convert; default every numeric array.

  Returns:
    Global jax.Arrays of shape [batch, ...].
  """
  if keys is None:
    keys = [k for k, v in local_batch.items() if np.asarray(v).dtype.kind in 'biuf']
  result = {}
  for key in keys:
    value = np.asarray(local_batch[key])
    sharding = batch_sharding(mesh, rules, value.ndim)
    result[key] = jax.make_array_from_process_local_data(sharding, value)
  return result


def bytes_per_device(tree: Any) -> dict[Any, int]:
  """Bytes each device holds of the arrays in `tree` (for memory checks)."""
  totals: dict[Any, int] = {}
  for leaf in jax.tree.leaves(tree):
    if not isinstance(leaf, jax.Array):
      continue
    for shard in leaf.addressable_shards:
      totals[shard.device] = totals.get(shard.device, 0) + shard.data.nbytes
  return totals


def replicated(mesh: Mesh) -> NamedSharding:
  """A sharding that keeps a full copy on every device of `mesh`."""
  return NamedSharding(mesh, PartitionSpec())
