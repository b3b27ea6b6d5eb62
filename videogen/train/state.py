"""Train-state pieces every stage shares: a fresh state, the update with its EMA,
the weights evaluation uses, and summed evaluation metrics.

A stage calls these from its `Task` methods instead of writing them again:
```
state = new_train_state(params, model_state, optimizer, config.optimizer)
fields, metrics = apply_gradients(state, grads, optimizer, schedule, config.optimizer)
state = state.replace(**fields)
params = eval_params(state)                       # EMA when kept
sums = EvalSums(); sums.add(weighted_sums); sums.means()
```
"""

from __future__ import annotations

from typing import Any, Mapping

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from videogen.train import optim
from videogen.train.task import TrainState


def new_train_state(
  params: Any,
  model_state: Any,
  optimizer: optax.GradientTransformation,
  optimizer_config: ml_collections.ConfigDict,
  *,
  state_class: type[TrainState] = TrainState,
  **extra: Any,
) -> TrainState:
  """Step 0: optimizer state of `params`, and an EMA copy when `ema_decay` > 0.

  Pure (the loop calls it under `eval_shape`, then under a sharded `jit`).

  Args:
    params: the model's trainable parameters.
    model_state: its non-trainable variables (may be empty).
    optimizer: the stage's optax transformation.
    optimizer_config: `config.optimizer` (for `ema_decay`).
    state_class: a TrainState subclass for stages that carry more fields.
    **extra: the subclass's extra fields.
  """
  ema = jax.tree.map(jnp.copy, params) if optimizer_config.ema_decay > 0 else None
  return state_class(
    step=jnp.zeros((), jnp.int32),
    params=params,
    opt_state=optimizer.init(params),
    model_state=model_state,
    ema_params=ema,
    **extra,
  )


def apply_gradients(
  state: TrainState,
  grads: Any,
  optimizer: optax.GradientTransformation,
  schedule: optax.Schedule,
  optimizer_config: ml_collections.ConfigDict,
) -> tuple[dict[str, Any], dict[str, jax.Array]]:
  """One optimizer update plus the EMA; returns the new fields and their metrics.

  Returns:
    ({'step', 'params', 'opt_state', 'ema_params'} for `state.replace`,
     {'grad_norm', 'learning_rate'}: the learning rate this update used).
  """
  updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  ema = state.ema_params
  if ema is not None:
    ema = optim.update_ema(ema, params, optimizer_config.ema_decay, state.step)
  fields = {'step': state.step + 1, 'params': params, 'opt_state': opt_state, 'ema_params': ema}
  metrics = {
    'grad_norm': optax.global_norm(grads),
    'learning_rate': jnp.asarray(schedule(state.step), jnp.float32),
  }
  return fields, metrics


def eval_params(state: TrainState) -> Any:
  """The parameters evaluation and sampling use: the EMA when kept, else the raw ones."""
  return state.ema_params if state.ema_params is not None else state.params


def count_params(tree: Any) -> int:
  """Number of scalars in a parameter tree."""
  return sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(tree))


class EvalSums:
  """Sums of per-example metrics over evaluation batches, and their means.

  Each batch adds `{'count': examples that count, name: sum over them}`; the
  padding of a last partial batch has weight 0, so every held-out example
  counts exactly once.
  """

  def __init__(self):
    self.totals: dict[str, float] = {}

  def add(self, sums: Mapping[str, Any]) -> None:
    for name, value in sums.items():
      self.totals[name] = self.totals.get(name, 0.0) + float(value)

  @property
  def count(self) -> float:
    return self.totals.get('count', 0.0)

  def means(self) -> dict[str, float]:
    """{name: sum / count} for every metric, and 'clips': the count; raises on none."""
    if not self.count:
      raise ValueError('evaluate got no eval examples (is the eval split empty?)')
    means = {k: v / self.count for k, v in self.totals.items() if k != 'count'}
    return {**means, 'clips': self.count}
