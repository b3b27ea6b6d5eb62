"""The grain input pipeline: per-process batches of clips, resumable exactly.

```
tfds.data_source(split)                       random access, array_record
  -> [process_index::process_count]           this process's shard
  -> shuffle(seed) -> repeat()                train only; reshuffled every epoch
  -> clip: frames, crop/resize                random start (train) or 0 (eval)
  -> to_iter_dataset (reader threads) -> batch(global // processes)
  -> video uint8 -> float32 in [-1, 1]; captions -> ids/mask (optional)
```

Randomness comes from grain's per-element seeds, so the stream depends only
on the seed and the position: `iterator.get_state()` saved at step k and
`set_state()` on a fresh iterator give the same batches from k on. The same
machinery is exposed as `batched_iterator` for any random-access source of
dict examples (the transformer stage reuses it for its token cache).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Protocol

import grain
import ml_collections
import numpy as np
from absl import logging

from videogen.data import config as config_lib
from videogen.data import sources, transforms

Batch = dict[str, np.ndarray]
# Captions of a batch -> arrays that travel with it: {'text_ids', 'text_mask'}
# (int32 [b, L]) or, from an embedding cache, {'text_emb' [b, L, D], 'text_mask'}.
TextFeatures = Callable[[list[str]], dict[str, np.ndarray]]
ExampleFn = Callable[[dict[str, Any], 'np.random.Generator | None'], dict[str, Any]]


class RandomAccessSource(Protocol):
  """What `batched_iterator` reads: `len(source)` examples by index."""

  def __len__(self) -> int: ...

  def __getitem__(self, index: int) -> dict[str, Any]: ...


def per_process_batch_size(batch_size: int, process_count: int) -> int:
  """The batch one process loads: `batch_size // process_count`, exactly."""
  if batch_size < 1 or batch_size % process_count:
    raise ValueError(
      f'config.batch_size={batch_size} must be a positive multiple of the number '
      f'of processes ({process_count}).'
    )
  return batch_size // process_count


def _topology(process_index: int | None, process_count: int | None) -> tuple[int, int]:
  if process_index is None or process_count is None:
    import jax  # pylint: disable=g-import-not-at-top  # Not needed when both are given.

    process_index = jax.process_index() if process_index is None else process_index
    process_count = jax.process_count() if process_count is None else process_count
  if not 0 <= process_index < process_count:
    raise ValueError(f'process_index={process_index} is not in [0, {process_count}).')
  return process_index, process_count


@dataclasses.dataclass(frozen=True)
class _ApplyToExample:
  """Adapts an `ExampleFn` to grain's `map` (no rng: eval) or `random_map`."""

  fn: ExampleFn

  def __call__(self, example: dict[str, Any], rng: np.random.Generator | None = None):
    return self.fn(example, rng)


def batched_iterator(
  source: RandomAccessSource,
  *,
  batch_size: int,
  train: bool,
  seed: int,
  example_fn: ExampleFn | None = None,
  batch_fn: Callable[[Batch], Batch] | None = None,
  process_index: int | None = None,
  process_count: int | None = None,
  worker_count: int = 0,
  read_threads: int = 4,
  prefetch_buffer_size: int = 64,
  drop_remainder: bool = True,
) -> grain.DatasetIterator:
  """Per-process batches from any random-access source of dict examples.

  Train: this process's shard, shuffled (differently every epoch), repeated
  forever. Eval: in order, one pass; all shards cut to the same length (so
  every process yields the same number of batches) and the last partial
  batch dropped, unless `drop_remainder=False`, which reads every example.

  Args:
    source: `len()` and `[index] -> dict` of numpy values / strings; it must
      pickle when `worker_count > 0`.
    batch_size: global batch size over all processes.
    train: shuffle, repeat and pass an rng to `example_fn` (see above).
    seed: the shuffle and per-example random streams derive from it.
    example_fn: `(example, rng) -> example`; rng is a numpy Generator seeded
      per element when `train`, else None. Module-level for workers.
    batch_fn: `batch -> batch`, run in this process after batching (so it may
      hold unpicklable state, e.g. a tokenizer).
    process_index: this process; default `jax.process_index()`.
    process_count: processes sharing the data; default `jax.process_count()`.
    worker_count: grain worker processes (0 = threads in this process).
    read_threads: threads reading and transforming examples ahead.
    prefetch_buffer_size: examples kept ready by the reader threads.
    drop_remainder: eval only; False keeps a last, smaller batch (a one-pass
      read of every example, e.g. the token cache).

  Returns:
    A grain iterator of dict batches (leading axis `batch_size //
    process_count`) with `get_state()` / `set_state()`.
  """
  process_index, process_count = _topology(process_index, process_count)
  local_batch_size = per_process_batch_size(batch_size, process_count)
  shuffle_seed, example_seed = (
    int(value) for value in np.random.SeedSequence(seed).generate_state(2)
  )
  dataset = grain.MapDataset.source(source)
  if not train and drop_remainder:  # Equal shards: every process runs the same eval steps.
    dataset = dataset[: len(dataset) // process_count * process_count]
  dataset = dataset[process_index::process_count]
  if len(dataset) == 0:
    raise ValueError(
      f'Process {process_index} of {process_count} gets no examples: the split has {len(source)}.'
    )
  if train:
    logging.info(
      'Data: process %d of %d reads %d of the %d examples (every %d-th from #%d), %d per batch.',
      process_index,
      process_count,
      len(dataset),
      len(source),
      process_count,
      process_index,
      local_batch_size,
    )
    dataset = dataset.shuffle(seed=shuffle_seed).repeat()
  elif drop_remainder and len(dataset) < local_batch_size:
    raise ValueError(
      f'The eval split gives each of {process_count} processes {len(dataset)} '
      f'examples, fewer than one batch of {local_batch_size}.'
    )
  if example_fn is not None:
    apply = _ApplyToExample(example_fn)
    dataset = dataset.random_map(apply, seed=example_seed) if train else dataset.map(apply)
  iter_dataset = dataset.to_iter_dataset(
    grain.ReadOptions(num_threads=read_threads, prefetch_buffer_size=prefetch_buffer_size)
  )
  if worker_count > 0:
    _mark_flags_parsed()
    iter_dataset = iter_dataset.mp_prefetch(grain.MultiprocessingOptions(num_workers=worker_count))
  iter_dataset = iter_dataset.batch(local_batch_size, drop_remainder=train or drop_remainder)
  if batch_fn is not None:
    iter_dataset = iter_dataset.map(batch_fn)
  return iter(iter_dataset)


def _mark_flags_parsed() -> None:
  """grain workers read absl flags; outside `app.run` they are unparsed."""
  from absl import flags  # pylint: disable=g-import-not-at-top

  if not flags.FLAGS.is_parsed():
    flags.FLAGS.mark_as_parsed()


@dataclasses.dataclass(frozen=True)
class ClipTransform:
  """Cuts a training clip out of a stored one (module-level: picklable).

  Attributes:
    num_frames: frames per clip.
    frame_stride: distance between taken frames.
    height: output height.
    width: output width.
  """

  num_frames: int
  frame_stride: int
  height: int
  width: int

  def __call__(self, example: dict[str, Any], rng: np.random.Generator | None) -> dict[str, Any]:
    frames = example['video']
    num_stored = len(frames)
    start = 0
    if rng is not None:  # Train: any start at which the whole clip fits.
      start = int(
        rng.integers(0, transforms.max_start(num_stored, self.num_frames, self.frame_stride) + 1)
      )
    indices = transforms.frame_indices(num_stored, self.num_frames, self.frame_stride, start)
    video = transforms.decode_frames(frames, indices)
    if video.shape[-1] == 1:  # Grayscale datasets: repeat into RGB.
      video = np.repeat(video, 3, axis=-1)
    video = transforms.resize_video(video, self.height, self.width)
    return {'video': video, 'caption': example['caption']}


@dataclasses.dataclass(frozen=True)
class FinishBatch:
  """Scales video to [-1, 1] and turns captions into text features, per batch.

  Attributes:
    text_features: `list[str] -> {name: array}` (see `TextFeatures`); None
      leaves captions as text only.
  """

  text_features: TextFeatures | None = None

  def __call__(self, batch: Batch) -> Batch:
    out = {
      'video': transforms.normalize(batch['video']),
      'caption': np.asarray(batch['caption'], dtype=str),
    }
    if self.text_features is not None:
      out.update(self.text_features([str(caption) for caption in out['caption']]))
    return out


def create_iterator(
  config: ml_collections.ConfigDict,
  split: str,
  *,
  train: bool,
  text_features: TextFeatures | None = None,
  process_index: int | None = None,
  process_count: int | None = None,
  drop_remainder: bool = True,
) -> grain.DatasetIterator:
  """Per-process batches of clips from `config.data`'s dataset.

  Args:
    config: the whole training config (uses `config.data`, `config.batch_size`,
      `config.seed`). The dataset must be built (`build.ensure_built`).
    split: TFDS split, usually `config.data.train_split` or `eval_split`.
    train: shuffle + repeat forever + random temporal start; else one pass
      in order from frame 0, last partial batch dropped unless
      `drop_remainder=False`.
    text_features: optional `list[str] -> {name: array}` applied per batch.
    process_index: this process; default `jax.process_index()`.
    process_count: number of processes; default `jax.process_count()`.
    drop_remainder: see `batched_iterator`.

  Returns:
    A grain iterator (`get_state`/`set_state`) of dicts with
    `video`: float32 [b, T, H, W, 3] in [-1, 1], `caption`: str [b], and with
    `text_features`, its arrays (`text_ids`, `text_mask`: int32 [b, L]);
    b = config.batch_size // process_count.
  """
  data = config.data
  config_lib.validate(data)
  source = sources.open_source(data, split)
  return batched_iterator(
    source,
    batch_size=config.batch_size,
    train=train,
    seed=config.seed,
    example_fn=ClipTransform(data.num_frames, data.frame_stride, data.height, data.width),
    batch_fn=FinishBatch(text_features),
    process_index=process_index,
    process_count=process_count,
    worker_count=data.worker_count,
    read_threads=data.read_threads,
    prefetch_buffer_size=data.prefetch_buffer_size,
    drop_remainder=drop_remainder,
  )


def split_size(config: ml_collections.ConfigDict, split: str) -> int:
  """Number of clips in a split of `config.data`'s (built) dataset."""
  return len(sources.open_source(config.data, split))


def split_captions(config: ml_collections.ConfigDict, split: str, limit: int = 0) -> list[str]:
  """Captions of a split in stored order (e.g. to fit a text vocabulary).

  Reads each record but decodes no video (frames stay encoded), so a pass
  over thousands of clips takes seconds.

  Args:
    config: the training config (uses `config.data`).
    split: TFDS split.
    limit: read at most this many examples; 0 = all.
  """
  source = sources.open_source(config.data, split)
  count = len(source) if limit <= 0 else min(limit, len(source))
  return [source[index]['caption'] for index in range(count)]
