"""Sampling video tokens from the transformer.

KV-cached decoding: the text K/V of every layer are projected once, the
self-attention cache is preallocated for the whole window, fixed prefix tokens
(image-to-video, continuation) are prefilled in one pass, and the remaining
positions run in one `jax.lax.fori_loop`, jitted once per window shape.
Classifier-free guidance puts the conditional and unconditional (null text)
rows in one batch. Videos longer than the training window are sampled window
by window: the last `window_prefix_frames` latent frames become the prefix of
the next window, whose positions continue past the training length.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from flax import nnx

from videogen.transformer import tasks
from videogen.transformer.model import Transformer, shift_right, unstack_layers


def filter_logits(logits: jax.Array, top_k: int = 0, top_p: float = 1.0) -> jax.Array:
  """Masks (to -inf) tokens outside the top-k and the top-p nucleus.

  Args:
    logits: float32 [batch, vocab], already divided by the temperature.
    top_k: keep the k largest; 0 keeps all.
    top_p: keep the smallest set of most likely tokens whose mass reaches
      top_p (at least one); 1 keeps all.

  Returns:
    float32 [batch, vocab].
  """
  if top_k > 0:
    kth_largest = jax.lax.top_k(logits, top_k)[0][:, -1:]
    logits = jnp.where(logits < kth_largest, -jnp.inf, logits)
  if top_p < 1.0:
    probs = jax.nn.softmax(logits, axis=-1)
    sorted_probs = -jnp.sort(-probs, axis=-1)
    mass_before = jnp.cumsum(sorted_probs, axis=-1) - sorted_probs
    kept = jnp.sum(mass_before < top_p, axis=-1, keepdims=True)
    cutoff = jnp.take_along_axis(sorted_probs, kept - 1, axis=-1)
    logits = jnp.where(probs < cutoff, -jnp.inf, logits)
  return logits


def sample_logits(
  logits: jax.Array,
  key: jax.Array,
  temperature: jax.Array,
  top_k: int = 0,
  top_p: float = 1.0,
) -> jax.Array:
  """Draws one token per row; temperature 0 is greedy (argmax).

  Args:
    logits: float32 [batch, vocab].
    key: PRNG key.
    temperature: scalar.

  Returns:
    int32 [batch].
  """
  greedy = jnp.argmax(logits, axis=-1)
  scaled = filter_logits(logits / jnp.maximum(temperature, 1e-6), top_k, top_p)
  sampled = jax.random.categorical(key, scaled, axis=-1)
  return jnp.where(temperature > 0, sampled, greedy).astype(jnp.int32)


def chosen_log_prob(
  logits: jax.Array,
  token: jax.Array,
  temperature: jax.Array,
  top_k: int = 0,
  top_p: float = 1.0,
) -> jax.Array:
  """The log-probability `sample_logits` drew `token` with: float32 [batch].

  Args:
    logits: float32 [batch, vocab] (after guidance).
    token: int32 [batch].
    temperature, top_k, top_p: as for `sample_logits`.
  """
  scaled = filter_logits(logits / jnp.maximum(temperature, 1e-6), top_k, top_p)
  log_probs = jax.nn.log_softmax(scaled, axis=-1)
  return jnp.take_along_axis(log_probs, token[:, None], axis=-1)[:, 0]


def guide(logits: jax.Array, cfg_scale: jax.Array) -> jax.Array:
  """Classifier-free guidance over [cond; uncond] rows: uncond + s * (cond - uncond).

  Written as cond + (s - 1) * (cond - uncond), which is exactly `cond` at s = 1.
  """
  cond, uncond = jnp.split(logits, 2, axis=0)
  return cond + (cfg_scale - 1.0) * (cond - uncond)


def _as_graphdef_state(model_or_state):
  if isinstance(model_or_state, Transformer):
    graphdef, state = nnx.split(model_or_state)
    return graphdef, state
  graphdef, state = model_or_state
  return graphdef, state


@functools.partial(
  jax.jit,
  static_argnames=(
    'graphdef',
    'length',
    'top_k',
    'top_p',
    'guided',
    'use_cache',
    'return_log_probs',
    'no_text',
  ),
)
def sample_window(
  graphdef,
  state,
  text_emb,
  text_mask,
  prefix,
  frame_offset,
  rng,
  cfg_scale,
  temperature,
  *,
  length: int,
  top_k: int,
  top_p: float,
  guided: bool,
  use_cache: bool,
  return_log_probs: bool = False,
  task_prefix=None,
  no_text: bool = False,
):
  """Samples one window of tokens (jitted; `sample_tokens` calls it per window).

  Args:
    graphdef, state: the split transformer.
    text_emb: float [batch, text_length, text_dim]; text_mask: [batch, text_length].
    prefix: int32 [batch, K] fixed first tokens of the window (K may be 0).
    frame_offset: int32 scalar, latent frame index of the window's start.
    rng: PRNG key; position i samples with fold_in(rng, i).
    cfg_scale: float32 scalar.
    temperature: float32 [length], the softmax temperature at each window position.
    length: tokens in the window (static).
    top_k, top_p: static filters (0 / 1.0 = off).
    guided: add null-text rows and apply classifier-free guidance.
    use_cache: KV-cached decoding, or a full forward pass per token.
    return_log_probs: also return the log-probability each token was drawn
      with (0 at the prefix).
    task_prefix: int32 [batch, spec.prefix_length], task token + canvas of a
      multi-task model (`tasks.task_prefix`), placed before the window; None
      for a text-to-video model.
    no_text: every row sees the null text (the `uncond` task; not guided).

  Returns:
    int32 [batch, length], starting with `prefix`; with `return_log_probs`,
    also float32 [batch, length].
  """
  model = nnx.merge(graphdef, state)
  spec = model.spec
  if use_cache:
    # Per-layer weights, sliced once here rather than at every decoded token.
    graphdef, state = nnx.split(unstack_layers(model))
  batch, prefix_length = prefix.shape
  drop = None
  if guided:
    text_emb = jnp.concatenate([text_emb, text_emb], axis=0)
    text_mask = jnp.concatenate([text_mask, text_mask], axis=0)
    drop = jnp.arange(2 * batch) >= batch
  elif no_text:
    drop = jnp.ones((batch,), bool)
  rows = text_emb.shape[0]
  offset = jnp.full((rows,), frame_offset, jnp.int32)
  tokens = jnp.zeros((batch, length), jnp.int32).at[:, :prefix_length].set(prefix.astype(jnp.int32))
  log_probs = jnp.zeros((batch, length), jnp.float32)

  def duplicate(x):
    return jnp.concatenate([x, x], axis=0) if guided else x

  # Sequence positions before the window: the task prefix (multi-task models).
  task_length = 0 if task_prefix is None else task_prefix.shape[1]

  if task_prefix is not None:  # Inpaint/outpaint copy the tokens outside their mask.
    canvas_tokens, keep = tasks.kept_tokens(spec, task_prefix)
    canvas_tokens, keep = canvas_tokens[:, :length], keep[:, :length]

  def choose(logits, index, rng, tokens, log_probs):
    if guided:
      logits = guide(logits, cfg_scale)
    position_temperature = temperature[index]
    chosen = sample_logits(
      logits, jax.random.fold_in(rng, index), position_temperature, top_k, top_p
    )
    if task_prefix is not None:
      kept = jax.lax.dynamic_index_in_dim(keep, index, 1, keepdims=False)
      given = jax.lax.dynamic_index_in_dim(canvas_tokens, index, 1, keepdims=False)
      chosen = jnp.where(kept, given, chosen)
    tokens = jax.lax.dynamic_update_index_in_dim(tokens, chosen, index, 1)
    if return_log_probs:
      log_prob = chosen_log_prob(logits, chosen, position_temperature, top_k, top_p)
      log_probs = jax.lax.dynamic_update_index_in_dim(log_probs, log_prob, index, 1)
    return tokens, log_probs

  def result(tokens, log_probs):
    return (tokens, log_probs) if return_log_probs else tokens

  if use_cache:
    context, context_mask = model.encode_text(text_emb, text_mask, drop)
    if task_prefix is None:
      cache = model.init_cache(context, context_mask, length, offset)
      if prefix_length:
        _, cache = model.prefill(duplicate(shift_right(prefix, spec.bos_id)), cache)
    else:
      cache = model.init_cache(context, context_mask, task_length + length, offset)
      known = task_prefix.astype(jnp.int32)
      if prefix_length:
        known = jnp.concatenate([known, shift_right(prefix, spec.bos_id)], axis=1)
      _, cache = model.prefill(duplicate(known), cache)

    def step(index, carry):
      tokens, log_probs, cache, state = carry
      model = nnx.merge(graphdef, state)
      previous = jax.lax.dynamic_index_in_dim(tokens, jnp.maximum(index - 1, 0), 1, keepdims=False)
      token = jnp.where(index == 0, spec.bos_id, previous)
      logits, cache = model.decode_step(duplicate(token), task_length + index, cache)
      tokens, log_probs = choose(logits, index, rng, tokens, log_probs)
      return tokens, log_probs, cache, state

    # The parameters ride in the carry: NNX transforms inside the body refuse
    # Variables captured from an outer trace.
    tokens, log_probs, _, _ = jax.lax.fori_loop(
      prefix_length, length, step, (tokens, log_probs, cache, state)
    )
    return result(tokens, log_probs)

  def full_step(index, carry):
    tokens, log_probs, state = carry
    model = nnx.merge(graphdef, state)
    # Causality makes positions past `index` irrelevant: one full pass per token.
    inputs = shift_right(tokens, spec.bos_id)
    if task_prefix is not None:
      inputs = jnp.concatenate([task_prefix.astype(jnp.int32), inputs], axis=1)
    logits = model(
      duplicate(inputs),
      text_emb,
      text_mask,
      frame_offset=offset,
      text_drop=drop,
    )
    logits = jax.lax.dynamic_index_in_dim(logits, task_length + index, 1, keepdims=False)
    tokens, log_probs = choose(logits, index, rng, tokens, log_probs)
    return tokens, log_probs, state

  tokens, log_probs, _ = jax.lax.fori_loop(
    prefix_length, length, full_step, (tokens, log_probs, state)
  )
  return result(tokens, log_probs)


def sample_tokens(
  model_or_state,
  text_emb: jax.Array,
  text_mask: jax.Array,
  *,
  latent_shape: tuple[int, int, int],
  num_latent_frames: int | None = None,
  prefix_tokens: jax.Array | None = None,
  cfg_scale: float | None = None,
  temperature: float = 1.0,
  first_frame_temperature: float | None = None,
  top_k: int = 0,
  top_p: float = 1.0,
  rng: jax.Array,
  window_prefix_frames: int = 1,
  use_cache: bool = True,
  return_log_probs: bool = False,
  task_prefix: jax.Array | None = None,
  no_text: bool = False,
) -> jax.Array | tuple[jax.Array, jax.Array]:
  """Samples token videos for text prompts.

  Args:
    model_or_state: a `Transformer`, or its `(graphdef, state)` from `nnx.split`.
    text_emb: float [batch, text_length, text_dim] text-encoder outputs.
    text_mask: [batch, text_length], nonzero at real text tokens.
    latent_shape: (t, h, w): the window of latent frames sampled at once
      (normally the training clip's grid).
    num_latent_frames: total latent frames; default t. More than t slides the
      window (positions must stay below the model's max_latent_frames).
    prefix_tokens: int [batch, m, h, w] tokens of the first m latent frames,
      kept fixed (image-to-video, continuation); m < t and m < num_latent_frames.
    cfg_scale: classifier-free guidance scale s (logits = uncond + s * (cond -
      uncond)); None samples from the conditional model alone.
    temperature: softmax temperature; 0 = greedy.
    first_frame_temperature: the temperature of the clip's first latent frame
      (where objects are placed) when it is sampled, not given; None = `temperature`.
    top_k: sample among the k most likely tokens; 0 = all.
    top_p: nucleus mass; 1 = off.
    rng: PRNG key; the token at each position uses fold_in(key, position).
    window_prefix_frames: latent frames carried from one window to the next.
    use_cache: False recomputes the full forward pass for every token (the
      reference the KV cache is tested and benchmarked against).
    return_log_probs: also return the log-probability each token was drawn
      with under the filtered, tempered (and guided) distribution; 0 at
      prefix tokens (tests compare it with the training forward pass).
    task_prefix: int32 [batch, 1 + t*h*w], the task token and conditioning
      canvas of a multi-task model (`tasks.task_prefix`), before every
      window; required by multi-task models, None for text-to-video ones.
    no_text: sample with the null text in every row (the `uncond` task;
      needs cfg_scale None).

  Returns:
    int32 [batch, num_latent_frames, h, w]; with `return_log_probs`, also
    float32 [batch, num_latent_frames, h, w].
  """
  graphdef, state = _as_graphdef_state(model_or_state)
  spec = graphdef_spec(graphdef, state)
  window, height, width = (int(s) for s in latent_shape)
  per_frame = height * width
  total = int(num_latent_frames or window)
  if total > spec.max_latent_frames:
    raise ValueError(
      f"{total} latent frames exceed the model's max_latent_frames={spec.max_latent_frames}"
    )
  batch = text_emb.shape[0]
  if spec.multitask != (task_prefix is not None):
    raise ValueError(
      'A multi-task model needs task_prefix (tasks.task_prefix); a text-to-video one takes none.'
    )
  if task_prefix is not None and task_prefix.shape != (batch, spec.prefix_length):
    raise ValueError(
      f'task_prefix must be [{batch}, {spec.prefix_length}], got {task_prefix.shape}'
    )
  if no_text and cfg_scale is not None:
    raise ValueError('no_text (unconditional) samples take no guidance (cfg_scale None).')
  if prefix_tokens is None:
    prefix = jnp.zeros((batch, 0, height, width), jnp.int32)
  else:
    prefix = jnp.asarray(prefix_tokens, jnp.int32)
    if (
      prefix.shape[0] != batch
      or prefix.shape[2:] != (height, width)
      or prefix.shape[1] >= min(window, total)
    ):
      raise ValueError(
        f'prefix_tokens must be [{batch}, m < {min(window, total)}, {height}, {width}], '
        f'got {prefix.shape}'
      )
  if total > window and not 0 < window_prefix_frames < window:
    raise ValueError(f'window_prefix_frames must be in [1, {window}), got {window_prefix_frames}')
  settings = dict(
    top_k=int(top_k),
    top_p=float(top_p),
    guided=cfg_scale is not None,
    use_cache=use_cache,
    return_log_probs=return_log_probs,
  )
  if task_prefix is not None:
    settings.update(task_prefix=jnp.asarray(task_prefix, jnp.int32), no_text=no_text)
  guidance = jnp.float32(1.0 if cfg_scale is None else cfg_scale)
  first_temperature = temperature if first_frame_temperature is None else first_frame_temperature

  frames = prefix
  frame_log_probs = jnp.zeros(prefix.shape, jnp.float32)
  start = 0
  while True:
    window_frames = min(window, total - start)
    known = frames[:, start:]
    # Per position: only the first window holds the clip's first latent frame.
    position = jnp.arange(window_frames * per_frame)
    first = (position < per_frame) & (start == 0)
    temperatures = jnp.where(first, first_temperature, temperature).astype(jnp.float32)
    out = sample_window(
      graphdef,
      state,
      text_emb,
      text_mask,
      known.reshape(batch, -1),
      jnp.int32(start),
      jax.random.fold_in(rng, start),
      guidance,
      temperatures,
      length=window_frames * per_frame,
      **settings,
    )
    if return_log_probs:
      out, log_probs = out
      # Frames carried over from the last window keep the log-probs they were drawn with.
      kept = known.shape[1]
      log_probs = log_probs.reshape(batch, window_frames, height, width)[:, kept:]
      frame_log_probs = jnp.concatenate([frame_log_probs[:, : start + kept], log_probs], axis=1)
    frames = jnp.concatenate(
      [frames[:, :start], out.reshape(batch, window_frames, height, width)], axis=1
    )
    if start + window_frames >= total:
      return (frames, frame_log_probs) if return_log_probs else frames
    start = start + window_frames - window_prefix_frames


@functools.partial(jax.jit, static_argnames=('graphdef', 'guided', 'count'))
def likeliest_tokens(
  graphdef,
  state,
  text_emb,
  text_mask,
  targets,
  cfg_scale,
  task_prefix=None,
  *,
  guided: bool,
  count: int = 1,
):
  """The `count` most likely tokens at every clip position given the target's
  earlier tokens, most likely first, and their probabilities. The first is what
  greedy sampling draws when every earlier token is right (teacher forcing);
  refinement tries them all.

  One forward pass over [task prefix] BOS targets[:-1], guided as sampling is;
  tokens the sampler keeps (inpaint/outpaint's unmasked canvas) are the canvas's.
  Greedy `sample_tokens` output fed back as `targets` comes back unchanged as the
  first (i2v/predict's given frames aside: the sampler fixes them, this does not).

  Args:
    graphdef, state: the split transformer.
    text_emb, text_mask: as for `sample_tokens`.
    targets: int32 [batch, t*h*w], the clip's tokens in raster order.
    cfg_scale: float32 scalar (used when `guided`).
    task_prefix: int32 [batch, spec.prefix_length] (multi-task models), else None.
    guided: add null-text rows and apply classifier-free guidance.
    count: tokens per position.

  Returns:
    (tokens int32 [batch, t*h*w, count], their guided probabilities float32
    [batch, t*h*w, count]; a kept canvas token's is 1).
  """
  model = nnx.merge(graphdef, state)
  spec = model.spec
  batch = targets.shape[0]
  inputs = shift_right(targets.astype(jnp.int32), spec.bos_id)
  if task_prefix is not None:
    inputs = jnp.concatenate([task_prefix.astype(jnp.int32), inputs], axis=1)
  drop = None
  if guided:
    inputs = jnp.concatenate([inputs, inputs], axis=0)
    text_emb = jnp.concatenate([text_emb, text_emb], axis=0)
    text_mask = jnp.concatenate([text_mask, text_mask], axis=0)
    drop = jnp.arange(2 * batch) >= batch
  logits = model(inputs, text_emb, text_mask, text_drop=drop, logits_from=spec.prefix_length)
  if guided:
    logits = guide(logits, cfg_scale)
  top, chosen = jax.lax.top_k(jax.nn.log_softmax(logits.astype(jnp.float32)), count)
  probs = jnp.exp(top)
  if task_prefix is not None:
    canvas, keep = tasks.kept_tokens(spec, task_prefix)
    chosen = jnp.where(keep[..., None], canvas[..., None], chosen)
    probs = jnp.where(keep[..., None], 1.0, probs)
  return chosen.astype(jnp.int32), probs


def graphdef_spec(graphdef, state):
  """The `TransformerSpec` a split model was built with."""
  return nnx.merge(graphdef, state).spec


def cached_logits(
  model: Transformer,
  inputs: jax.Array,
  text_emb: jax.Array,
  text_mask: jax.Array,
  *,
  prefill_length: int,
  frame_offset: jax.Array | None = None,
) -> jax.Array:
  """Teacher-forced logits through the KV cache (prefill, then one step per position).

  Matches `model(inputs, ...)` up to float error; tests compare the two.

  Args:
    model: the transformer.
    inputs: int32 [batch, length] (`shift_right` of the tokens).
    text_emb, text_mask: as for `model`.
    prefill_length: positions run by `prefill` (>= 1); the rest decode one by one.
    frame_offset: int32 [batch]; default 0.

  Returns:
    float32 [batch, length, vocab_size].
  """
  batch, length = inputs.shape
  if frame_offset is None:
    frame_offset = jnp.zeros((batch,), jnp.int32)
  model = unstack_layers(model)
  context, context_mask = model.encode_text(text_emb, text_mask)
  cache = model.init_cache(context, context_mask, length, frame_offset)
  prefill_logits, cache = model.prefill(inputs[:, :prefill_length], cache)

  def step(carry, index):
    cache = carry
    token = jax.lax.dynamic_index_in_dim(inputs, index, 1, keepdims=False)
    logits, cache = model.decode_step(token, index, cache)
    return cache, logits

  _, step_logits = jax.lax.scan(step, cache, jnp.arange(prefill_length, length))
  return jnp.concatenate([prefill_logits, jnp.swapaxes(step_logits, 0, 1)], axis=1)
