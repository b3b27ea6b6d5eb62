"""The transformer training stage: text-conditioned next-token prediction of video tokens.

Inside the jitted step the frozen video tokenizer turns clips into tokens and
the frozen T5 turns caption ids into embeddings (both under stop_gradient;
their weights ride in the train state as `frozen`, so they are sharded
arguments rather than compile-time constants). Captions are dropped with
probability `model.text_dropout_prob` for classifier-free guidance.
"""

from __future__ import annotations

import dataclasses
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

from videogen.data import video_io
from videogen.parallel import sharding
from videogen.train import optim
from videogen.train.task import StepCost, Task, TrainState
from videogen.transformer import losses, sampling, token_cache
from videogen.transformer.layers import TransformerSpec
from videogen.transformer.model import Transformer, shift_right


@flax.struct.dataclass
class TransformerTrainState(TrainState):
  """TrainState plus the frozen encoders' weights.

  Attributes:
    frozen: {'tokenizer': video tokenizer state, 'text': T5 state}; never
      updated (gradients are stopped), carried so the step takes them as
      sharded arguments.
  """

  frozen: Any


@dataclasses.dataclass
class FrozenModels:
  """The frozen encoders the stage uses, with their pure functions.

  Attributes:
    tokenizer: has `graphdef`, `state`, `encode(video)`, `codebook_size`,
      `latent_shape(num_frames, height, width)` and `num_frames(latent_t)`.
    encode_video: (graphdef, state, video [B, T, H, W, 3] in [-1, 1]) -> int32 [B, t, h, w].
    decode_tokens: (graphdef, state, tokens [B, t, h, w]) -> float [B, T, H, W, 3].
    text_encoder: has `graphdef`, `state`, `embed_dim` and `tokenizer(texts,
      max_length) -> (ids, mask)`.
    encode_text: (graphdef, state, ids [B, L], mask [B, L]) -> float32 [B, L, D].
  """

  tokenizer: Any
  encode_video: Callable[..., jax.Array]
  decode_tokens: Callable[..., jax.Array]
  text_encoder: Any
  encode_text: Callable[..., jax.Array]


def load_frozen_models(
  config: ml_collections.ConfigDict, workdir: str | epath.PathLike
) -> FrozenModels:
  """The tokenizer of `config.tokenizer.checkpoint` and the T5 of `config.text`.

  The offline default T5 is built once (by process 0) in
  `<workdir>/text_encoder/` from the training captions; afterwards it loads
  without the dataset. Both encoders load onto each host's first device:
  `init_state` hands their weights to the sharded train state.
  """
  from videogen import text, vq  # noqa: PLC0415  (heavy; only for real runs)
  from videogen.data import pipeline  # noqa: PLC0415
  from videogen.text import default as default_t5  # noqa: PLC0415

  if not config.tokenizer.checkpoint:
    raise ValueError('config.tokenizer.checkpoint must name the trained tokenizer workdir.')
  tokenizer = vq.Tokenizer.load(config.tokenizer.checkpoint)
  default_dir = epath.Path(text.encoder_dir(config.text, workdir))
  if not config.text.path and not (default_dir / 'config.json').exists():
    if jax.process_index() == 0:
      captions = pipeline.split_captions(config, config.data.train_split)
      default_t5.ensure_default_from_config(default_dir, captions, config.text.default_model)
    if jax.process_count() > 1:
      multihost_utils.sync_global_devices('videogen_default_t5')
  encoder = text.load_text_encoder(config.text, workdir=workdir)
  return FrozenModels(tokenizer, vq.encode_fn, vq.decode_fn, encoder, text.encode_fn)


class TransformerTask(Task):
  """Trains `Transformer` on frozen-tokenizer tokens of captioned clips."""

  def __init__(
    self,
    config: ml_collections.ConfigDict,
    mesh: jax.sharding.Mesh,
    *,
    workdir: str | epath.PathLike,
    frozen: FrozenModels | None = None,
  ):
    super().__init__(config, mesh)
    self.workdir = epath.Path(workdir)
    self.frozen = frozen or load_frozen_models(config, self.workdir)
    data = config.data
    self.latent_shape = tuple(
      int(s) for s in self.frozen.tokenizer.latent_shape(data.num_frames, data.height, data.width)
    )
    self.spec = TransformerSpec.from_config(
      config.model,
      vocab_size=self.frozen.tokenizer.codebook_size,
      latent_shape=self.latent_shape,
      text_dim=self.frozen.text_encoder.embed_dim,
      compute_dtype=config.compute_dtype,
    )
    self.optimizer = optim.make_optimizer(config.optimizer, config.num_train_steps)
    abstract = nnx.eval_shape(lambda: Transformer(self.spec, rngs=nnx.Rngs(0)))
    self.graphdef = nnx.split(abstract, nnx.Param, ...)[0]
    self._tokenizer_graphdef = self.frozen.tokenizer.graphdef
    self._text_graphdef = self.frozen.text_encoder.graphdef
    self._eval_step = jax.jit(self._eval_metrics)
    self._encode_prompts = jax.jit(self._text_embeddings)
    self._decode = jax.jit(
      lambda state, tokens: self.frozen.decode_tokens(self._tokenizer_graphdef, state, tokens)
    )
    self.text_cache = self._open_text_cache()

  # --- Task interface --------------------------------------------------------

  def batch_keys(self) -> tuple[str, ...]:
    clips = 'tokens' if self.config.tokenizer.cache_tokens else 'video'
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
      _tokenize, self.frozen.text_encoder.tokenizer, self.config.text.max_length
    )

  def init_state(self, rng: jax.Array) -> TransformerTrainState:
    model = Transformer(self.spec, rngs=nnx.Rngs(params=rng))
    _, params, model_state = nnx.split(model, nnx.Param, ...)
    ema = jax.tree.map(jnp.copy, params) if self.config.optimizer.ema_decay > 0 else None
    return TransformerTrainState(
      step=jnp.zeros((), jnp.int32),
      params=params,
      opt_state=self.optimizer.init(params),
      model_state=model_state,
      ema_params=ema,
      frozen={
        'tokenizer': self.frozen.tokenizer.state,
        'text': self.frozen.text_encoder.state,
      },
    )

  def train_step(
    self, state: TransformerTrainState, batch: Mapping[str, jax.Array], rng: jax.Array
  ) -> tuple[TransformerTrainState, dict[str, jax.Array]]:
    model_config = self.config.model
    tokens = self._tokens(state, batch)
    text_emb = self._batch_text_embeddings(state, batch)
    batch_size = tokens.shape[0]
    drop_key, offset_key, dropout_key = jax.random.split(rng, 3)
    text_drop = jax.random.bernoulli(drop_key, model_config.text_dropout_prob, (batch_size,))
    frame_offset = jnp.zeros((batch_size,), jnp.int32)
    if model_config.train_frame_offset:
      room = self.spec.max_latent_frames - self.latent_shape[0]
      frame_offset = jax.random.randint(offset_key, (batch_size,), 0, room + 1)
    inputs = shift_right(tokens, self.spec.bos_id)
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
    updates, opt_state = self.optimizer.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    ema = state.ema_params
    if ema is not None:
      ema = optim.update_ema(ema, params, self.config.optimizer.ema_decay, state.step)
    metrics['grad_norm'] = optax.global_norm(grads)
    metrics['text_drop_fraction'] = jnp.mean(text_drop.astype(jnp.float32))
    new_state = state.replace(
      step=state.step + 1, params=params, opt_state=opt_state, ema_params=ema
    )
    return new_state, metrics

  def step_cost(self, batch_size: int) -> StepCost:
    length = self.spec.seq_length
    flops = losses.train_step_flops(self.spec, batch_size, length, self.config.text.max_length)
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
    rules = self.config.logical_axis_rules
    keys = ('video', *self._text_keys())
    totals: dict[str, float] = {}
    count = 0
    with sharding.axis_rules(self.mesh, rules):
      for local_batch in batches:
        batch = sharding.global_batch(local_batch, self.mesh, rules, keys)
        for name, value in self._eval_step(state, batch).items():
          totals[name] = totals.get(name, 0.0) + float(value)
        count += 1
    results = {name: value / count for name, value in totals.items()} if count else {}
    if self.config.sampling.num_prompts > 0:
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
    params = sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(state.params))
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
    """The training batches when tokens are cached, else None (video pipeline).

    Builds the cache on first use (every process encodes its shard, then all
    wait for each other).
    """
    if not self.config.tokenizer.cache_tokens:
      return None
    directory = token_cache.cache_directory(self.config, self.workdir)
    token_cache.build_token_cache(self.config, directory, self.frozen.tokenizer.encode)
    if jax.process_count() > 1:
      multihost_utils.sync_global_devices('videogen_token_cache')
    return token_cache.token_iterator(self.config, directory, self.text_features())

  def _tokens(self, state, batch) -> jax.Array:
    if 'tokens' in batch:
      return batch['tokens'].astype(jnp.int32)
    tokens = self.frozen.encode_video(
      self._tokenizer_graphdef, state.frozen['tokenizer'], batch['video']
    )
    return jax.lax.stop_gradient(tokens).astype(jnp.int32)

  def _open_text_cache(self):
    """The caption embedding cache (`config.text.cache_embeddings`), filled with
    the train and eval captions up front, or None."""
    from videogen import text  # noqa: PLC0415
    from videogen.data import pipeline  # noqa: PLC0415

    cache = text.open_embedding_cache(
      self.config.text,
      self.frozen.text_encoder,
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
    emb = self.frozen.encode_text(self._text_graphdef, text_state, ids, mask)
    return jax.lax.stop_gradient(emb)

  def _eval_metrics(self, state, batch) -> dict[str, jax.Array]:
    params = state.ema_params if state.ema_params is not None else state.params
    tokens = self._tokens(state, batch)
    text_emb = self._batch_text_embeddings(state, batch)
    model = nnx.merge(self.graphdef, params, state.model_state)
    logits = model(shift_right(tokens, self.spec.bos_id), text_emb, batch['text_mask'])
    _, metrics = losses.token_metrics(
      logits, tokens.reshape(tokens.shape[0], -1), self.config.model.z_loss
    )
    return metrics

  def sample_prompts(self, state: TransformerTrainState) -> tuple[np.ndarray, list[str]]:
    """Samples the fixed prompts of `config.sampling` (every process takes part).

    Returns:
      uint8 videos [num_prompts, T, H, W, 3] and the prompts.
    """
    config = self.config.sampling
    prompts = list(config.prompts)[: config.num_prompts]
    ids, mask = self.text_tokenizer()(prompts)
    replicated = sharding.replicated(self.mesh)
    ids, mask = jax.device_put(ids, replicated), jax.device_put(mask, replicated)
    text_emb = self._encode_prompts(state.frozen['text'], ids, mask)
    params = state.ema_params if state.ema_params is not None else state.params
    tokens = sampling.sample_tokens(
      (self.graphdef, params),
      text_emb,
      mask,
      latent_shape=self.latent_shape,
      num_latent_frames=config.num_latent_frames or None,
      cfg_scale=None if config.cfg_scale == 1.0 else config.cfg_scale,
      temperature=config.temperature,
      top_k=config.top_k,
      top_p=config.top_p,
      rng=jax.random.key(config.seed),
      window_prefix_frames=config.window_prefix_frames,
    )
    video = self._decode(state.frozen['tokenizer'], tokens)
    video = np.asarray(multihost_utils.process_allgather(video, tiled=True))
    return video_io.to_uint8(video), prompts


def _ids(tokenize, captions: list[str]) -> dict[str, np.ndarray]:
  ids, mask = tokenize(captions)
  return {'text_ids': ids, 'text_mask': mask}


def _cached_embeddings(cache, captions: list[str]) -> dict[str, np.ndarray]:
  embeddings, mask = cache.lookup(captions)
  return {'text_emb': embeddings, 'text_mask': np.asarray(mask, np.int32)}


def _tokenize(tokenizer, max_length: int, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
  ids, mask = tokenizer(texts, max_length)
  return np.asarray(ids, np.int32), np.asarray(mask, np.int32)
