"""Warm start: a new run's parameters from another run or export (`config.init_from`).

As big_vision's `model_init`: the weights are loaded once, at step 0 of a run
that has no checkpoint of its own (a resumed run restores its own). The other
run may be a different model of the same family: a parameter with the same
logical path and shape is copied; an embedding table that grew along its
first axis (new input tokens, e.g. a text-to-video model's vocabulary plus
the task and mask tokens of a multi-task model) gets the saved rows and keeps
the fresh initialisation of the new ones; a parameter the source lacks keeps
its initialisation. Any other difference is an error naming the parameter.
The optimizer state starts fresh; an EMA starts at the loaded weights.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import numpy as np
from absl import logging

from videogen import weights
from videogen.train.task import TrainState


class WarmStartError(ValueError):
  """`config.init_from` names nothing that holds weights."""


@dataclasses.dataclass
class WarmStart:
  """What `merge` did, by logical parameter path.

  Attributes:
    copied: parameters taken as saved.
    grown: (path, saved rows, new rows) of tables whose first axis grew.
    new: parameters the source does not have (left at their initialisation).
    unused: saved parameters the new model does not have.
  """

  copied: list[str] = dataclasses.field(default_factory=list)
  grown: list[tuple[str, int, int]] = dataclasses.field(default_factory=list)
  new: list[str] = dataclasses.field(default_factory=list)
  unused: list[str] = dataclasses.field(default_factory=list)

  def describe(self) -> str:
    parts = [f'{len(self.copied)} parameters copied']
    if self.grown:
      parts.append(
        'grown (saved rows kept, new rows initialised): '
        + ', '.join(f'{name} {old}->{new} rows' for name, old, new in self.grown)
      )
    if self.new:
      parts.append(f'{len(self.new)} new, initialised: {", ".join(self.new)}')
    if self.unused:
      parts.append(f'{len(self.unused)} saved but unused: {", ".join(self.unused)}')
    return '; '.join(parts)


def merge(params: Any, saved: dict[str, np.ndarray], what: str) -> tuple[Any, WarmStart]:
  """`params` (initialised, sharded) with `saved`'s values where they fit.

  Args:
    params: the new model's parameter tree (global jax.Arrays).
    saved: {logical/path: array} (`weights.read_params`).
    what: where `saved` came from, for messages.

  Returns:
    The merged tree (each leaf on its original sharding) and what was done.

  Raises:
    weights.CheckpointMismatchError: a parameter whose shape differs other than
      by rows added along its first axis.
  """
  report = WarmStart()
  named = weights.flatten(params)  # In leaf order.
  treedef = jax.tree.structure(params)
  merged = []
  for name, leaf in named.items():
    if name not in saved:
      report.new.append(name)
      merged.append(leaf)
      continue
    value = np.asarray(saved[name], dtype=leaf.dtype)
    if value.shape == leaf.shape:
      report.copied.append(name)
      merged.append(_place(value, leaf.sharding))
    elif (
      value.ndim == leaf.ndim >= 1
      and value.shape[1:] == leaf.shape[1:]
      and value.shape[0] < leaf.shape[0]
    ):
      report.grown.append((name, value.shape[0], leaf.shape[0]))
      merged.append(_set_rows(leaf, value))
    else:
      raise weights.CheckpointMismatchError(
        f'{what}: parameter {name!r} has shape {value.shape} there but {leaf.shape} in this '
        'model; only a first axis that grew (new embedding rows) can be warm-started.'
      )
  report.unused = sorted(set(saved) - set(named))
  return jax.tree.unflatten(treedef, merged), report


def _set_rows(table: jax.Array, head: np.ndarray) -> jax.Array:
  """`table` with its first `len(head)` rows replaced, on the table's sharding."""
  return jax.jit(lambda t, h: t.at[: h.shape[0]].set(h), out_shardings=table.sharding)(table, head)


def _place(value: np.ndarray, sharding: jax.sharding.Sharding) -> jax.Array:
  """A global array of `value` (the same on every process) on `sharding`."""
  return jax.make_array_from_callback(value.shape, sharding, lambda index: value[index])


def apply(state: TrainState, path: str) -> TrainState:
  """`state` (a fresh step-0 state) with its parameters, and EMA, from `path`.

  Args:
    state: the initialised train state.
    path: a workdir, `workdir/checkpoints/<step>` or an export (`weights.read_params`).
  """
  try:
    step, saved = weights.read_params(path)
  except FileNotFoundError as error:
    raise WarmStartError(
      f'config.init_from: {error}; name a run (workdir or workdir/checkpoints/<step>) or an '
      'export, or set --config.init_from= to start from random weights.'
    ) from error
  what = f'config.init_from {path}' + (f' (step {step})' if step is not None else '')
  params, report = merge(state.params, saved, what)
  logging.info('Warm start from %s: %s.', what, report.describe())
  ema = None
  if state.ema_params is not None:
    ema = jax.tree.map(lambda x: x.copy(), params)
  return state.replace(params=params, ema_params=ema)
