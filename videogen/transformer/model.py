"""The autoregressive space-time transformer over video tokens.

A decoder-only model over one clip's tokens in (t, h, w) raster order,
preceded by a BOS token, conditioned on T5 text embeddings through
cross-attention. Position i of the input sequence holds token i - 1 (BOS at
0) and the (t, h, w) coordinates of token i, the one it predicts. Positions
are factorised (3D RoPE or three learned tables), so a window of latent frames
can sit anywhere in [0, max_latent_frames), beyond the training length.

A multi-task model (`spec.multitask`) reads `spec.prefix_length` more
positions first: a task token and a canvas of conditioning tokens aligned
with the clip (`videogen.transformer.tasks`); its input table has the mask
and task tokens too. A text-to-video model has neither. On the rows of the
tasks in `spec.copy_tasks`, a learnt gate per clip position adds to the logit
of the canvas token at the same (t, h, w) (a pointer-style copy path), so
reproducing the condition is one step away.
"""

from __future__ import annotations

import dataclasses

import flax.struct
import jax
import jax.numpy as jnp
from flax import nnx

from videogen.parallel import compilation, sharding
from videogen.transformer import layers
from videogen.transformer.layers import BlockInputs, TransformerSpec


@flax.struct.dataclass
class DecodeCache:
  """Decoding state: self-attention K/V of the filled positions and text K/V.

  Attributes:
    key: per layer [batch, kv_heads, max_length, head_dim]: heads before
      length, so one query attends the cache without transposing it.
    value: per layer, as `key`.
    cross_key: per layer [batch, text_length, kv_heads, head_dim], projected once.
    cross_value: per layer, as `cross_key`.
    context_mask: bool [batch, text_length].
    frame_offset: int32 [batch], latent frame index of the window's first frame.
    prefix: int32 [batch, spec.prefix_length], the task token and canvas as
      they are filled (models with `spec.copy_tasks`; None otherwise).
  """

  key: tuple[jax.Array, ...]
  value: tuple[jax.Array, ...]
  cross_key: tuple[jax.Array, ...]
  cross_value: tuple[jax.Array, ...]
  context_mask: jax.Array
  frame_offset: jax.Array
  prefix: jax.Array | None = None


def shift_right(tokens: jax.Array, bos_id: int) -> jax.Array:
  """Model inputs for teacher forcing.

  Args:
    tokens: int32 [batch, t, h, w] (or already flat [batch, length]).
    bos_id: the BOS token id (`spec.bos_id`).

  Returns:
    int32 [batch, length]: BOS followed by all tokens but the last.
  """
  flat = tokens.reshape(tokens.shape[0], -1)
  bos = jnp.full((flat.shape[0], 1), bos_id, flat.dtype)
  return jnp.concatenate([bos, flat[:, :-1]], axis=1)


def corrupt_inputs(
  inputs: jax.Array, key: jax.Array, prob: float | jax.Array, start: int, vocab_size: int
) -> jax.Array:
  """Teacher-forced inputs with each clip token replaced by a random code with `prob`.

  Taming Transformers' `pkeep` (here 1 - prob): in training the model reads some wrong
  earlier tokens, as it does when sampling, and still has to predict the clean ones.

  Args:
    inputs: int32 [batch, length] model inputs.
    key: PRNG key.
    prob: replacement probability, a scalar or one per row ([batch]); a scalar 0
      returns `inputs`.
    start: the first position that may change (the clip's first token after BOS and
      any task prefix); earlier ones never do.
    vocab_size: the codebook size; replacements are drawn uniformly from it.
  """
  if isinstance(prob, (int, float)) and prob <= 0:
    return inputs
  replace_key, code_key = jax.random.split(key)
  position = jnp.arange(inputs.shape[1])[None, :]
  row_prob = jnp.broadcast_to(jnp.asarray(prob, jnp.float32), inputs.shape[:1])[:, None]
  replace = jax.random.bernoulli(replace_key, row_prob, inputs.shape) & (position >= start)
  codes = jax.random.randint(code_key, inputs.shape, 0, vocab_size, inputs.dtype)
  return jnp.where(replace, codes, inputs)


class Transformer(nnx.Module):
  """Text-conditioned autoregressive transformer over video tokens."""

  def __init__(self, spec: TransformerSpec, *, rngs: nnx.Rngs):
    self.spec = spec
    embed = spec.embed_dim
    param_dtype = spec.param_dtype
    self.token_embed = nnx.Embed(
      spec.input_vocab_size,
      embed,
      dtype=spec.dtype,
      param_dtype=param_dtype,
      embedding_init=sharding.with_logical(nnx.initializers.normal(1.0), ('vocab', 'embed')),
      rngs=rngs,
    )
    if spec.position == 'learned3d':
      init = nnx.initializers.normal(0.02)
      _, height, width = spec.latent_shape
      self.time_embed = nnx.Param(
        sharding.with_logical(init, ('time', 'embed'))(
          rngs.params(), (spec.max_latent_frames, embed), param_dtype
        )
      )
      self.height_embed = nnx.Param(
        sharding.with_logical(init, ('height', 'embed'))(
          rngs.params(), (height, embed), param_dtype
        )
      )
      self.width_embed = nnx.Param(
        sharding.with_logical(init, ('width', 'embed'))(rngs.params(), (width, embed), param_dtype)
      )
    self.text_proj = nnx.Linear(
      spec.text_dim,
      embed,
      dtype=spec.dtype,
      param_dtype=param_dtype,
      kernel_init=layers.kernel_init((None, 'embed'), 0, 1),
      bias_init=sharding.with_logical(nnx.initializers.zeros, ('embed',)),
      rngs=rngs,
    )
    # Stands in for the caption when text is dropped (CFG's unconditional).
    self.null_text = nnx.Param(
      sharding.with_logical(nnx.initializers.normal(1.0), (None, 'embed'))(
        rngs.params(), (1, embed), param_dtype
      )
    )
    self.text_norm = layers.rms_norm(embed, 'embed', spec, rngs)
    if spec.scan_layers:
      self.blocks = _stacked_blocks(spec, rngs)
    else:
      self.blocks = nnx.List([layers.Block(spec, rngs=rngs) for _ in range(spec.num_layers)])
    self.final_norm = layers.rms_norm(embed, 'embed', spec, rngs)
    self.head = nnx.Einsum(
      'bld,dv->blv',
      (embed, spec.vocab_size),
      dtype=spec.dtype,
      param_dtype=param_dtype,
      kernel_init=layers.kernel_init(('embed', 'vocab'), 0, 1),
      rngs=rngs,
    )
    if spec.copy_tasks:
      # Starts closed (zeros), so a warm start from a model without it is unchanged.
      self.copy_gate = nnx.Linear(
        embed,
        1,
        dtype=spec.dtype,
        param_dtype=param_dtype,
        kernel_init=sharding.with_logical(nnx.initializers.zeros, ('embed', None)),
        bias_init=sharding.with_logical(nnx.initializers.zeros, (None,)),
        rngs=rngs,
      )

  # --- pieces shared by training and decoding ---------------------------------

  def encode_text(
    self, text_emb: jax.Array, text_mask: jax.Array, drop: jax.Array | None = None
  ) -> tuple[jax.Array, jax.Array]:
    """Projects text embeddings to the model width.

    Args:
      text_emb: float [batch, text_length, text_dim] from the text encoder.
      text_mask: [batch, text_length], nonzero at real tokens.
      drop: bool [batch]; True rows become the learned null text (one valid
        token), the unconditional input of classifier-free guidance.

    Returns:
      context [batch, text_length, embed] and its bool mask [batch, text_length].
    """
    context = self.text_proj(text_emb.astype(self.spec.dtype))
    mask = text_mask.astype(bool)
    if drop is not None:
      null = jnp.broadcast_to(self.null_text[...].astype(context.dtype), context.shape)
      context = jnp.where(drop[:, None, None], null, context)
      null_mask = jnp.arange(mask.shape[1]) == 0
      mask = jnp.where(drop[:, None], null_mask[None, :], mask)
    context = self.text_norm(context)
    return sharding.constrain(context, ('batch', 'text_length', 'embed')), mask

  def _embed(self, inputs: jax.Array, coords: jax.Array):
    """inputs: int32 [batch, length]; coords: [batch, length, 3] -> (x, rope)."""
    x = self.token_embed(inputs)
    rope = None
    if self.spec.position == 'learned3d':
      position = (
        jnp.take(self.time_embed[...], coords[..., 0], axis=0)
        + jnp.take(self.height_embed[...], coords[..., 1], axis=0)
        + jnp.take(self.width_embed[...], coords[..., 2], axis=0)
      )
      x = x + position.astype(x.dtype)
    else:
      rope = layers.rope_tables(coords, self.spec.head_dim, self.spec.rope_theta)
    return sharding.constrain(x, ('batch', 'length', 'embed')), rope

  def _logits(self, x: jax.Array, copied: jax.Array | None = None) -> jax.Array:
    """x: [batch, length, embed]; copied: int32 [batch, length], the token each
    position's copy gate adds to (`_copied`; ids >= vocab_size add to none)."""
    x = self.final_norm(x)
    logits = self.head(x).astype(jnp.float32)
    if self.spec.copy_tasks:
      gate = self.copy_gate(x).astype(jnp.float32)  # [batch, length, 1]
      logits = logits + gate * jax.nn.one_hot(copied, self.spec.vocab_size, dtype=jnp.float32)
    return sharding.constrain(logits, ('batch', 'length', 'vocab'))

  def _copied(self, prefix: jax.Array, positions: jax.Array) -> jax.Array | None:
    """int32 [batch, len(positions)]: at each sequence position, the canvas token
    aligned with the clip token it predicts, on rows of a `spec.copy_tasks` task;
    `vocab_size` (nothing copied) elsewhere and at prefix positions.

    Args:
      prefix: int32 [batch, spec.prefix_length], the task token and the canvas.
      positions: int32 [n], sequence positions.
    """
    if not self.spec.copy_tasks:
      return None
    spec = self.spec
    clip_index = positions - spec.prefix_length
    canvas = prefix[:, 1:].astype(jnp.int32)
    aligned = jnp.take(canvas, jnp.clip(clip_index, 0, canvas.shape[1] - 1), axis=1)
    rows = jnp.isin(prefix[:, 0], jnp.asarray(spec.copy_task_ids, prefix.dtype))
    return jnp.where(rows[:, None] & (clip_index >= 0)[None, :], aligned, spec.vocab_size)

  def _prefix_of(self, inputs: jax.Array) -> jax.Array:
    """The task prefix at the start of `inputs`, padded to its full length."""
    prefix = inputs[:, : self.spec.prefix_length].astype(jnp.int32)
    missing = self.spec.prefix_length - prefix.shape[1]
    return jnp.pad(prefix, ((0, 0), (0, missing)), constant_values=self.spec.vocab_size)

  def layer(self, index: int) -> layers.Block:
    """Block `index` as its own module (a slice of the stacked parameters)."""
    if not self.spec.scan_layers:
      return self.blocks[index]
    graphdef, state = nnx.split(self.blocks)
    return nnx.merge(graphdef, jax.tree.map(lambda leaf: leaf[index], state))

  # --- training / full forward -------------------------------------------------

  def __call__(
    self,
    inputs: jax.Array,
    text_emb: jax.Array,
    text_mask: jax.Array,
    *,
    frame_offset: jax.Array | None = None,
    text_drop: jax.Array | None = None,
    dropout_key: jax.Array | None = None,
    logits_from: int = 0,
  ) -> jax.Array:
    """Next-token logits for every position from `logits_from` on (teacher forcing).

    Args:
      inputs: int32 [batch, length] (`shift_right` of the clip's tokens),
        length <= the window's t * h * w; multi-task models: the task prefix
        (`tasks.task_prefix`) first, length <= prefix_length + t * h * w.
      text_emb: float [batch, text_length, text_dim].
      text_mask: [batch, text_length].
      frame_offset: int32 [batch], latent frame of the window's first frame
        (default 0).
      text_drop: bool [batch], rows that see the null text instead.
      dropout_key: enables residual dropout when given.
      logits_from: the first position whose logits are returned (static):
        `spec.prefix_length` skips the output layer over a multi-task
        model's prefix, whose positions predict nothing the loss counts.

    Returns:
      float32 logits [batch, length - logits_from, vocab_size].
    """
    batch, length = inputs.shape
    if frame_offset is None:
      frame_offset = jnp.zeros((batch,), jnp.int32)
    coords = layers.token_coords(
      self.spec.latent_shape, 0, length, frame_offset, self.spec.prefix_length
    )
    x, rope = self._embed(inputs, coords)
    context, context_mask = self.encode_text(text_emb, text_mask, text_drop)
    block_inputs = BlockInputs(rope, None, None, context, context_mask)
    layer_keys = (
      jax.random.split(dropout_key, self.spec.num_layers) if dropout_key is not None else None
    )
    policy = layers.REMAT_POLICIES[self.spec.remat_policy]

    def apply_block(block, x, key):
      return block(x, block_inputs, dropout_key=key)[0]

    if self.spec.remat_policy != 'none':
      apply_block = nnx.remat(apply_block, policy=policy)
    if self.spec.scan_layers:
      x = _scan_blocks(apply_block, self.blocks, x, layer_keys)
    else:
      for index, block in enumerate(self.blocks):
        x = apply_block(block, x, None if layer_keys is None else layer_keys[index])
    copied = self._copied(self._prefix_of(inputs), jnp.arange(logits_from, length))
    return self._logits(x[:, logits_from:], copied)

  # --- KV-cached decoding -----------------------------------------------------

  def init_cache(
    self,
    context: jax.Array,
    context_mask: jax.Array,
    max_length: int,
    frame_offset: jax.Array,
    cache_dtype=None,
  ) -> DecodeCache:
    """An empty self-attention cache plus the text K/V of every layer.

    Args:
      context, context_mask: from `encode_text`.
      max_length: positions the cache holds (the window's t * h * w).
      frame_offset: int32 [batch].
      cache_dtype: dtype of the cached K/V; default the compute dtype.
    """
    spec = self.spec
    cache_dtype = cache_dtype or spec.dtype
    shape = (context.shape[0], spec.num_kv_heads, max_length, spec.head_dim)
    cross = [self.layer(i).cross_keys_values(context) for i in range(spec.num_layers)]
    return DecodeCache(
      key=tuple(jnp.zeros(shape, cache_dtype) for _ in range(spec.num_layers)),
      value=tuple(jnp.zeros(shape, cache_dtype) for _ in range(spec.num_layers)),
      cross_key=tuple(k for k, _ in cross),
      cross_value=tuple(v for _, v in cross),
      context_mask=context_mask,
      frame_offset=frame_offset.astype(jnp.int32),
      prefix=(
        jnp.full((context.shape[0], spec.prefix_length), spec.vocab_size, jnp.int32)
        if spec.copy_tasks
        else None
      ),
    )

  def prefill(self, inputs: jax.Array, cache: DecodeCache) -> tuple[jax.Array, DecodeCache]:
    """Runs the first positions at once and stores their K/V.

    Args:
      inputs: int32 [batch, length]: BOS and the fixed prefix tokens.
      cache: from `init_cache`, empty.

    Returns:
      float32 logits [batch, length, vocab_size] and the cache filled at
      positions [0, length).
    """
    length = inputs.shape[1]
    coords = layers.token_coords(
      self.spec.latent_shape, 0, length, cache.frame_offset, self.spec.prefix_length
    )
    x, rope = self._embed(inputs, coords)
    keys, values = list(cache.key), list(cache.value)
    for i in range(self.spec.num_layers):
      block_inputs = BlockInputs(
        rope, cache.cross_key[i], cache.cross_value[i], None, cache.context_mask
      )
      x, (k, v) = self.layer(i)(x, block_inputs)
      keys[i] = jax.lax.dynamic_update_slice_in_dim(
        keys[i], jnp.swapaxes(k, 1, 2).astype(keys[i].dtype), 0, axis=2
      )
      values[i] = jax.lax.dynamic_update_slice_in_dim(
        values[i], jnp.swapaxes(v, 1, 2).astype(values[i].dtype), 0, axis=2
      )
    prefix = cache.prefix
    if prefix is not None:  # The prefix positions this prefill holds.
      filled = inputs[:, : self.spec.prefix_length].astype(jnp.int32)
      prefix = jax.lax.dynamic_update_slice_in_dim(prefix, filled, 0, axis=1)
    cache = cache.replace(key=tuple(keys), value=tuple(values), prefix=prefix)
    copied = None if prefix is None else self._copied(prefix, jnp.arange(length))
    return self._logits(x, copied), cache

  def decode_step(
    self, token: jax.Array, index: jax.Array, cache: DecodeCache
  ) -> tuple[jax.Array, DecodeCache]:
    """One position: reads the cache, appends this position's K/V.

    Args:
      token: int32 [batch], the input at sequence position `index`.
      index: int32 scalar position (< the cache's max_length).
      cache: filled at positions [0, index).

    Returns:
      float32 logits [batch, vocab_size] for the token at `index`, and the cache.
    """
    coords = layers.token_coords(
      self.spec.latent_shape, index, 1, cache.frame_offset, self.spec.prefix_length
    )
    x, rope = self._embed(token[:, None], coords)
    keys, values = list(cache.key), list(cache.value)
    for i in range(self.spec.num_layers):
      block_inputs = BlockInputs(
        rope, cache.cross_key[i], cache.cross_value[i], None, cache.context_mask
      )
      x, (keys[i], values[i]) = self.layer(i)(
        x, block_inputs, cache=(keys[i], values[i]), index=index
      )
    prefix, copied = cache.prefix, None
    if prefix is not None:
      slot = jnp.clip(index, 0, prefix.shape[1] - 1)
      current = jax.lax.dynamic_index_in_dim(prefix, slot, 1, keepdims=False)
      written = jnp.where(index < prefix.shape[1], token.astype(jnp.int32), current)
      prefix = jax.lax.dynamic_update_index_in_dim(prefix, written, slot, 1)
      copied = self._copied(prefix, jnp.reshape(index, (1,)))
    cache = cache.replace(key=tuple(keys), value=tuple(values), prefix=prefix)
    return self._logits(x, copied)[:, 0], cache


def _stacked_blocks(spec: TransformerSpec, rngs: nnx.Rngs) -> layers.Block:
  """num_layers blocks with parameters stacked on a leading 'layers' axis."""

  @nnx.split_rngs(splits=spec.num_layers)
  @nnx.vmap(in_axes=(0,), out_axes=0, transform_metadata={nnx.PARTITION_NAME: 'layers'})
  def create(rngs):
    return layers.Block(spec, rngs=rngs)

  return create(rngs)


def _scan_blocks(apply_block, blocks, x, layer_keys):
  """Applies stacked `blocks` in order with nnx.scan (one traced body)."""
  if layer_keys is None:

    @nnx.scan(
      in_axes=(0, nnx.Carry),
      out_axes=nnx.Carry,
      transform_metadata={nnx.PARTITION_NAME: 'layers'},
    )
    def run(block, x):
      return apply_block(block, x, None)

    return run(blocks, x)

  @nnx.scan(
    in_axes=(0, nnx.Carry, 0),
    out_axes=nnx.Carry,
    transform_metadata={nnx.PARTITION_NAME: 'layers'},
  )
  def run_with_keys(block, x, key):
    return apply_block(block, x, key)

  return run_with_keys(blocks, x, layer_keys)


def unstack_layers(model: Transformer) -> Transformer:
  """The same model with one module per layer (`scan_layers=False`).

  Decoding runs each layer once per token; slicing a layer out of the
  stacked parameters inside the decode loop copies its weights every step
  (3x slower on CPU), so the sampler slices them once, before the loop.
  """
  if not model.spec.scan_layers:
    return model
  spec = dataclasses.replace(model.spec, scan_layers=False)
  graphdef, abstract = nnx.split(nnx.eval_shape(lambda: Transformer(spec, rngs=nnx.Rngs(0))))
  stacked = dict(nnx.to_flat_state(nnx.state(model)))
  flat = []
  for path, variable in nnx.to_flat_state(abstract):
    if path[0] == 'blocks':  # ('blocks', i, ...) <- ('blocks', ...)[i]
      value = stacked[('blocks', *path[2:])].get_value()[path[1]]
    else:
      value = stacked[path].get_value()
    flat.append((path, variable.replace(value=value)))
  return nnx.merge(graphdef, nnx.from_flat_state(flat))


def init_transformer(spec: TransformerSpec, rng: jax.Array) -> Transformer:
  """A freshly initialised transformer, built in one jitted call.

  Building eagerly dispatches every initializer separately, which is slow;
  under jit it is one compiled program.
  """
  abstract = nnx.eval_shape(lambda: Transformer(spec, rngs=nnx.Rngs(0)))
  graphdef = nnx.split(abstract)[0]
  state = compilation.run_once(
    lambda key: nnx.split(Transformer(spec, rngs=nnx.Rngs(params=key)))[1], rng
  )
  return nnx.merge(graphdef, state)


def count_params(model: Transformer) -> int:
  """Number of trainable parameters."""
  state = nnx.state(model, nnx.Param)
  return sum(int(leaf.size) for leaf in jax.tree.leaves(state))
