"""`videogen eval --workdir DIR`: evaluate a trained run's latest checkpoint.

Tokenizer workdirs: PSNR, SSIM and codebook usage on the split (the stage's
own `evaluate`). Transformer workdirs: validation loss and bits per token, and
on `shapes` the text alignment of samples for the split's captions. With I3D
weights (`--i3d_weights` or $VIDEOGEN_I3D_WEIGHTS) also rFVD (tokenizer:
reconstructions vs originals) or FVD (transformer: samples for the split's
captions vs the split), under the protocol of `videogen.eval.fvd`; real-data
statistics are cached under `<data_dir>/fvd_stats/`. Without weights the
result says why FVD is missing and still has everything else. Results go to
`DIR/eval_<split>.json` and TensorBoard (`DIR/eval/`).
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import jax
import numpy as np
from clu import metric_writers
from etils import epath

from videogen import stages, weights
from videogen.eval import fvd
from videogen.parallel import mesh as mesh_lib
from videogen.parallel import sharding
from videogen.train import checkpointing

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


def _alignment(model, config, split: str) -> dict[str, Any]:
  from videogen.data import pipeline
  from videogen.eval import shapes_eval

  captions = pipeline.split_captions(config, split, limit=NUM_ALIGNMENT_PROMPTS)
  videos = model.generate(captions)
  report = shapes_eval.evaluate_clips(videos, captions)
  return {f'alignment/{k}': v for k, v in report.to_dict().items()}


def _fvd(
  workdir: str,
  model,
  config,
  split: str,
  i3d_weights: str,
  num_videos: int,
  embedder_kwargs: dict,
) -> dict[str, Any]:
  """rFVD (tokenizer) or FVD (transformer, `model` its TextToVideo) of the run, or why
  it is unavailable."""
  from videogen.data import pipeline

  name = 'rfvd' if config.stage == 'tokenizer' else 'fvd'
  available, reason = fvd.fvd_available(i3d_weights)
  if not available:
    return {name: f'unavailable: {reason}'}
  embedder = fvd.I3DEmbedder.from_weights(i3d_weights, **embedder_kwargs)
  if config.data.num_frames < embedder.num_frames:
    return {
      name: f'unavailable: clips have {config.data.num_frames} frames; the FVD protocol '
      f'uses the first {embedder.num_frames}'
    }
  clips = lambda: (b['video'] for b in pipeline.create_iterator(config, split, train=False))
  data = config.data
  cache = fvd.stats_path(
    str(epath.Path(data.data_dir) / 'fvd_stats'),
    f'{data.name}_{data.num_frames}x{data.height}x{data.width}',
    split,
    num_videos,
    embedder.num_frames,
    embedder.resolution,
  )
  if config.stage == 'tokenizer':
    from videogen import vq

    tokenizer = vq.Tokenizer.load(workdir)
    generated, count = [], 0
    for batch in clips():
      generated.append(np.asarray(tokenizer.decode(tokenizer.encode(batch))))
      count += len(batch)
      if count >= num_videos:
        break
    generated = np.concatenate(generated)[:num_videos]
  else:
    captions = pipeline.split_captions(config, split, limit=num_videos)
    chunk = config.batch_size  # Rows sampled together (KV cache memory).
    generated = np.concatenate(
      [model.generate(captions[i : i + chunk]) for i in range(0, len(captions), chunk)]
    )
  result = fvd.evaluate_fvd(embedder, clips(), generated, cache_path=cache, num_videos=num_videos)
  return {
    name: result.fvd,
    f'{name}_num_real': result.num_real,
    f'{name}_num_generated': result.num_generated,
  }


def evaluate_workdir(
  workdir: str,
  split: str = 'test',
  *,
  i3d_weights: str | None = None,
  fvd_num_videos: int = fvd.NUM_VIDEOS,
  fvd_embedder_kwargs: dict | None = None,
) -> EvalResults:
  """Evaluates the latest checkpoint of `workdir` on `split`.

  Args:
    workdir: a tokenizer or transformer workdir.
    split: dataset split.
    i3d_weights: converted I3D weights for (r)FVD; default $VIDEOGEN_I3D_WEIGHTS.
    fvd_num_videos: most real and generated videos behind the FVD.
    fvd_embedder_kwargs: `I3DEmbedder` overrides (tests shrink the protocol).
  """
  from videogen.data import pipeline

  config = weights.read_config(workdir)
  with config.unlocked():
    config.data.eval_split = split
  mesh = mesh_lib.create_mesh(config.mesh)
  model = None
  if config.stage == 'transformer':
    from videogen.transformer.inference import TextToVideo

    # Loaded once: the task evaluates with its encoders, sampling with its weights.
    model = TextToVideo.load(workdir)
    task = stages.create_task(config, mesh, epath.Path(workdir), model=model)
  else:
    task = stages.create_task(config, mesh, epath.Path(workdir))
  rules = config.logical_axis_rules
  with sharding.axis_rules(mesh, rules):
    abstract = jax.eval_shape(task.init_state, jax.random.key(config.seed))
    shardings = sharding.tree_shardings(abstract, mesh, rules)
    manager = checkpointing.make_manager(workdir, config.checkpoint, read_only=True)
    # Read-only: a damaged newest step is logged and skipped, not moved.
    restored = checkpointing.restore_latest(
      manager,
      abstract,
      shardings,
      None,
      fallback=config.checkpoint.get('fallback', True),
      move_aside=False,
    )
    if restored is None:
      raise FileNotFoundError(f'No checkpoint in {workdir}: train it first.')
    step, state = restored.step, restored.state
    iterator = pipeline.create_eval_iterator(config, text_features=task.text_features())
    batches = pipeline.take_eval_batches(iterator, config.num_eval_batches)
    metrics: dict[str, Any] = dict(task.evaluate(state, batches, step=step, sample_dir=None))
  if config.stage == 'transformer' and config.data.name == 'shapes':
    metrics.update(_alignment(model, config, split))
    if model.spec.multitask:
      from videogen.eval import tasks_eval

      metrics.update(tasks_eval.evaluate_tasks(model, config, split))
  i3d_weights = i3d_weights or fvd.default_weights_path()
  metrics.update(
    _fvd(workdir, model, config, split, i3d_weights, fvd_num_videos, fvd_embedder_kwargs or {})
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
