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
import itertools
from typing import Any, Callable, Iterable, Iterator, Protocol

import grain
import ml_collections
import numpy as np
from absl import logging

from videogen.data import config as config_lib
from videogen.data import sources, transforms

Batch = dict[str, np.ndarray]
# Train batches with `skip_bad_examples` carry two int64 scalars: examples this
# process skipped so far (failed to read or decode, wrong shape) and its shard size.
SKIPPED = 'skipped_examples'
SHARD_SIZE = 'shard_examples'
_BAD = '_bad_example'  # An example that failed: {_BAD: 'why'}.
_LOGGED_SKIPS = 10  # Skips logged one by one; later ones are only counted.
EVAL_MASK = config_lib.EVAL_MASK  # float32 [b] eval weights, 0 = padding.
CLIP_START = 'clip_start'  # Eval examples: the stored frame a clip starts at.
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


class TooManySkippedExamples(RuntimeError):
  """More training examples failed than `config.data.max_skipped_fraction` allows."""


class SplitSizeError(ValueError):
  """The splits cannot feed the run as configured (checked before any step)."""


def _failure(what: str, error: Exception) -> dict[str, str]:
  text = str(error).strip().splitlines()[0] if str(error).strip() else ''
  return {_BAD: f'{what}: {type(error).__name__}: {text}'[:300]}


@dataclasses.dataclass(frozen=True)
class _SkippingSource:
  """A source whose unreadable records become `{_BAD: why}` instead of raising."""

  source: RandomAccessSource

  def __len__(self) -> int:
    return len(self.source)

  def __getitem__(self, index: int) -> dict[str, Any]:
    try:
      return self.source[index]
    except Exception as error:  # noqa: BLE001 - a damaged record is skipped and counted.
      return _failure(f'record #{index}', error)


@dataclasses.dataclass(frozen=True)
class _ApplyToExample:
  """Adapts an `ExampleFn` to grain's `map` (no rng: eval) or `random_map`.

  With `skip_bad`, an example that failed to read passes through and one
  that `fn` fails on becomes `{_BAD: why}`.
  """

  fn: ExampleFn
  skip_bad: bool = False

  def __call__(self, example: dict[str, Any], rng: np.random.Generator | None = None):
    if not self.skip_bad:
      return self.fn(example, rng)
    if _BAD in example:
      return example
    try:
      return self.fn(example, rng)
    except Exception as error:  # noqa: BLE001 - a damaged example is skipped and counted.
      return _failure('example', error)


class _SkipCounter:
  """Drops `{_BAD: ...}` examples (grain `filter`), counting them; stamps batches.

  It runs where batches are consumed, so the count a batch carries is exact
  for everything read before it.
  """

  def __init__(self, shard_size: int):
    self.skipped = 0
    self.shard_size = shard_size

  def keep(self, example: dict[str, Any]) -> bool:
    if _BAD not in example:
      return True
    self.skipped += 1
    if self.skipped <= _LOGGED_SKIPS:
      logging.warning('Skipped a training example (%d so far): %s', self.skipped, example[_BAD])
    return False

  def stamp(self, batch: Batch) -> Batch:
    return {**batch, SKIPPED: np.int64(self.skipped), SHARD_SIZE: np.int64(self.shard_size)}


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
  skip_bad_examples: bool = False,
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
    skip_bad_examples: train only; an example that fails to read or in
      `example_fn` is dropped, logged and counted: batches carry `SKIPPED`
      and `SHARD_SIZE` (the loop stops past `data.max_skipped_fraction`).

  Returns:
    A grain iterator of dict batches (leading axis `batch_size //
    process_count`) with `get_state()` / `set_state()`.
  """
  process_index, process_count = _topology(process_index, process_count)
  local_batch_size = per_process_batch_size(batch_size, process_count)
  shuffle_seed, example_seed = (
    int(value) for value in np.random.SeedSequence(seed).generate_state(2)
  )
  skip_bad_examples = skip_bad_examples and train
  dataset = grain.MapDataset.source(_SkippingSource(source) if skip_bad_examples else source)
  if not train and drop_remainder:  # Equal shards: every process runs the same eval steps.
    dataset = dataset[: len(dataset) // process_count * process_count]
  dataset = dataset[process_index::process_count]
  if len(dataset) == 0:
    raise ValueError(
      f'Process {process_index} of {process_count} gets no examples: the split has {len(source)}.'
    )
  counter = _SkipCounter(len(dataset)) if skip_bad_examples else None
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
    apply = _ApplyToExample(example_fn, skip_bad=skip_bad_examples)
    dataset = dataset.random_map(apply, seed=example_seed) if train else dataset.map(apply)
  iter_dataset = dataset.to_iter_dataset(
    grain.ReadOptions(num_threads=read_threads, prefetch_buffer_size=prefetch_buffer_size)
  )
  if worker_count > 0:
    _mark_flags_parsed()
    iter_dataset = iter_dataset.mp_prefetch(grain.MultiprocessingOptions(num_workers=worker_count))
  if counter is not None:
    iter_dataset = iter_dataset.filter(counter.keep)
  iter_dataset = iter_dataset.batch(local_batch_size, drop_remainder=train or drop_remainder)
  if batch_fn is not None:
    iter_dataset = iter_dataset.map(batch_fn)
  if counter is not None:
    iter_dataset = iter_dataset.map(counter.stamp)
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
    elif CLIP_START in example:  # Eval: one of several clips of a long video.
      start = int(example[CLIP_START])
    indices = transforms.frame_indices(num_stored, self.num_frames, self.frame_stride, start)
    video = transforms.decode_frames(frames, indices)
    if video.shape[-1] == 1:  # Grayscale datasets: repeat into RGB.
      video = np.repeat(video, 3, axis=-1)
    video = transforms.resize_video(video, self.height, self.width)
    expected = (self.num_frames, self.height, self.width, 3)
    if video.shape != expected:  # A source video changed or cut short under the dataset.
      raise ValueError(f'clip of shape {video.shape}, expected {expected}')
    out = {'video': video, 'caption': example['caption']}
    if EVAL_MASK in example:
      out[EVAL_MASK] = example[EVAL_MASK]
    return out


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
    if EVAL_MASK in batch:
      out[EVAL_MASK] = np.asarray(batch[EVAL_MASK], np.float32)
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
    b = config.batch_size // process_count. Train batches also carry the
    `SKIPPED` and `SHARD_SIZE` counts (damaged examples are skipped).
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
    skip_bad_examples=train,
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


@dataclasses.dataclass(frozen=True)
class EvalClips:
  """One process's eval clips, padded to whole batches (a random-access source).

  Attributes:
    source: the split's stored examples.
    entries: (example index, first stored frame, weight) per clip, in the
      order read; weight 0 marks padding that repeats a real clip.
  """

  source: RandomAccessSource
  entries: tuple[tuple[int, int, float], ...]

  def __len__(self) -> int:
    return len(self.entries)

  def __getitem__(self, index: int) -> dict[str, Any]:
    example_index, start, weight = self.entries[index]
    example = dict(self.source[example_index])
    example[CLIP_START] = start
    example[EVAL_MASK] = np.float32(weight)
    return example


def eval_clip_starts(
  source: RandomAccessSource, span: int, clips_per_video: int
) -> list[tuple[int, int]]:
  """(example index, start frame) of every eval clip of a split.

  A stored video of n frames gives `max(1, n // span)` non-overlapping clips
  (at most `clips_per_video`; 0 = no limit). Clips are ordered window by
  window (every video's first clip, then every second clip, ...) so that an
  evaluation capped at a few batches still sees as many videos as it can.

  Args:
    source: the split; read (frames left encoded) only when
      `clips_per_video != 1`.
    span: stored frames one clip covers.
    clips_per_video: the most clips taken from one video; 0 = all.
  """
  if clips_per_video == 1:
    return [(index, 0) for index in range(len(source))]
  windows = []
  for index in range(len(source)):
    count = max(1, len(source[index]['video']) // span)
    windows.append(count if clips_per_video <= 0 else min(count, clips_per_video))
  return [
    (index, window * span)
    for window in range(max(windows, default=0))
    for index, count in enumerate(windows)
    if window < count
  ]


def pad_eval_shard(
  clips: list[tuple[int, int]],
  *,
  process_index: int,
  process_count: int,
  local_batch_size: int,
) -> tuple[tuple[int, int, float], ...]:
  """This process's clips `[process_index::process_count]`, padded with weight 0.

  Every process gets the same number of whole batches,
  `ceil(ceil(len(clips) / process_count) / local_batch_size)`, so all run
  the same eval steps; each clip is in exactly one process's shard once.

  Raises:
    ValueError: `clips` is empty.
  """
  if not clips:
    raise ValueError('The eval split has no clips.')
  per_process = -(-len(clips) // process_count)
  total = -(-per_process // local_batch_size) * local_batch_size
  shard = [(index, start, 1.0) for index, start in clips[process_index::process_count]]
  filler = (*clips[0], 0.0)
  return tuple(shard + [filler] * (total - len(shard)))


def create_eval_iterator(
  config: ml_collections.ConfigDict,
  *,
  text_features: TextFeatures | None = None,
  process_index: int | None = None,
  process_count: int | None = None,
) -> grain.DatasetIterator:
  """Every clip of `config.data.eval_split` once, in whole padded batches.

  Long stored videos give several non-overlapping clips
  (`config.data.eval_clips_per_video`). The last batch of each process is
  filled with weight-0 copies of a clip, so a split smaller than a batch (or
  than the number of processes) evaluates too.

  Returns:
    A grain iterator of batches laid out as `create_iterator`'s, plus
    `eval_mask`: float32 [b], 1 for a held-out clip and 0 for padding.
  """
  data = config.data
  config_lib.validate(data)
  process_index, process_count = _topology(process_index, process_count)
  local_batch_size = per_process_batch_size(config.batch_size, process_count)
  source = sources.open_source(data, data.eval_split)
  # Configs saved before the field existed evaluate one clip per video, as they did.
  clips_per_video = data.get('eval_clips_per_video', 1)
  clips = eval_clip_starts(source, config_lib.clip_span(data), clips_per_video)
  if not clips:
    raise ValueError(f'The eval split {data.eval_split!r} of {data.name!r} has no clips.')
  entries = pad_eval_shard(
    clips,
    process_index=process_index,
    process_count=process_count,
    local_batch_size=local_batch_size,
  )
  return batched_iterator(  # The shard is this process's already: read all of it.
    EvalClips(source, entries),
    batch_size=local_batch_size,
    train=False,
    seed=config.seed,
    example_fn=ClipTransform(data.num_frames, data.frame_stride, data.height, data.width),
    batch_fn=FinishBatch(text_features),
    process_index=0,
    process_count=1,
    worker_count=data.worker_count,
    read_threads=data.read_threads,
    prefetch_buffer_size=data.prefetch_buffer_size,
  )


def take_eval_batches(batches: Iterable[Batch], num_eval_batches: int) -> Iterator[Batch]:
  """The first `num_eval_batches` of `batches`; -1 = all (every held-out clip once).

  Every process pads its shard to the same number of batches, so either way
  all processes evaluate the same number of steps.
  """
  check_num_eval_batches(num_eval_batches)
  if num_eval_batches < 0:
    return iter(batches)
  return itertools.islice(batches, num_eval_batches)


def check_num_eval_batches(num_eval_batches: int) -> None:
  if num_eval_batches == 0 or num_eval_batches < -1:
    raise SplitSizeError(
      f'config.num_eval_batches={num_eval_batches}: give a positive number of batches, '
      'or -1 for the whole eval split.'
    )


def check_split_sizes(
  config: ml_collections.ConfigDict, *, process_count: int | None = None
) -> dict[str, int]:
  """Checks, before any step, that both splits can feed this run.

  Training needs at least one example per process (a smaller split repeats);
  evaluation needs one clip (partial batches are padded).

  Returns:
    {'train': examples, 'eval': examples} of the two splits.

  Raises:
    SplitSizeError: naming the split, its size and what would fix it.
  """
  check_num_eval_batches(config.num_eval_batches)
  if process_count is None:
    import jax  # pylint: disable=g-import-not-at-top  # Not needed when given.

    process_count = jax.process_count()
  data = config.data
  sizes = {
    'train': len(sources.open_source(data, data.train_split)),
    'eval': len(sources.open_source(data, data.eval_split)),
  }
  hint = (
    ' Add videos, or lower config.data.test_fraction / pick other splits.'
    if data.name == config_lib.VIDEO_FOLDER
    else ''
  )
  if sizes['train'] < process_count:
    raise SplitSizeError(
      f'The train split {data.train_split!r} of {data.name!r} has {sizes["train"]} '
      f'examples; each of the {process_count} processes needs at least one.{hint}'
    )
  if sizes['eval'] < 1:  # The loop evaluates at the last step at least.
    raise SplitSizeError(
      f'The eval split {data.eval_split!r} of {data.name!r} is empty; evaluation needs '
      f'at least one clip.{hint}'
    )
  return sizes
