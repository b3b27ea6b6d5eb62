"""`videogen eval --workdir DIR`: evaluate a trained run's latest checkpoint.

Tokenizer workdirs: PSNR, SSIM and codebook usage on the split (the stage's
own `evaluate`). Transformer workdirs: validation loss and bits per token, and
on `shapes` the text alignment of samples for the split's captions. FVD is
reported when I3D weights are available (`VIDEOGEN_I3D_WEIGHTS`); otherwise
the result says why it is missing. Results go to `DIR/eval_<split>.json` and
TensorBoard.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
from typing import Any

import jax
from clu import metric_writers
from etils import epath

from videogen.eval import fvd
from videogen.parallel import mesh as mesh_lib
from videogen.parallel import sharding
from videogen.train import checkpointing, tasks

NUM_ALIGNMENT_PROMPTS = 32


@dataclasses.dataclass
class EvalResults:
  """Metrics of one evaluation and where they were written."""

  stage: str
  step: int
  split: str
  metrics: dict[str, Any]
  path: str

  def summary(self) -> str:
    lines = [f'{self.stage} workdir at step {self.step}, split {self.split!r}:']
    for key, value in self.metrics.items():
      shown = f'{value:.4g}' if isinstance(value, float) else value
      lines.append(f'  {key}: {shown}')
    lines.append(f'written to {self.path}')
    return '\n'.join(lines)


def _alignment(workdir: str, config, split: str) -> dict[str, Any]:
  from videogen import sample
  from videogen.data import pipeline
  from videogen.eval import shapes_eval

  captions = pipeline.split_captions(config, split, limit=NUM_ALIGNMENT_PROMPTS)
  videos = sample.Sampler.load(workdir).generate(captions)
  report = shapes_eval.evaluate_clips(videos, captions)
  return {f'alignment/{k}': v for k, v in report.to_dict().items()}


def evaluate_workdir(workdir: str, split: str = 'test') -> EvalResults:
  """Evaluates the latest checkpoint of `workdir` on `split`."""
  from videogen.data import pipeline

  config = checkpointing.read_config(workdir)
  with config.unlocked():
    config.data.eval_split = split
  mesh = mesh_lib.create_mesh(config.mesh)
  task = tasks.create_task(config, mesh, epath.Path(workdir))
  rules = config.logical_axis_rules
  with sharding.axis_rules(mesh, rules):
    abstract = jax.eval_shape(task.init_state, jax.random.key(config.seed))
    shardings = sharding.tree_shardings(abstract, mesh, rules)
    manager = checkpointing.make_manager(workdir, config.checkpoint, read_only=True)
    step = manager.latest_step()
    if step is None:
      raise FileNotFoundError(f'No checkpoint in {workdir}: train it first.')
    state, _ = checkpointing.restore(manager, step, abstract, shardings, None)
    iterator = pipeline.create_iterator(
      config, split, train=False, text_tokenizer=task.text_tokenizer()
    )
    batches = itertools.islice(iterator, config.num_eval_batches)
    metrics: dict[str, Any] = dict(task.evaluate(state, batches, step=step, sample_dir=None))
  if config.stage == 'transformer' and config.data.name == 'shapes':
    metrics.update(_alignment(workdir, config, split))
  available, reason = fvd.fvd_available(fvd.default_weights_path())
  metrics['fvd'] = (
    'weights found, but `videogen eval` does not compute FVD yet: use videogen.eval.fvd'
    if available
    else f'unavailable: {reason}'
  )
  path = epath.Path(workdir) / f'eval_{split}.json'
  if jax.process_index() == 0:
    path.write_text(json.dumps({'step': step, 'split': split, **metrics}, indent=2))
    writer = metric_writers.create_default_writer(str(epath.Path(workdir) / 'eval'))
    writer.write_scalars(
      step,
      {f'{split}/{k}': v for k, v in metrics.items() if isinstance(v, (int, float))},
    )
    writer.flush()
  return EvalResults(config.stage, step, split, metrics, str(path))
