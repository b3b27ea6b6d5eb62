"""The contract between the shared training loop and a training stage.

A stage (the video tokenizer, the transformer) is a `Task`: it builds its
models and train state, and supplies pure step functions. The loop in
`videogen.train.loop` owns everything else: mesh, sharded initialisation,
jitting, data, checkpoints, metrics, preemption.
"""

from __future__ import annotations

import abc
import dataclasses
from typing import Any, Iterable, Mapping

import flax.struct
import jax
import ml_collections
import numpy as np

PyTree = Any
Metrics = dict[str, jax.Array]


@flax.struct.dataclass
class TrainState:
  """What one optimizer step reads and writes.

  Attributes:
    step: int32 scalar, the number of updates applied.
    params: trainable parameters of the stage's model (an `nnx.State`, whose
      Variables carry logical axis names for sharding).
    opt_state: optax state of `params`.
    model_state: non-trainable model variables updated by the step (e.g. the
      EMA codebook of a VQ quantizer); an empty `nnx.State` when there are none.
    ema_params: exponential moving average of `params`, or None when
      `config.optimizer.ema_decay` is 0. Evaluation and sampling use it when set.
  """

  step: jax.Array
  params: PyTree
  opt_state: PyTree
  model_state: PyTree
  ema_params: PyTree | None


@dataclasses.dataclass(frozen=True)
class StepCost:
  """Work done by one train step, for throughput and MFU metrics.

  Attributes:
    flops: model FLOPs of one train step (forward + backward), whole batch.
    tokens: tokens processed per step (0 when the stage has no tokens).
    frames: video frames processed per step.
  """

  flops: float = 0.0
  tokens: int = 0
  frames: int = 0


class Task(abc.ABC):
  """A training stage. Subclasses are built with `(config, mesh)`."""

  def __init__(self, config: ml_collections.ConfigDict, mesh: jax.sharding.Mesh):
    self.config = config
    self.mesh = mesh

  @abc.abstractmethod
  def init_state(self, rng: jax.Array) -> TrainState:
    """Builds a fresh train state. Pure and jittable: the loop calls it under
    `jax.eval_shape` for shardings, then under `jax.jit(out_shardings=...)`."""

  @abc.abstractmethod
  def train_step(
    self, state: TrainState, batch: Mapping[str, jax.Array], rng: jax.Array
  ) -> tuple[TrainState, Metrics]:
    """One optimizer step. Pure; jitted once by the loop with the state donated.

    Args:
      state: the train state.
      batch: global arrays from `batch_spec`, sharded over the batch axes,
        e.g. `video`: float32 [batch, time, height, width, 3] in [-1, 1].
      rng: a key for this step (already folded with the step number).

    Returns:
      The new state, and scalar metrics. `loss` must be among them; the loop
      checks it for NaN/Inf.
    """

  @abc.abstractmethod
  def evaluate(
    self,
    state: TrainState,
    batches: Iterable[Mapping[str, np.ndarray]],
    *,
    step: int,
    sample_dir: str | None,
  ) -> dict[str, float]:
    """Evaluates `state` on host-local eval batches and writes sample videos.

    Args:
      state: the train state (sharded global arrays).
      batches: per-process numpy batches of the eval split, as the data
        pipeline yields them (`video`, `caption`, ..., and `eval_mask`:
        float32 [b], 0 for the padding of a last partial batch, which must
        not count). Use `videogen.parallel.sharding.global_batch` to make
        global arrays.
      step: the current step, for file names.
      sample_dir: where process 0 writes videos; None to write none.

    Returns:
      Scalar metrics, e.g. {'psnr': 30.1}.
    """

  def batch_keys(self) -> tuple[str, ...]:
    """Keys of the pipeline's batch that go to `train_step` as arrays."""
    return ('video',)

  def text_features(self):
    """A callable `list[str] -> {name: array [B, ...]}` that the data pipeline
    applies to each batch's captions, or None when the stage uses no text."""
    return None

  def create_train_iterator(self):
    """The stage's own train iterator (e.g. over pre-computed tokens), or None
    for the standard video pipeline. Must support get_state/set_state."""
    return None

  def step_cost(self, batch_size: int) -> StepCost:
    """FLOPs/tokens/frames of one train step at this global batch size."""
    return StepCost()

  def describe(self, state: TrainState) -> str:
    """A one-line summary (model, parameter count) for the log."""
    count = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(state.params))
    return f'{type(self).__name__}: {count:,} parameters'
