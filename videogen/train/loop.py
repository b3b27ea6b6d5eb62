"""The one training loop both stages share.

`train_and_evaluate(config, workdir, create_task)` builds the mesh and the stage's `Task`,
creates (or restores) the train state directly sharded, and runs the task's
pure step function, jitted once, with checkpoints, metrics, evaluation and
preemption handling. Stage-specific logic lives in the tasks.
"""

from __future__ import annotations

import dataclasses
import json
import time
from typing import Any, Callable, Iterator

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from absl import logging
from clu import metric_writers, periodic_actions
from etils import epath

from videogen.parallel import compilation, sharding
from videogen.parallel import mesh as mesh_lib
from videogen.train import checkpointing, compiled_step, preemption, throughput, warm_start
from videogen.train.task import Task


@dataclasses.dataclass
class TrainResult:
  """How a call of `train_and_evaluate` ended.

  Attributes:
    step: the step the state is at.
    preempted: True when a preemption notice stopped the run early.
    eval_metrics: the last evaluation's metrics (empty if none ran).
    last_train_metrics: the last logged train metrics.
    compiled_train_step: the saved executable the steps ran (empty when the
      loop compiled the train step itself).
  """

  step: int
  preempted: bool = False
  compiled_train_step: str = ''
  eval_metrics: dict[str, float] = dataclasses.field(default_factory=dict)
  last_train_metrics: dict[str, float] = dataclasses.field(default_factory=dict)


class _MetricsLog:
  """TensorBoard (clu) on all hosts' terms, `metrics.jsonl` on process 0."""

  def __init__(self, workdir: epath.Path):
    self.is_main = jax.process_index() == 0
    self.writer = metric_writers.create_default_writer(str(workdir), just_logging=not self.is_main)
    self._jsonl = workdir / 'metrics.jsonl'

  def write(self, step: int, metrics: dict[str, float]) -> None:
    self.writer.write_scalars(step, metrics)
    if self.is_main:
      with self._jsonl.open('a') as f:
        f.write(json.dumps({'step': step, **metrics}) + '\n')

  def flush(self) -> None:
    self.writer.flush()

  def last_eval(self) -> dict[str, float]:
    """The latest evaluation logged in `metrics.jsonl` (empty if none)."""
    if not self._jsonl.exists():
      return {}
    for line in reversed(self._jsonl.read_text().splitlines()):
      record = json.loads(line)
      if any(k.startswith('eval/') for k in record):
        return {k[len('eval/') :]: v for k, v in record.items() if k.startswith('eval/')}
    return {}


def _loop_step(task: Task, policy: str):
  """`task.train_step` as the loop jits it: per-step rng, non-finite guard.

  Step k trains with `fold_in(train_rng, k)`, folded in under jit (eagerly,
  it cost the 2-core quickstart ~0.6 ms of host time per step). A
  non-finite loss never reaches the state: under `skip` the update is
  dropped (the step counter still advances); under `stop` the state is kept
  as well and the loop raises, naming the step.
  """
  if policy not in ('stop', 'skip'):
    raise ValueError(f"Unknown nan_policy {policy!r}; valid: 'stop', 'skip'")

  def step_fn(state, batch, train_rng):
    rng = jax.random.fold_in(train_rng, state.step + 1)
    new_state, metrics = task.train_step(state, batch, rng)
    finite = jnp.isfinite(metrics['loss'])
    kept = jax.tree.map(lambda new, old: jnp.where(finite, new, old), new_state, state)
    kept = kept.replace(step=new_state.step)
    metrics = dict(metrics, nonfinite=(~finite).astype(jnp.float32))
    return kept, metrics

  return step_fn


def jit_train_step(
  task: Task, config: ml_collections.ConfigDict, mesh: jax.sharding.Mesh, state_shardings: Any
) -> Callable[..., tuple[Any, dict[str, jax.Array]]]:
  """The train step as the loop runs it: `(state, batch, train_rng) -> (state, metrics)`,
  jitted with the state donated and sharded by `state_shardings` (`videogen compile`
  lowers the same function for a TPU slice)."""
  return jax.jit(
    _loop_step(task, config.nan_policy),
    out_shardings=(state_shardings, sharding.replicated(mesh)),
    donate_argnums=(0,),
  )


def _eval_batches(config, task: Task) -> Iterator[dict[str, np.ndarray]]:
  from videogen.data import pipeline  # Heavy (TFDS); only when evaluating.

  iterator = pipeline.create_eval_iterator(config, text_features=task.text_features())
  yield from pipeline.take_eval_batches(iterator, config.num_eval_batches)


def _log_memory(compiled) -> None:
  try:
    stats = compiled.memory_analysis()
  except (NotImplementedError, AttributeError, RuntimeError):
    stats = None
  if stats is None:
    logging.info('Compiled train step: no memory analysis on this backend.')
    return
  gib = 1 / 2**30
  logging.info(
    'Compiled train step memory per device: arguments %.3f GiB, outputs %.3f GiB, '
    'temporaries %.3f GiB, generated code %.3f GiB (aliased %.3f GiB).',
    stats.argument_size_in_bytes * gib,
    stats.output_size_in_bytes * gib,
    stats.temp_size_in_bytes * gib,
    stats.generated_code_size_in_bytes * gib,
    stats.alias_size_in_bytes * gib,
  )


def _check_finite(step: int, metrics: dict[str, jax.Array], policy: str) -> None:
  """Raises under the `stop` policy when `step` had a non-finite loss."""
  if policy == 'stop' and float(metrics['nonfinite']):
    raise FloatingPointError(
      f'Non-finite loss at step {step}; the update was not applied. Lower the '
      'learning rate, or set --config.nan_policy=skip to skip such steps.'
    )


def _is_due(step: int, every: int, last: int) -> bool:
  return step == last or (every > 0 and step % every == 0)


class _SkippedExamples:
  """Examples the input pipeline skipped (`data/skipped_examples`) and the stop rule.

  Counts start at this process's start (a resumed run counts afresh). The
  run stops once skips exceed `data.max_skipped_fraction` of the examples
  read, counted as at least one pass over the split, so that a few damaged
  records early in a run do not stop it.
  """

  def __init__(self, config: ml_collections.ConfigDict):
    from videogen.data import pipeline  # The train iterator exists: already imported.

    self._keys = (pipeline.SKIPPED, pipeline.SHARD_SIZE)
    self._error = pipeline.TooManySkippedExamples
    self.max_fraction = float(config.data.get('max_skipped_fraction', 0.01))
    self.batch_size = config.batch_size
    self._local = np.zeros(2, np.int64)  # skipped, shard size

  def take(self, batch: dict[str, Any]) -> dict[str, Any]:
    """Removes the counts from a local batch (before it becomes global arrays)."""
    if self._keys[0] in batch:
      batch = dict(batch)
      self._local = np.array([int(batch.pop(key)) for key in self._keys], np.int64)
    return batch

  def total(self) -> tuple[int, int]:
    """(skipped, split size) over all processes."""
    counts = self._local
    if jax.process_count() > 1:
      from jax.experimental import multihost_utils

      counts = np.asarray(multihost_utils.process_allgather(counts)).sum(axis=0)
    return int(counts[0]), int(counts[1])

  def check(self, steps_run: int) -> int:
    """Raises past the allowed fraction; returns the skipped count."""
    skipped, split = self.total()
    read = steps_run * self.batch_size + skipped
    if skipped > self.max_fraction * max(read, split):
      raise self._error(
        f'{skipped} of the {read} training examples read failed to decode or had the wrong '
        f'shape, more than data.max_skipped_fraction={self.max_fraction:g} (the warnings '
        'above name the first); repair or rebuild the dataset, or raise '
        '--config.data.max_skipped_fraction.'
      )
    return skipped


def train_and_evaluate(
  config: ml_collections.ConfigDict,
  workdir: str,
  create_task: Callable[[ml_collections.ConfigDict, jax.sharding.Mesh, epath.Path], Task],
) -> TrainResult:
  """Trains `config.stage` in `workdir`, resuming from its latest checkpoint.

  Args:
    config: a locked experiment config (see `configs/`).
    workdir: the run directory (local or `gs://`), laid out as DESIGN.md says.
    create_task: builds the stage's Task from (config, mesh, workdir)
      (`videogen.stages.create_task`; the engine names no stage).

  Returns:
    A TrainResult describing where the run stopped.
  """
  from videogen.data import build, pipeline  # Heavy (TFDS); the CLI imports lazily.

  workdir = epath.Path(workdir)
  is_main = jax.process_index() == 0
  mesh = mesh_lib.create_mesh(config.mesh)
  rules = config.logical_axis_rules
  logging.info(
    'Mesh: %s over %d devices, %d processes.',
    mesh_lib.describe(mesh),
    mesh.size,
    jax.process_count(),
  )
  batch_shards = mesh.shape['data'] * mesh.shape['fsdp']
  if config.batch_size % batch_shards:
    raise ValueError(
      f'batch_size {config.batch_size} is not divisible by the batch axes '
      f'data*fsdp = {batch_shards}.'
    )
  # A config error, so it stops the run before a dataset build that may take hours.
  pipeline.check_num_eval_batches(config.num_eval_batches)
  saved_step = None
  if config.get('compiled_train_step'):  # Checked before the data and the state are built.
    saved_step = compiled_step.load(config.compiled_train_step, config, mesh)
  build.ensure_built(config.data)
  sizes = pipeline.check_split_sizes(config)  # Before any step, not at the first eval.
  logging.info('Splits: %d train and %d eval examples.', sizes['train'], sizes['eval'])
  task = create_task(config, mesh, workdir)
  if is_main:
    checkpointing.write_config(workdir, config)

  rng = jax.random.key(config.seed)
  init_rng, train_rng = jax.random.split(rng)
  with sharding.axis_rules(mesh, rules):
    abstract_state = jax.eval_shape(task.init_state, init_rng)
    state_shardings = sharding.tree_shardings(abstract_state, mesh, rules)
    manager = checkpointing.make_manager(workdir, config.checkpoint)
    train_iter = task.create_train_iterator() or pipeline.create_iterator(
      config, config.data.train_split, train=True, text_features=task.text_features()
    )
    restored = checkpointing.restore_latest(
      manager,
      abstract_state,
      state_shardings,
      train_iter,
      fallback=config.checkpoint.get('fallback', True),
    )
    if restored is not None:
      start_step, state = restored.step, restored.state
      logging.info('Resuming from %s', manager.directory / str(start_step))
    else:
      start_step = 0
      state = compilation.run_once(task.init_state, init_rng, out_shardings=state_shardings)
      if config.get('init_from'):
        state = warm_start.apply(state, config.init_from)
    logging.info('%s', task.describe(state))

    if saved_step is None:
      step_fn = jit_train_step(task, config, mesh, state_shardings)
    else:
      # The same key, placed as `videogen compile` declared it: replicated over the mesh.
      train_rng = jax.jit(
        lambda: jax.random.split(jax.random.key(config.seed))[1],
        out_shardings=sharding.replicated(mesh),
      )()
      step_fn = None
    result = _run(
      config=config,
      workdir=workdir,
      task=task,
      mesh=mesh,
      manager=manager,
      state=state,
      step_fn=step_fn,
      train_iter=train_iter,
      start_step=start_step,
      train_rng=train_rng,
      saved_step=saved_step,
    )
  checkpointing.finish(manager)
  manager.close()
  return result


def _run(
  *,
  config: ml_collections.ConfigDict,
  workdir: epath.Path,
  task: Task,
  mesh: jax.sharding.Mesh,
  manager: ocp.CheckpointManager,
  state: Any,
  step_fn: Callable[..., tuple[Any, dict[str, jax.Array]]] | None,
  train_iter: Iterator[Any],
  start_step: int,
  train_rng: jax.Array,
  saved_step: compiled_step.CompiledStep | None = None,
) -> TrainResult:
  """The step loop; see `train_and_evaluate`. Without `step_fn` the steps run
  `saved_step`, loaded at the first step."""
  rules = config.logical_axis_rules
  is_main = jax.process_index() == 0
  log = _MetricsLog(workdir)
  total = config.num_train_steps
  result = TrainResult(step=start_step)
  if start_step >= total:
    logging.info('Already trained to step %d of %d.', start_step, total)
    result.eval_metrics = log.last_eval()
    return result
  cost = task.step_cost(config.batch_size)
  reference, reference_name = throughput.reference_flops(config.peak_flops)
  progress = periodic_actions.ReportProgress(
    num_train_steps=total, writer=log.writer, every_steps=config.log_every_steps
  )
  watcher = preemption.PreemptionWatcher()
  sample_dir = str(workdir / 'samples') if is_main else None
  keys = task.batch_keys()
  skips = _SkippedExamples(config)
  last_log_time, last_log_step = time.perf_counter(), start_step
  pending: list[dict[str, Any]] = []
  unchecked: tuple[int, dict[str, jax.Array]] | None = None
  try:
    for step in range(start_step + 1, total + 1):
      batch = sharding.global_batch(skips.take(next(train_iter)), mesh, rules, keys)
      if step == start_step + 1:
        if saved_step is None:
          compiled = step_fn.lower(state, batch, train_rng).compile()
        else:
          compiled = step_fn = saved_step.bind(
            _loop_step(task, config.nan_policy), state, batch, train_rng
          )
          result.compiled_train_step = saved_step.path
          logging.info('Train step loaded from %s, not compiled here.', saved_step.path)
        _log_memory(compiled)
      state, metrics = step_fn(state, batch, train_rng)
      pending.append(metrics)
      progress(step)
      # A step's loss is checked once the next one is dispatched, so that the
      # host prepares batches while the device runs; steps that are logged,
      # evaluated or saved are checked at once.
      if unchecked is not None:
        _check_finite(*unchecked, config.nan_policy)
      unchecked = (step, metrics)
      stop = watcher.should_stop(step, manager)
      save = stop or _is_due(step, config.checkpoint_every_steps, total)
      evaluate = _is_due(step, config.eval_every_steps, total)
      log_due = _is_due(step, config.log_every_steps, total)
      if save or evaluate or log_due:
        _check_finite(*unchecked, config.nan_policy)
        unchecked = None
      if log_due:
        summary = {k: float(np.mean([np.asarray(m[k]) for m in pending])) for k in pending[0]}
        pending.clear()
        now = time.perf_counter()
        steps_per_s = (step - last_log_step) / max(now - last_log_time, 1e-9)
        last_log_time, last_log_step = now, step
        summary['steps_per_s'] = steps_per_s
        if cost.tokens:
          summary['tokens_per_s'] = cost.tokens * steps_per_s
        if cost.frames:
          summary['frames_per_s'] = cost.frames * steps_per_s
        if cost.flops:
          summary['mfu'] = cost.flops * steps_per_s / reference
        summary['data/skipped_examples'] = skips.check(step - start_step)
        log.write(step, summary)
        result.last_train_metrics = summary
        logging.info('step %d: %s', step, ', '.join(f'{k}={v:.4g}' for k, v in summary.items()))
      if evaluate:
        with progress.timed('eval'):
          result.eval_metrics = task.evaluate(
            state, _eval_batches(config, task), step=step, sample_dir=sample_dir
          )
        log.write(step, {f'eval/{k}': v for k, v in result.eval_metrics.items()})
        logging.info('eval at step %d: %s', step, result.eval_metrics)
      if save:
        checkpointing.save(manager, step, state, train_iter, config, force=True)
      result.step = step
      if stop:
        result.preempted = True
        logging.warning('Preempted: saved step %d; rerun the command to resume.', step)
        break
  finally:
    watcher.restore_handlers()
    log.flush()
  if cost.flops:
    logging.info('MFU reference: %s = %.3g FLOP/s.', reference_name, reference)
  return result
