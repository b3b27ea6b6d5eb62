"""The transformer training stage: text-conditioned next-token prediction of video tokens.

Inside the jitted step the frozen video tokenizer turns clips into tokens and
the frozen T5 turns caption ids into embeddings (both under stop_gradient;
their weights ride in the train state as `frozen`, so they are sharded
arguments rather than compile-time constants). Captions are dropped with
probability `model.text_dropout_prob` for classifier-free guidance.

A text-to-video model trained from token shards (`config.data.tokens_dir`)
holds no tokenizer: the shards' metadata sizes the model, the step reads
tokens, evaluation reads the shards' eval split, and the tokenizer is loaded
only for the call that decodes periodic samples (and, once, by process 0 to
copy it into the workdir).
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Iterable, Mapping

import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from absl import logging
from etils import epath
from flax import nnx
from jax.experimental import multihost_utils

from videogen import text, vq
from videogen.data import video_io
from videogen.data.config import EVAL_MASK
from videogen.parallel import sharding
from videogen.train import optim
from videogen.train import state as state_lib
from videogen.train.task import StepCost, Task, TrainState
from videogen.transformer import inference, losses, tasks, token_cache
from videogen.transformer.inference import TextToVideo
from videogen.transformer.layers import TransformerSpec, trained_tasks
from videogen.transformer.model import Transformer, corrupt_inputs, shift_right


@flax.struct.dataclass
class TransformerTrainState(TrainState):
  """TrainState plus the frozen encoders' weights.

  Attributes:
    frozen: {'tokenizer': video tokenizer state, 'text': T5 state} ('text'
      only when training from token shards); never updated (gradients are
      stopped), carried so the step takes them as sharded arguments.
  """

  frozen: Any


def load_inference(config: ml_collections.ConfigDict, workdir: str | epath.PathLike) -> TextToVideo:
  """The sampling model of a run, without transformer weights: the frozen
  tokenizer of `config.tokenizer.checkpoint` and the T5 of `config.text`.

  On first use process 0 writes what sampling from the workdir needs into
  it: a copy of the tokenizer in `<workdir>/tokenizer/` (so the workdir
  keeps working when it is moved and the tokenizer's own run is gone) and
  the offline default T5, built from the training captions, in
  `<workdir>/text_encoder/`. Both encoders load onto each host's first
  device; `init_state` hands their weights to the sharded train state.
  """
  tokenizer = load_tokenizer(config, workdir)
  return TextToVideo(config, tokenizer, load_text_encoder(config, workdir))


def load_tokenizer(
  config: ml_collections.ConfigDict,
  workdir: str | epath.PathLike,
  *,
  check: Callable[[vq.Tokenizer], None] | None = None,
  mesh: jax.sharding.Mesh | None = None,
) -> vq.Tokenizer:
  """The run's video tokenizer: the workdir's copy (`<workdir>/tokenizer/`), else
  `config.tokenizer.checkpoint`, which process 0 then copies into the workdir.

  Args:
    config: a transformer config.
    workdir: the run directory.
    check: raises when the tokenizer does not fit the run; called before the
      copy is written, so a refused tokenizer is not copied.
    mesh: shard its weights over this mesh; None: this host's first device.

  Raises:
    ValueError: neither the copy nor `config.tokenizer.checkpoint` exists.
  """
  copy = epath.Path(workdir) / inference.TOKENIZER_DIR
  if (copy / 'config.json').exists():
    tokenizer = vq.Tokenizer.load(str(copy), mesh=mesh)
    if check is not None:
      check(tokenizer)
    return tokenizer
  if not config.tokenizer.checkpoint:
    raise ValueError('config.tokenizer.checkpoint must name the trained tokenizer workdir.')
  tokenizer = vq.Tokenizer.load(config.tokenizer.checkpoint, mesh=mesh)
  if check is not None:
    check(tokenizer)
  if jax.process_index() == 0:
    tokenizer.export(copy)
  return tokenizer


def load_text_encoder(
  config: ml_collections.ConfigDict, workdir: str | epath.PathLike
) -> text.T5Encoder:
  """The frozen T5 of `config.text`, on this host's first device. On first use
  process 0 builds the offline default from the training captions into
  `<workdir>/text_encoder/`; every process then waits for process 0 (and for
  its copy of the tokenizer, when it writes one before this)."""
  from videogen.data import pipeline  # noqa: PLC0415  (heavy; only for real runs)
  from videogen.text import default as default_t5  # noqa: PLC0415

  default_dir = epath.Path(text.encoder_dir(config.text, workdir))
  if not config.text.path and not (default_dir / 'config.json').exists():
    if jax.process_index() == 0:
      captions = pipeline.split_captions(config, config.data.train_split)
      default_t5.ensure_default_from_config(default_dir, captions, config.text.default_model)
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices('videogen_frozen_models')
  return text.load_text_encoder(config.text, workdir=workdir)


class TransformerTask(Task):
  """Trains `Transformer` on frozen-tokenizer tokens of captioned clips."""

  def __init__(
    self,
    config: ml_collections.ConfigDict,
    mesh: jax.sharding.Mesh,
    *,
    workdir: str | epath.PathLike,
    model: TextToVideo | None = None,
  ):
    """Builds the stage.

    Args:
      config: a transformer config.
      mesh: the training mesh.
      workdir: the run directory (caches, the tokenizer copy, the default T5).
      model: the frozen encoders as a weightless `TextToVideo`; default
        `load_inference(config, workdir)`. When training from token shards
        only its text encoder is used, and its tokenizer decodes the samples.
    """
    super().__init__(config, mesh)
    self.workdir = epath.Path(workdir)
    self.tokens_dir = config.data.get('tokens_dir', '')
    # A text-to-video model trained from token shards never runs the tokenizer
    # in a step: it stays out of the train state (multi-task training encodes clips).
    self.from_shards = bool(self.tokens_dir) and trained_tasks(config.model) == ('t2v',)
    self.optimizer = optim.make_optimizer(config.optimizer, config.num_train_steps)
    self.schedule = optim.make_schedule(config.optimizer, config.num_train_steps)
    if self.from_shards:
      self._init_from_shards(model)
    else:
      model = model or load_inference(config, self.workdir)
      # The sampling model on the training mesh; `evaluate` gives it the live weights.
      self.inference = TextToVideo(config, model.tokenizer, model.text_encoder, mesh=mesh)
      self.tokenizer = model.tokenizer
      self.text_encoder = model.text_encoder
      self.latent_shape = self.inference.latent_shape
      self.spec = self.inference.spec
      self.graphdef = self.inference.graphdef
      self._tokenizer_graphdef = self.tokenizer.graphdef
      self.can_sample = True
    self._text_graphdef = self.text_encoder.graphdef
    self._eval_step = jax.jit(self._eval_sums)
    self.text_cache = self._open_text_cache()

  def _init_from_shards(self, model: TextToVideo | None) -> None:
    """`__init__` of a text-to-video run on token shards: no tokenizer in the task.

    The model is sized by the given model's tokenizer, else by the shards'
    metadata. Samples are decoded by the given model's tokenizer, else by
    the run's (`load_tokenizer`, loaded per sampling call); without either
    there are no samples.
    """
    config = self.config
    self.inference = None  # Built per sampling call, around a freshly loaded tokenizer.
    self.tokenizer = None
    self._sample_tokenizer = model.tokenizer if model is not None else None
    if model is not None:
      self.text_encoder = model.text_encoder
      data = config.data
      self.latent_shape = tuple(
        int(s) for s in model.tokenizer.latent_shape(data.num_frames, data.height, data.width)
      )
      codebook_size = model.tokenizer.codebook_size
      self.can_sample = True
    else:
      from videogen.data import token_shards  # noqa: PLC0415  (TFDS, TensorFlow)

      self.latent_shape, codebook_size = token_shards.token_space(self.tokens_dir, config.data)
      copy = self.workdir / inference.TOKENIZER_DIR
      has_copy = (copy / 'config.json').exists()
      self.can_sample = has_copy or bool(config.tokenizer.checkpoint)
      if not has_copy and config.tokenizer.checkpoint and jax.process_index() == 0:
        # Writes the workdir's copy (checked against the shards first); released at once.
        load_tokenizer(config, self.workdir, check=self._check_tokenizer)
      self.text_encoder = load_text_encoder(config, self.workdir)
    self.spec = TransformerSpec.from_config(
      config.model,
      vocab_size=codebook_size,
      latent_shape=self.latent_shape,
      text_dim=self.text_encoder.embed_dim,
      compute_dtype=config.compute_dtype,
    )
    abstract = nnx.eval_shape(lambda: Transformer(self.spec, rngs=nnx.Rngs(0)))
    self.graphdef = nnx.split(abstract, nnx.Param, ...)[0]
    if not self.can_sample and config.sampling.num_prompts > 0:
      logging.info(
        'No periodic samples: training from token shards (%s) without a video tokenizer to '
        'decode them; set config.tokenizer.checkpoint to the tokenizer the shards were made with.',
        self.tokens_dir,
      )

  def _check_tokenizer(self, tokenizer: vq.Tokenizer) -> None:
    """Raises ValueError when `tokenizer` did not make the run's token shards."""
    from videogen.data import token_shards  # noqa: PLC0415

    data = self.config.data
    latent_shape = tokenizer.latent_shape(data.num_frames, data.height, data.width)
    token_shards.check_compatible(self.tokens_dir, latent_shape, tokenizer.codebook_size)

  # --- Task interface --------------------------------------------------------

  def batch_keys(self) -> tuple[str, ...]:
    pre_tokenized = self.config.tokenizer.cache_tokens or self.config.data.get('tokens_dir', '')
    if self.spec.multitask and pre_tokenized:
      raise ValueError(
        'Multi-task training builds conditions from the clips (pixels): set '
        'config.tokenizer.cache_tokens=False and no config.data.tokens_dir.'
      )
    clips = 'tokens' if pre_tokenized else 'video'
    return (clips, *self._text_keys())

  def text_features(self) -> Callable[[list[str]], dict[str, np.ndarray]]:
    """Captions -> `text_emb` + `text_mask` from the embedding cache when it is
    on (the T5 then never runs in the step), else `text_ids` + `text_mask`."""
    if self.text_cache is not None:
      return functools.partial(_cached_embeddings, self.text_cache)
    return functools.partial(_ids, self.text_tokenizer())

  def text_tokenizer(self) -> Callable[[list[str]], tuple[np.ndarray, np.ndarray]]:
    """Prompts -> (ids int32 [B, L], mask int32 [B, L]) for the frozen T5."""
    return functools.partial(
      inference.tokenize_prompts, self.text_encoder, max_length=self.config.text.max_length
    )

  def init_state(self, rng: jax.Array) -> TransformerTrainState:
    model = Transformer(self.spec, rngs=nnx.Rngs(params=rng))
    _, params, model_state = nnx.split(model, nnx.Param, ...)
    return state_lib.new_train_state(
      params,
      model_state,
      self.optimizer,
      self.config.optimizer,
      state_class=TransformerTrainState,
      frozen=self._frozen_states(),
    )

  def _frozen_states(self) -> dict[str, Any]:
    """The frozen encoders' weights of the train state: no tokenizer from token shards."""
    if self.from_shards:
      return {'text': self.text_encoder.state}
    return {'tokenizer': self.tokenizer.state, 'text': self.text_encoder.state}

  def train_step(
    self, state: TransformerTrainState, batch: Mapping[str, jax.Array], rng: jax.Array
  ) -> tuple[TransformerTrainState, dict[str, jax.Array]]:
    if self.spec.multitask:
      return self._multitask_step(state, batch, rng)
    model_config = self.config.model
    tokens = self._tokens(state, batch)
    text_emb = self._batch_text_embeddings(state, batch)
    batch_size = tokens.shape[0]
    drop_key, offset_key, dropout_key, noise_key = jax.random.split(rng, 4)
    text_drop = jax.random.bernoulli(drop_key, model_config.text_dropout_prob, (batch_size,))
    frame_offset = jnp.zeros((batch_size,), jnp.int32)
    if model_config.train_frame_offset:
      room = self.spec.max_latent_frames - self.latent_shape[0]
      frame_offset = jax.random.randint(offset_key, (batch_size,), 0, room + 1)
    inputs = self._corrupt(shift_right(tokens, self.spec.bos_id), noise_key, state.step)
    targets = tokens.reshape(batch_size, -1)

    def loss_fn(params):
      model = nnx.merge(self.graphdef, params, state.model_state)
      logits = model(
        inputs,
        text_emb,
        batch['text_mask'],
        frame_offset=frame_offset,
        text_drop=text_drop,
        dropout_key=dropout_key if model_config.dropout > 0 else None,
      )
      return losses.token_metrics(logits, targets, model_config.z_loss)

    (_, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    fields, update_metrics = state_lib.apply_gradients(
      state, grads, self.optimizer, self.schedule, self.config.optimizer
    )
    metrics.update(update_metrics)
    metrics['text_drop_fraction'] = jnp.mean(text_drop.astype(jnp.float32))
    return state.replace(**fields), metrics

  def _multitask_step(
    self, state: TransformerTrainState, batch: Mapping[str, jax.Array], rng: jax.Array
  ) -> tuple[TransformerTrainState, dict[str, jax.Array]]:
    """`train_step` of a multi-task model: a task per clip, its prefix built from the clip."""
    model_config = self.config.model
    text_emb = self._batch_text_embeddings(state, batch)
    task_key, drop_key, offset_key, dropout_key, noise_key = jax.random.split(rng, 5)
    task_batch = self._task_batch(state, batch, task_key)
    batch_size = task_batch.inputs.shape[0]
    text_drop = jax.random.bernoulli(drop_key, model_config.text_dropout_prob, (batch_size,))
    text_drop = text_drop | task_batch.no_text
    frame_offset = jnp.zeros((batch_size,), jnp.int32)
    if model_config.train_frame_offset:
      room = self.spec.max_latent_frames - self.latent_shape[0]
      frame_offset = jax.random.randint(offset_key, (batch_size,), 0, room + 1)
    inputs = self._corrupt(task_batch.inputs, noise_key, state.step, task_batch.task)

    def loss_fn(params):
      model = nnx.merge(self.graphdef, params, state.model_state)
      logits = model(
        inputs,
        text_emb,
        batch['text_mask'],
        frame_offset=frame_offset,
        text_drop=text_drop,
        dropout_key=dropout_key if model_config.dropout > 0 else None,
        logits_from=self.spec.prefix_length,
      )
      return _task_metrics(logits, task_batch, model_config.z_loss)

    (_, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    fields, update_metrics = state_lib.apply_gradients(
      state, grads, self.optimizer, self.schedule, self.config.optimizer
    )
    metrics.update(update_metrics)
    metrics['text_drop_fraction'] = jnp.mean(text_drop.astype(jnp.float32))
    return state.replace(**fields), metrics

  def _corrupt(
    self, inputs: jax.Array, key: jax.Array, step: jax.Array, task: jax.Array | None = None
  ) -> jax.Array:
    """`inputs` with some of the clip's tokens made random codes (`input_noise`).

    The task prefix and BOS stay clean (sampling reads the condition exactly);
    any clip input token may change, i2v/predict's given frames included.
    """
    task = jnp.zeros(inputs.shape[:1], jnp.int32) if task is None else task
    noise = input_noise(self.config.model, task, step, self.config.num_train_steps)
    return corrupt_inputs(inputs, key, noise, self.spec.prefix_length + 1, self.spec.vocab_size)

  def _task_batch(self, state, batch, key, weights=None) -> tasks.TaskBatch:
    """The batch's task sequences; `weights` (task -> weight) default `config.model.tasks`."""

    def encode(video):
      tokens = vq.encode_fn(self._tokenizer_graphdef, state.frozen['tokenizer'], video)
      return jax.lax.stop_gradient(tokens)

    weights = self.config.model.tasks if weights is None else weights
    return tasks.build_task_batch(
      self.spec, key, batch['video'].astype(jnp.float32), encode, weights
    )

  def step_cost(self, batch_size: int) -> StepCost:
    length = self.spec.seq_length + self.spec.prefix_length
    flops = losses.train_step_flops(
      self.spec,
      batch_size,
      length,
      self.config.text.max_length,
      logits_length=self.spec.seq_length,  # No output layer over a multi-task prefix.
    )
    return StepCost(
      flops=flops,
      tokens=batch_size * length,
      frames=batch_size * self.config.data.num_frames,
    )

  def evaluate(
    self,
    state: TransformerTrainState,
    batches: Iterable[Mapping[str, np.ndarray]],
    *,
    step: int,
    sample_dir: str | None,
  ) -> dict[str, float]:
    """`Task.evaluate`. Training from token shards, the video `batches` are not
    read: the state has no tokenizer to encode them, so the first
    `config.num_eval_batches` batches (-1: all) of the shards' `config.data.eval_split`
    (the same tokens) are evaluated instead. Samples are written when the run
    has a tokenizer to decode them."""
    rules = self.config.logical_axis_rules
    clips = 'tokens' if self.from_shards else 'video'
    keys = (clips, EVAL_MASK, *self._text_keys())
    if self.from_shards:
      batches = self._shard_eval_batches()
    sums = state_lib.EvalSums()
    with sharding.axis_rules(self.mesh, rules):
      for local_batch in batches:
        if EVAL_MASK not in local_batch:  # Batches without padding count every clip.
          local_batch = dict(local_batch, **{EVAL_MASK: np.ones(len(local_batch[clips]))})
        batch = sharding.global_batch(local_batch, self.mesh, rules, keys)
        sums.add(self._eval_step(state, batch))
    results = sums.means()
    if self.config.sampling.num_prompts > 0 and self.can_sample:
      videos, prompts = self.sample_prompts(state)
      if sample_dir is not None:
        path = epath.Path(sample_dir) / f'samples_{step:06d}.gif'
        path.parent.mkdir(parents=True, exist_ok=True)
        video_io.write_grid(
          str(path),
          list(videos),
          fps=self.config.sampling.fps,
          columns=min(4, len(prompts)),
          labels=prompts,
        )
    return results

  def describe(self, state: TransformerTrainState) -> str:
    params = state_lib.count_params(state.params)
    spec = self.spec
    t, h, w = self.latent_shape
    return (
      f'TransformerTask: {self.config.model.variant} transformer, {params:,} parameters '
      f'({spec.num_layers} layers, width {spec.embed_dim}, {spec.num_heads}/{spec.num_kv_heads} '
      f'q/kv heads, {spec.position}); clips of {t}x{h}x{w} = {spec.seq_length} tokens, '
      f'vocab {spec.vocab_size}, text width {spec.text_dim}'
    )

  # --- helpers ---------------------------------------------------------------

  def create_train_iterator(self):
    """The training batches when tokens are pre-computed, else None (video pipeline).

    `config.data.tokens_dir`: the token shards of `videogen tokenize --config`.
    `config.tokenizer.cache_tokens`: the in-job cache, built on first use
    (every process encodes its shard, then all wait for each other).
    """
    if self.tokens_dir:
      from videogen.data import token_shards  # noqa: PLC0415  (TFDS, TensorFlow)

      token_shards.check_compatible(self.tokens_dir, self.latent_shape, self.spec.vocab_size)
      return token_shards.token_shard_iterator(
        self.config,
        self.tokens_dir,
        self.config.data.train_split,
        train=True,
        text_features=self.text_features(),
      )
    if not self.config.tokenizer.cache_tokens:
      return None
    directory = token_cache.cache_directory(self.config, self.workdir)
    token_cache.build_token_cache(self.config, directory, self.tokenizer.device_encoder())
    if jax.process_count() > 1:
      multihost_utils.sync_global_devices('videogen_token_cache')
    return token_cache.token_iterator(self.config, directory, self.text_features())

  def _shard_eval_batches(self) -> Iterable[Mapping[str, np.ndarray]]:
    """This process's eval batches of the token shards (`evaluate`)."""
    from videogen.data import pipeline, token_shards  # noqa: PLC0415

    iterator = token_shards.token_shard_iterator(
      self.config,
      self.tokens_dir,
      self.config.data.eval_split,
      train=False,
      text_features=self.text_features(),
    )
    return pipeline.take_eval_batches(iterator, self.config.num_eval_batches)

  def _tokens(self, state, batch) -> jax.Array:
    if 'tokens' in batch:
      return batch['tokens'].astype(jnp.int32)
    if self.from_shards:
      raise ValueError(
        'Training from token shards (config.data.tokens_dir), the step takes `tokens`, '
        'not clips: there is no video tokenizer in the train state.'
      )
    tokens = vq.encode_fn(self._tokenizer_graphdef, state.frozen['tokenizer'], batch['video'])
    return jax.lax.stop_gradient(tokens).astype(jnp.int32)

  def _open_text_cache(self):
    """The caption embedding cache (`config.text.cache_embeddings`), filled with
    the train and eval captions up front, or None."""
    from videogen.data import pipeline  # noqa: PLC0415

    cache = text.open_embedding_cache(
      self.config.text,
      self.text_encoder,
      workdir=self.workdir,
      writable=jax.process_index() == 0,
    )
    if cache is not None:
      data = self.config.data
      for split in dict.fromkeys((data.train_split, data.eval_split)):
        added = cache.precompute(pipeline.split_captions(self.config, split))
        logging.info(
          'Text embedding cache %s: %d new captions of %s.', cache.directory, added, split
        )
    return cache

  def _text_keys(self) -> tuple[str, str]:
    return ('text_emb' if self.text_cache is not None else 'text_ids', 'text_mask')

  def _batch_text_embeddings(self, state, batch) -> jax.Array:
    if 'text_emb' in batch:
      return batch['text_emb'].astype(jnp.float32)
    return self._text_embeddings(state.frozen['text'], batch['text_ids'], batch['text_mask'])

  def _text_embeddings(self, text_state, ids, mask) -> jax.Array:
    emb = text.encode_fn(self._text_graphdef, text_state, ids, mask)
    return jax.lax.stop_gradient(emb)

  def _eval_sums(self, state, batch) -> dict[str, jax.Array]:
    """Weighted sums of the token metrics over the batch's clips, and their count."""
    if self.spec.multitask:
      return self._multitask_eval_sums(state, batch)
    tokens = self._tokens(state, batch)
    text_emb = self._batch_text_embeddings(state, batch)
    model = nnx.merge(self.graphdef, state_lib.eval_params(state), state.model_state)
    logits = model(shift_right(tokens, self.spec.bos_id), text_emb, batch['text_mask'])
    weights = batch[EVAL_MASK].astype(jnp.float32)
    _, metrics = losses.token_metrics(
      logits, tokens.reshape(tokens.shape[0], -1), self.config.model.z_loss, weights
    )
    count = jnp.sum(weights)
    return {'count': count, **{name: value * count for name, value in metrics.items()}}

  def _multitask_eval_sums(self, state, batch) -> dict[str, jax.Array]:
    """`_eval_sums` of a multi-task model: the training mix of tasks, and each
    trained task on every clip (`<task>/cross_entropy`, `<task>/accuracy`),
    with the same draw of tasks and masks every evaluation (a fixed key)."""
    text_emb = self._batch_text_embeddings(state, batch)
    model = nnx.merge(self.graphdef, state_lib.eval_params(state), state.model_state)
    weights = batch[EVAL_MASK].astype(jnp.float32)
    count = jnp.sum(weights)
    sums = {'count': count}
    for name in (None, *self.spec.tasks):  # None: the training mix.
      task_batch = self._task_batch(
        state, batch, jax.random.key(0), None if name is None else {name: 1.0}
      )
      logits = model(
        task_batch.inputs,
        text_emb,
        batch['text_mask'],
        text_drop=task_batch.no_text,
        logits_from=self.spec.prefix_length,
      )
      _, metrics = _task_metrics(logits, task_batch, self.config.model.z_loss, weights)
      if name is not None:
        metrics = {f'{name}/{k}': metrics[k] for k in ('cross_entropy', 'accuracy')}
      sums.update({k: value * count for k, value in metrics.items()})
    return sums

  def sample_prompts(self, state: TransformerTrainState) -> tuple[np.ndarray, list[str]]:
    """Samples the fixed prompts of `config.sampling` (every process takes part).

    Returns:
      uint8 videos [num_prompts, T, H, W, 3] and the prompts.
    """
    config = self.config.sampling
    prompts = list(config.prompts)[: config.num_prompts]
    model = self._sampling_model(state)
    frames = (
      model.tokenizer.num_frames(config.num_latent_frames) if config.num_latent_frames else None
    )
    return model.generate(prompts, model.default_settings('t2v', num_frames=frames)), prompts

  def _sampling_model(self, state: TransformerTrainState) -> TextToVideo:
    """The text-to-video model with the live weights, on the training mesh.

    Training from token shards, its tokenizer is loaded for this call only
    (sharded over the mesh) and released with the returned model.

    Raises:
      ValueError: training from token shards without a tokenizer.
    """
    params = state_lib.eval_params(state)
    if not self.from_shards:
      return self.inference.with_weights(
        params, tokenizer_state=state.frozen['tokenizer'], text_state=state.frozen['text']
      )
    if not self.can_sample:
      raise ValueError(
        'No video tokenizer to decode samples: this run trains from token shards '
        '(config.data.tokens_dir); set config.tokenizer.checkpoint.'
      )
    if self._sample_tokenizer is None:
      tokenizer = load_tokenizer(
        self.config, self.workdir, check=self._check_tokenizer, mesh=self.mesh
      )
      tokenizer_state = tokenizer.state
    else:
      tokenizer = self._sample_tokenizer
      rules = self.config.logical_axis_rules
      tokenizer_state = jax.device_put(
        tokenizer.state, sharding.tree_shardings(tokenizer.state, self.mesh, rules)
      )
    model = TextToVideo(self.config, tokenizer, self.text_encoder, mesh=self.mesh)
    return model.with_weights(
      params, tokenizer_state=tokenizer_state, text_state=state.frozen['text']
    )


def _task_metrics(logits, task_batch: tasks.TaskBatch, z_loss: float, weights=None):
  """`losses.token_metrics` over the generated tokens of a task sequence (`logits`: theirs,
  from the model's `logits_from=spec.prefix_length`)."""
  return losses.token_metrics(
    logits,
    task_batch.targets,
    z_loss,
    weights,
    token_mask=task_batch.loss_mask,
  )


def _ids(tokenize, captions: list[str]) -> dict[str, np.ndarray]:
  ids, mask = tokenize(captions)
  return {'text_ids': ids, 'text_mask': mask}


def input_noise(
  model_config: ml_collections.ConfigDict, task: jax.Array, step: jax.Array, num_steps: int
) -> jax.Array | float:
  """Each row's probability of a random code at a clip input token in training.

  `model.input_token_noise` on the rows whose task is in
  `model.input_token_noise_tasks` (`task`: int32 [batch] index into
  `tasks.TASKS`), 0 elsewhere; with `model.input_token_noise_decay` it falls
  linearly to 0 at `num_steps`. A plain 0.0 when the noise is off.
  """
  noise = model_config.get('input_token_noise', 0.0)  # Fields absent in older configs.
  if noise <= 0:
    return 0.0
  rows = tasks.rows_of(model_config.get('input_token_noise_tasks', ''), task)
  noise = noise * rows.astype(jnp.float32)
  if model_config.get('input_token_noise_decay', False):
    noise = noise * optax.linear_schedule(1.0, 0.0, max(num_steps, 1))(step)
  return noise


def _cached_embeddings(cache, captions: list[str]) -> dict[str, np.ndarray]:
  embeddings, mask = cache.lookup(captions)
  return {'text_emb': embeddings, 'text_mask': np.asarray(mask, np.int32)}
