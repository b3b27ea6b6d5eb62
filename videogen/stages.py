"""Which `Task` trains `config.stage`."""

from __future__ import annotations

import jax
import ml_collections
from etils import epath

from videogen.train.task import Task

STAGES = ('tokenizer', 'transformer')


def create_task(
  config: ml_collections.ConfigDict, mesh: jax.sharding.Mesh, workdir: epath.Path
) -> Task:
  """Builds the task of `config.stage` (imported lazily: each pulls its models)."""
  if config.stage == 'tokenizer':
    from videogen.vq.task import TokenizerTask

    return TokenizerTask(config, mesh)
  if config.stage == 'transformer':
    from videogen.transformer.task import TransformerTask

    return TransformerTask(config, mesh, workdir=workdir)
  raise ValueError(f'Unknown config.stage {config.stage!r}; valid stages: {STAGES}')
