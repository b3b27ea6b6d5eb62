"""One attention function with interchangeable backends.

`dot_product_attention` is the only attention entry point of the model. The
backends compute the same thing:
  - `xla`: `jax.nn.dot_product_attention(implementation='xla')`, any platform.
  - `cudnn`: `jax.nn.dot_product_attention(implementation='cudnn')`, NVIDIA
    GPUs with float16/bfloat16 inputs.
  - `pallas`: fused flash-attention kernels: TPU splash attention, or the
    Pallas GPU (Triton) `mha` kernel. With `interpret=True` both run on CPU
    (slowly), which is how the tests check them.
  - `auto`: pallas on TPU, cudnn on GPU for half-precision inputs, else xla.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import PartitionSpec

from videogen.parallel import platform as platform_lib
from videogen.parallel import sharding

BACKENDS = ('auto', 'xla', 'cudnn', 'pallas')
_MASKED = float(jnp.finfo(jnp.float32).min)  # Logit of a masked key (finite: no NaN).
PALLAS_KERNELS = ('splash', 'mha')


def resolve_backend(backend: str, dtype=jnp.float32, platform: str | None = None) -> str:
  """The concrete backend ('xla', 'cudnn' or 'pallas') that `backend` means here.

  Args:
    backend: one of `BACKENDS`.
    dtype: the dtype of q/k/v (cuDNN flash attention takes only 16-bit types).
    platform: 'cpu', 'gpu' or 'tpu'; default `platform.current()` (the backend, or
      the target of ahead-of-time compilation).
  """
  if backend not in BACKENDS:
    raise ValueError(f'Unknown attention backend {backend!r}; choose from {BACKENDS}')
  if backend != 'auto':
    return backend
  platform = platform or platform_lib.current()
  if platform == 'tpu':
    return 'pallas'
  if platform == 'gpu' and jnp.dtype(dtype) in (jnp.bfloat16, jnp.float16):
    return 'cudnn'
  return 'xla'


def supports_kv_mask(backend: str, platform: str | None = None) -> bool:
  """Whether `backend` (as resolved) takes a key padding mask of any length.

  The Pallas GPU kernel masks only by causality, so cross-attention to padded
  text uses another backend there.
  """
  if backend != 'pallas':
    return True
  return _pallas_kernel(None, platform) == 'splash'


def dot_product_attention(
  query: jax.Array,
  key: jax.Array,
  value: jax.Array,
  *,
  causal: bool = False,
  kv_mask: jax.Array | None = None,
  backend: str = 'auto',
  scale: float | None = None,
  pallas_kernel: str | None = None,
  interpret: bool = False,
  kv_layout: str = 'bthd',
) -> jax.Array:
  """Multi-head (and grouped-query) scaled dot-product attention.

  Args:
    query: [batch, q_length, num_heads, head_dim].
    key: [batch, kv_length, num_kv_heads, head_dim]; num_heads must be a
      multiple of num_kv_heads. With kv_layout 'bhtd': [batch, num_kv_heads,
      kv_length, head_dim].
    value: as `key`.
    causal: query i attends keys j <= i (q_length must equal kv_length).
    kv_mask: bool [batch, kv_length], True where a key may be attended (text
      padding, filled part of a KV cache). Every query must keep at least one
      key. cuDNN reads it as lengths, so it must be a prefix mask there.
    backend: 'auto', 'xla', 'cudnn' or 'pallas'.
    scale: logit scale; default 1/sqrt(head_dim).
    pallas_kernel: 'splash' (TPU) or 'mha' (GPU); default by platform.
    interpret: run the Pallas kernel in interpret mode (CPU tests).
    kv_layout: 'bthd' (default) or 'bhtd', the layout of a KV cache: there
      the (batch, head) dims lead, so attending one query to a long cache
      is a plain batched matrix-vector product without transposing the cache
      (XLA would copy it at every decoded token otherwise). 'bhtd' is served
      by XLA alone and takes no `causal`.

  Returns:
    [batch, q_length, num_heads, head_dim] in the dtype of `query`.
  """
  if kv_layout == 'bhtd':
    if causal or backend not in ('auto', 'xla'):
      raise ValueError("kv_layout 'bhtd' (KV caches) supports backend 'xla' without causal.")
    scale = 1.0 / math.sqrt(query.shape[-1]) if scale is None else scale
    return _heads_major_attention(query, key, value, kv_mask, scale)
  if kv_layout != 'bthd':
    raise ValueError(f"kv_layout must be 'bthd' or 'bhtd', got {kv_layout!r}")
  if causal and query.shape[1] != key.shape[1]:
    raise ValueError(
      f'Causal attention needs q_length == kv_length, got {query.shape[1]} and {key.shape[1]}'
    )
  if query.shape[2] % key.shape[2]:
    raise ValueError(f'{query.shape[2]} query heads are not a multiple of {key.shape[2]} kv heads')
  scale = 1.0 / math.sqrt(query.shape[-1]) if scale is None else scale
  resolved = resolve_backend(backend, query.dtype)
  if resolved in ('xla', 'cudnn'):
    return _xla_or_cudnn_attention(query, key, value, causal, kv_mask, scale, resolved)
  kernel = _pallas_kernel(pallas_kernel, None)
  if kernel == 'splash':
    return _splash_attention(query, key, value, causal, kv_mask, scale, interpret)
  return _gpu_flash_attention(query, key, value, causal, kv_mask, scale, interpret)


def _xla_or_cudnn_attention(query, key, value, causal, kv_mask, scale, implementation):
  if implementation == 'cudnn':
    if jax.default_backend() != 'gpu':
      raise ValueError(
        f"The 'cudnn' attention backend needs an NVIDIA GPU; this is {jax.default_backend()!r}. "
        "Use 'auto' or 'xla'."
      )
    lengths = None
    if kv_mask is not None:
      lengths = jnp.sum(kv_mask.astype(jnp.int32), axis=-1)
    return jax.nn.dot_product_attention(
      query,
      key,
      value,
      scale=scale,
      is_causal=causal,
      key_value_seq_lengths=lengths,
      implementation='cudnn',
    )
  # Not `jax.nn.dot_product_attention`: it maps over the query groups, and XLA:CPU then
  # copies its logits between layouts in every pass (training step of the multi-task
  # config, 2 cores: ~15% faster this way). The keys and values are the small tensors.
  key, value = key.transpose(0, 2, 1, 3), value.transpose(0, 2, 1, 3)
  return _heads_major_attention(query, key, value, kv_mask, scale, causal=causal)


def _heads_major_attention(query, key, value, kv_mask, scale, causal=False):
  """XLA attention over [batch, kv_heads, length, head_dim] keys and values.

  A query group's rows are stacked, so each kv head is one plain matrix product
  and the softmax reads the logits in the layout the product writes them.
  """
  batch, q_length, num_heads, head_dim = query.shape
  kv_heads, kv_length = key.shape[1], key.shape[2]
  groups = num_heads // kv_heads
  # Query head h reads kv head h // groups, as in jax.nn.dot_product_attention.
  q = query.reshape(batch, q_length, kv_heads, groups, head_dim)
  q = q.transpose(0, 2, 3, 1, 4).reshape(batch, kv_heads, groups * q_length, head_dim)
  logits = jnp.einsum('bkqd,bksd->bkqs', q, key, preferred_element_type=jnp.float32)
  logits = logits * scale
  mask = None
  if causal:  # Row g * q_length + i is query i of group g: keys 0..i.
    mask = jnp.tile(jnp.tril(jnp.ones((q_length, kv_length), bool)), (groups, 1))
  if kv_mask is not None:
    keys = kv_mask[:, None, None, :].astype(bool)
    mask = keys if mask is None else mask & keys
  if mask is not None:
    logits = jnp.where(mask, logits, _MASKED)
  weights = jax.nn.softmax(logits, axis=-1).astype(value.dtype)
  out = jnp.einsum('bkqs,bksd->bkqd', weights, value)
  out = out.reshape(batch, kv_heads, groups, q_length, head_dim).transpose(0, 3, 1, 2, 4)
  return out.reshape(batch, q_length, num_heads, head_dim).astype(query.dtype)


def _pallas_kernel(requested: str | None, platform: str | None) -> str:
  if requested is not None:
    if requested not in PALLAS_KERNELS:
      raise ValueError(f'Unknown Pallas kernel {requested!r}; choose from {PALLAS_KERNELS}')
    return requested
  platform = platform or platform_lib.current()
  if platform == 'tpu':
    return 'splash'
  if platform == 'gpu':
    return 'mha'
  raise ValueError(
    "The 'pallas' attention backend runs on TPU or GPU; on CPU pass interpret=True and "
    "pallas_kernel='splash' or 'mha', or use 'xla'."
  )


def _round_up(value: int, multiple: int) -> int:
  return -(-value // multiple) * multiple


def _block_size(length: int, align: int, largest: int) -> int:
  """The largest tile, a multiple of `align` and at most `largest`, that divides the
  length rounded up to `align`: no padding beyond that. (1280 positions take
  tiles of 256, not 512 padded to 1536: the base transformer's attention at
  17x128x128 did 1.6x the causal work and moved 1.2x the bytes with 512.)"""
  padded = _round_up(length, align)
  return next(b for b in range(min(largest, padded), 0, -align) if padded % b == 0)


def _pad_length(x: jax.Array, length: int) -> jax.Array:
  return jnp.pad(x, ((0, 0), (0, length - x.shape[1]), (0, 0), (0, 0)))


def _repeat_kv(key, value, num_heads):
  groups = num_heads // key.shape[2]
  if groups == 1:
    return key, value
  return jnp.repeat(key, groups, axis=2), jnp.repeat(value, groups, axis=2)


def _splash_attention(query, key, value, causal, kv_mask, scale, interpret):
  """TPU splash attention; padding to whole tiles is masked by segment ids."""
  from jax.experimental.pallas.ops.tpu.splash_attention import (  # noqa: PLC0415
    splash_attention_kernel as splash,
  )
  from jax.experimental.pallas.ops.tpu.splash_attention import (  # noqa: PLC0415
    splash_attention_mask as splash_mask,
  )

  batch, q_length, num_heads, _ = query.shape
  kv_length = key.shape[1]
  key, value = _repeat_kv(key, value, num_heads)
  # Splash tiles are multiples of the 128 TPU lanes, in interpret mode too.
  block_q = _block_size(q_length, 128, 512)
  block_kv = _block_size(kv_length, 128, 512)
  q_padded, kv_padded = _round_up(q_length, block_q), _round_up(kv_length, block_kv)
  if kv_mask is None:
    kv_mask = jnp.ones((batch, kv_length), bool)
  # Padded keys get segment 0 and are never attended; every query (padded
  # ones too) has segment 1, so no softmax row is empty.
  kv_segments = jnp.pad(kv_mask.astype(jnp.int32), ((0, 0), (0, kv_padded - kv_length)))
  q_segments = jnp.ones((batch, q_padded), jnp.int32)
  shape = (q_padded, kv_padded)
  head_mask = splash_mask.CausalMask(shape) if causal else splash_mask.FullMask(shape)
  block_sizes = splash.BlockSizes(
    block_q=block_q,
    block_kv=block_kv,
    block_kv_compute=block_kv,
    block_q_dkv=block_q,
    block_kv_dkv=block_kv,
    block_kv_dkv_compute=block_kv,
    block_q_dq=block_q,
    block_kv_dq=block_kv,
  )
  # Splash takes [heads, length, head_dim] per example and a pre-scaled query.
  q = jnp.swapaxes(_pad_length(query * jnp.asarray(scale, query.dtype), q_padded), 1, 2)
  k = jnp.swapaxes(_pad_length(key, kv_padded), 1, 2)
  v = jnp.swapaxes(_pad_length(value, kv_padded), 1, 2)

  def attend(q, k, v, q_ids, kv_ids):
    kernel = splash.make_splash_mha(
      splash_mask.MultiHeadMask([head_mask] * q.shape[1]),
      block_sizes=block_sizes,
      head_shards=1,
      q_seq_shards=1,
      interpret=interpret,
    )

    def one_example(q, k, v, q_ids, kv_ids):
      return kernel(q, k, v, segment_ids=splash.SegmentIds(q=q_ids, kv=kv_ids))

    return jax.vmap(one_example)(q, k, v, q_ids, kv_ids)

  # XLA cannot partition a Mosaic kernel: on a mesh each device runs it on
  # its own examples and heads (batch over the batch axes, heads over tensor).
  spec = sharding.current_spec(('batch', 'heads', None, None), q.shape)
  if spec is not None:
    ids_spec = PartitionSpec(spec[0], None)
    attend = jax.shard_map(
      attend,
      mesh=sharding.current_mesh(),
      in_specs=(spec, spec, spec, ids_spec, ids_spec),
      out_specs=spec,
      check_vma=False,
    )
  out = attend(q, k, v, q_segments, kv_segments)
  return jnp.swapaxes(out, 1, 2)[:, :q_length].astype(query.dtype)


def _gpu_flash_attention(query, key, value, causal, kv_mask, scale, interpret):
  """The Pallas GPU (Triton) flash-attention kernel: causal or full, no key mask."""
  from jax.experimental.pallas.ops.gpu import attention as gpu_attention  # noqa: PLC0415

  if kv_mask is not None:
    raise ValueError(
      "The Pallas GPU attention kernel has no key padding mask; use backend 'xla' or "
      "'cudnn' for masked (cross-)attention."
    )
  q_length, kv_length = query.shape[1], key.shape[1]
  key, value = _repeat_kv(key, value, query.shape[2])
  # Triton tiles: 16-aligned on a GPU; 8 in interpret mode keeps CPU tests fast.
  block = _block_size(q_length, 8 if interpret else 16, 128)
  q = _pad_length(query, _round_up(q_length, block))
  if causal:
    # Causal padding sits after every real query, so it is never attended.
    k, v = _pad_length(key, q.shape[1]), _pad_length(value, q.shape[1])
  elif kv_length > block and kv_length % block:
    raise ValueError(
      f'Without a key mask the Pallas GPU kernel cannot pad keys: kv_length {kv_length} '
      f'must be a multiple of the tile {block}.'
    )
  else:
    k, v = key, value
  small = min(block, 32)
  block_sizes = gpu_attention.BlockSizes(
    block_q=block,
    block_k=block,
    block_q_dkv=small,
    block_kv_dkv=small,
    block_q_dq=small,
    block_kv_dq=small,
  )
  out = gpu_attention.mha(
    q,
    k,
    v,
    None,
    sm_scale=float(scale),
    causal=causal,
    block_sizes=block_sizes,
    interpret=interpret,
  )
  return out[:, :q_length].astype(query.dtype)


def reference_attention(query, key, value, *, causal=False, kv_mask=None, scale=None):
  """Plain softmax attention in float32 (for tests). Shapes as `dot_product_attention`."""
  num_heads = query.shape[2]
  key, value = _repeat_kv(key, value, num_heads)
  scale = 1.0 / np.sqrt(query.shape[-1]) if scale is None else scale
  logits = jnp.einsum('bqhd,bkhd->bhqk', query.astype(jnp.float32), key.astype(jnp.float32))
  logits = logits * scale
  allowed = jnp.ones(logits.shape[-2:], bool)
  if causal:
    allowed = jnp.tril(allowed)
  allowed = jnp.broadcast_to(allowed, logits.shape)
  if kv_mask is not None:
    allowed = allowed & kv_mask[:, None, None, :].astype(bool)
  logits = jnp.where(allowed, logits, -1e30)
  weights = jax.nn.softmax(logits, axis=-1)
  return jnp.einsum('bhqk,bkhd->bqhd', weights, value.astype(jnp.float32))
