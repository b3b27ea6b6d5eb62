"""The training stages by name, and `train`, which runs one in the shared loop.

`videogen.train` (the engine) names no stage: `loop.train_and_evaluate`
takes the function that builds the task. The apps (`cli`, `quickstart`,
`eval`) train through `stages.train(config, workdir)`.
"""

from __future__ import annotations

from typing import Any

import jax
import ml_collections
from etils import epath

from videogen.train import loop
from videogen.train.task import Task

STAGES = ('tokenizer', 'transformer')


def create_task(
  config: ml_collections.ConfigDict, mesh: jax.sharding.Mesh, workdir: epath.Path, **kwargs: Any
) -> Task:
  """Builds the task of `config.stage` (imported lazily: each pulls its models).

  Args:
    config: a locked experiment config.
    mesh: the device mesh.
    workdir: the run directory.
    **kwargs: passed to the transformer task (e.g. `model=` an already
      loaded `TextToVideo`, so its encoders are not loaded again).
  """
  if config.stage == 'tokenizer':
    from videogen.vq.task import TokenizerTask

    return TokenizerTask(config, mesh)
  if config.stage == 'transformer':
    from videogen.transformer.task import TransformerTask

    return TransformerTask(config, mesh, workdir=workdir, **kwargs)
  raise ValueError(f'Unknown config.stage {config.stage!r}; valid stages: {STAGES}')


def train(config: ml_collections.ConfigDict, workdir: str) -> loop.TrainResult:
  """Trains `config.stage` in `workdir` (resuming), as `videogen train` does."""
  return loop.train_and_evaluate(config, workdir, create_task)
