"""Token shards: a dataset split encoded once by the video tokenizer, in ArrayRecord.

`videogen tokenize --tokenizer T --config C --out DIR` writes

  DIR/tokens_info.json                                 latent shape, codes, clips and shards per split
  DIR/<split>/tokens-SSSSS-of-NNNNN.array_record       one record per clip

A split of N clips is cut into `ceil(N / clips_per_shard)` shards of
consecutive clips; process p of P encodes shards p, p + P, p + 2P, ... on all
its local devices. A shard is written to a temporary name and renamed when
complete, so after a kill or preemption a rerun skips every finished shard
and redoes only the rest (a leftover temporary file is overwritten). The
shard count depends on the split and `clips_per_shard` only, so a rerun may
use another number of processes.

Each record is a `tf.train.Example` (readable without videogen) with
`tokens` (bytes: int32 little-endian, C order), `shape` (int64 [3]: t, h,
w), `caption` (bytes, UTF-8) and `clip_id` (int64: the clip's index in the
split). A clip is taken from its stored video's first frame, as the video
pipeline's evaluation does (and the in-job token cache); random temporal crops
of video training are not part of the shards.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from typing import Any, Callable

import ml_collections
import numpy as np
from absl import logging
from etils import epath

from videogen.data import config as config_lib
from videogen.data import pipeline, sources, transforms

INFO_FILE = 'tokens_info.json'
Encode = Callable[[np.ndarray], np.ndarray]  # float32 [b, T, H, W, 3] -> int [b, t, h, w]


def shard_ranges(num_clips: int, num_shards: int) -> list[tuple[int, int]]:
  """[start, end) clip indices of each shard: consecutive, sizes differ by <= 1."""
  return [
    (s * num_clips // num_shards, (s + 1) * num_clips // num_shards) for s in range(num_shards)
  ]


def shards_of_process(num_shards: int, process_index: int, process_count: int) -> list[int]:
  """The shards one process encodes: every process_count-th from process_index."""
  return list(range(process_index, num_shards, process_count))


def shard_path(out: epath.PathLike, split: str, shard: int, num_shards: int) -> epath.Path:
  """Where shard `shard` of `num_shards` of `split` lives."""
  return (
    epath.Path(out) / _split_dir(split) / f'tokens-{shard:05d}-of-{num_shards:05d}.array_record'
  )


def _split_dir(split: str) -> str:
  """A directory name for a TFDS split string ('train[:90%]' -> 'train_90pct')."""
  name = split.replace('%', 'pct')
  return ''.join(c if c.isalnum() or c in '-_' else '_' for c in name).strip('_') or 'split'


def serialize(tokens: np.ndarray, caption: str, clip_id: int) -> bytes:
  """One record: a tf.train.Example of tokens, shape, caption and clip id."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top  # TFDS has imported it.

  tokens = np.ascontiguousarray(tokens, dtype='<i4')
  feature = {
    'tokens': tf.train.Feature(bytes_list=tf.train.BytesList(value=[tokens.tobytes()])),
    'shape': tf.train.Feature(int64_list=tf.train.Int64List(value=list(tokens.shape))),
    'caption': tf.train.Feature(bytes_list=tf.train.BytesList(value=[caption.encode('utf-8')])),
    'clip_id': tf.train.Feature(int64_list=tf.train.Int64List(value=[int(clip_id)])),
  }
  return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def parse(record: bytes) -> dict[str, Any]:
  """A record -> {'tokens': int32 [t, h, w], 'caption': str, 'clip_id': int}."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  example = tf.train.Example.FromString(record).features.feature
  shape = tuple(example['shape'].int64_list.value)
  tokens = np.frombuffer(example['tokens'].bytes_list.value[0], '<i4').reshape(shape)
  return {
    'tokens': tokens.astype(np.int32),
    'caption': example['caption'].bytes_list.value[0].decode('utf-8'),
    'clip_id': int(example['clip_id'].int64_list.value[0]),
  }


@dataclasses.dataclass(frozen=True)
class _Range:
  """Clips [start, end) of a split, each with its index as `clip_id`."""

  source: Any
  start: int
  end: int

  def __len__(self) -> int:
    return self.end - self.start

  def __getitem__(self, index: int) -> dict[str, Any]:
    return dict(self.source[self.start + index], clip_id=self.start + index)


@dataclasses.dataclass(frozen=True)
class _ClipWithId:
  """The pipeline's eval clip (frame 0 on), keeping the clip id (module-level: picklable)."""

  transform: pipeline.ClipTransform

  def __call__(self, example: dict[str, Any], rng: np.random.Generator | None) -> dict[str, Any]:
    return dict(self.transform(example, rng), clip_id=example['clip_id'])


@dataclasses.dataclass
class SplitReport:
  """What one process did for one split.

  Attributes:
    split: the split.
    num_clips: clips in the split.
    num_shards: shards of the split.
    encoded_shards: shards this process encoded now.
    skipped_shards: shards of this process found finished.
    encoded_clips: clips this process encoded now.
    seconds: time spent encoding.
  """

  split: str
  num_clips: int
  num_shards: int
  encoded_shards: int = 0
  skipped_shards: int = 0
  encoded_clips: int = 0
  seconds: float = 0.0

  @property
  def clips_per_s(self) -> float:
    return self.encoded_clips / self.seconds if self.seconds else 0.0


def write_split(
  config: ml_collections.ConfigDict,
  out: str,
  split: str,
  encode: Encode,
  *,
  batch_size: int,
  clips_per_shard: int = 1024,
  process_index: int = 0,
  process_count: int = 1,
) -> SplitReport:
  """Encodes this process's shards of `split` that are not finished yet.

  Args:
    config: a config whose `data` section names the (built) dataset.
    out: the output directory (local or `gs://`).
    split: the TFDS split.
    encode: video float32 [b, T, H, W, 3] in [-1, 1] -> tokens int [b, t, h, w];
      b <= batch_size.
    batch_size: clips per `encode` call.
    clips_per_shard: clips per shard (the last ones may hold one less).
    process_index: this process.
    process_count: processes sharing the work.
  """
  data = config.data
  source = sources.open_source(data, split)
  num_clips = len(source)
  num_shards = max(1, math.ceil(num_clips / clips_per_shard))
  report = SplitReport(split, num_clips, num_shards)
  ranges = shard_ranges(num_clips, num_shards)
  transform = _ClipWithId(
    pipeline.ClipTransform(data.num_frames, data.frame_stride, data.height, data.width)
  )
  mine = shards_of_process(num_shards, process_index, process_count)
  todo = [shard for shard in mine if not shard_path(out, split, shard, num_shards).exists()]
  report.skipped_shards = len(mine) - len(todo)
  if report.skipped_shards:
    logging.info(
      'tokenize %s: process %d skips %d finished shards of %d.',
      split,
      process_index,
      report.skipped_shards,
      len(mine),
    )
  mine_clips = sum(ranges[shard][1] - ranges[shard][0] for shard in todo)
  started = time.perf_counter()
  for shard in todo:
    path = shard_path(out, split, shard, num_shards)
    path.parent.mkdir(parents=True, exist_ok=True)
    report.encoded_clips += _write_shard(
      path, _Range(source, *ranges[shard]), transform, encode, batch_size, data
    )
    report.encoded_shards += 1
    report.seconds = time.perf_counter() - started
    logging.info(
      'tokenize %s: shard %d of %d done (process %d): %d/%d clips, %.1f clips/s.',
      split,
      shard + 1,
      num_shards,
      process_index,
      report.encoded_clips,
      mine_clips,
      report.clips_per_s,
    )
  return report


def _write_shard(
  path: epath.Path,
  clips: _Range,
  transform: _ClipWithId,
  encode: Encode,
  batch_size: int,
  data: ml_collections.ConfigDict,
) -> int:
  """Encodes one shard into a temporary file, then renames it into place."""
  from array_record.python import array_record_module  # pylint: disable=g-import-not-at-top

  temporary = path.parent / f'.{path.name}.tmp-{os.getpid()}'
  writer = array_record_module.ArrayRecordWriter(os.fspath(temporary), 'group_size:1')
  count = 0
  try:
    if len(clips):
      batches = pipeline.batched_iterator(
        clips,
        batch_size=batch_size,
        train=False,
        seed=0,
        example_fn=transform,
        process_index=0,
        process_count=1,
        read_threads=data.read_threads,
        prefetch_buffer_size=data.prefetch_buffer_size,
        drop_remainder=False,
      )
      for batch in batches:
        tokens = np.asarray(encode(transforms.normalize(batch['video'])))
        for clip_tokens, caption, clip_id in zip(
          tokens, batch['caption'], batch['clip_id'], strict=True
        ):
          writer.write(serialize(clip_tokens, str(caption), int(clip_id)))
          count += 1
  finally:
    writer.close()
  temporary.replace(path)
  return count


def write_info(out: str, info: dict[str, Any]) -> None:
  """Writes `DIR/tokens_info.json` (process 0, after its shards)."""
  path = epath.Path(out) / INFO_FILE
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(json.dumps(info, indent=2, sort_keys=True) + '\n')


def read_info(directory: str) -> dict[str, Any]:
  """`DIR/tokens_info.json`.

  Raises:
    FileNotFoundError: DIR is not a `videogen tokenize` output.
  """
  path = epath.Path(directory) / INFO_FILE
  if not path.exists():
    raise FileNotFoundError(
      f'{path} does not exist: not the --out directory of '
      '`videogen tokenize --tokenizer T --config C --out DIR`.'
    )
  return json.loads(path.read_text())


def check_compatible(directory: str, latent_shape, codebook_size: int) -> None:
  """Raises ValueError when DIR's tokens are not of this latent shape and codebook.

  Args:
    directory: a `videogen tokenize --config` output.
    latent_shape: (t, h, w) tokens per clip the model trains on.
    codebook_size: distinct tokens of its tokenizer.
  """
  info = read_info(directory)
  if list(info['latent_shape']) != list(latent_shape) or info['codebook_size'] != codebook_size:
    raise ValueError(
      f'Token shards in {directory} are {info["latent_shape"]} tokens of '
      f'{info["codebook_size"]} codes (tokenizer {info["tokenizer"]}); this run trains on '
      f"{list(latent_shape)} tokens of {codebook_size} codes. Tokenize with this run's "
      'tokenizer and clip size.'
    )


def token_space(directory: str, data: ml_collections.ConfigDict) -> tuple[tuple[int, ...], int]:
  """(latent shape (t, h, w), codebook size) of DIR's tokens, as tokens_info.json records them.

  What a run that trains on the shards without loading the tokenizer sizes its
  model by.

  Args:
    directory: a `videogen tokenize --config` output.
    data: the run's `config.data`; its clips must be the ones DIR was tokenized from.

  Raises:
    ValueError: DIR's clips have another frame count, frame stride or size.
  """
  info = read_info(directory)
  clip = info.get('clip')
  wanted = {key: data[key] for key in ('num_frames', 'frame_stride', 'height', 'width')}
  if clip is not None and {key: clip.get(key) for key in wanted} != wanted:
    raise ValueError(
      f'Token shards in {directory} are of clips {clip}; this run trains on clips {wanted} '
      '(config.data). Tokenize with this config, or set config.data to the clips of the shards.'
    )
  return tuple(int(size) for size in info['latent_shape']), int(info['codebook_size'])


class TokenShardSource:
  """Random access to every clip of a tokenized split, in clip order.

  `source[i] == {'tokens': int32 [t, h, w], 'caption': str, 'clip_id': i}`.
  """

  def __init__(self, directory: str, split: str):
    import grain  # pylint: disable=g-import-not-at-top

    info = read_info(directory)
    if split not in info.get('splits', {}):
      raise ValueError(
        f'{directory} holds splits {sorted(info.get("splits", {}))}, not {split!r}; '
        'tokenize it with the same config.'
      )
    num_shards = info['splits'][split]['shards']
    paths = [shard_path(directory, split, shard, num_shards) for shard in range(num_shards)]
    missing = [os.fspath(path) for path in paths if not path.exists()]
    if missing:
      raise FileNotFoundError(
        f'{len(missing)} of {num_shards} token shards of {split!r} are missing (first: '
        f'{missing[0]}); rerun `videogen tokenize` to finish them.'
      )
    self.info = info
    self._records = grain.sources.ArrayRecordDataSource([os.fspath(path) for path in paths])

  def __len__(self) -> int:
    return len(self._records)

  def __getitem__(self, index: int) -> dict[str, Any]:
    return parse(self._records[index])


def token_shard_iterator(
  config: ml_collections.ConfigDict,
  directory: str,
  split: str,
  *,
  train: bool,
  text_features: pipeline.TextFeatures | None = None,
  process_index: int | None = None,
  process_count: int | None = None,
):
  """Per-process batches of the token shards of `split` in `directory`.

  Train: shuffled, repeated, resumable, like the video pipeline. Eval: every
  clip once, in whole batches padded with weight-0 copies (`eval_mask`).

  Returns:
    A grain iterator of {'tokens': int32 [b, t, h, w], 'caption': str [b],
    and the arrays of `text_features`} (+ `eval_mask` float32 [b] in eval).
  """
  source = TokenShardSource(directory, split)
  finish = _FinishTokens(text_features)
  if train:
    return pipeline.batched_iterator(
      source,
      batch_size=config.batch_size,
      train=True,
      seed=config.seed,
      batch_fn=finish,
      process_index=process_index,
      process_count=process_count,
      read_threads=config.data.read_threads,
      prefetch_buffer_size=config.data.prefetch_buffer_size,
    )
  if process_index is None or process_count is None:
    import jax  # pylint: disable=g-import-not-at-top  # Not needed when both are given.

    process_index = jax.process_index() if process_index is None else process_index
    process_count = jax.process_count() if process_count is None else process_count
  index, count = process_index, process_count
  local = pipeline.per_process_batch_size(config.batch_size, count)
  entries = pipeline.pad_eval_shard(
    [(clip, 0) for clip in range(len(source))],
    process_index=index,
    process_count=count,
    local_batch_size=local,
  )
  return pipeline.batched_iterator(
    pipeline.EvalClips(source, entries),
    batch_size=local,
    train=False,
    seed=config.seed,
    example_fn=_drop_clip_start,
    batch_fn=finish,
    process_index=0,
    process_count=1,
  )


def _drop_clip_start(example: dict[str, Any], rng: np.random.Generator | None) -> dict[str, Any]:
  del rng
  return {key: value for key, value in example.items() if key != pipeline.CLIP_START}


@dataclasses.dataclass(frozen=True)
class _FinishTokens:
  """Per batch: int32 tokens, captions and their text features."""

  text_features: pipeline.TextFeatures | None

  def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    out = {
      'tokens': np.asarray(batch['tokens'], np.int32),
      'caption': np.asarray(batch['caption'], dtype=str),
      'clip_id': np.asarray(batch['clip_id'], np.int64),
    }
    if config_lib.EVAL_MASK in batch:
      out[config_lib.EVAL_MASK] = np.asarray(batch[config_lib.EVAL_MASK], np.float32)
    if self.text_features is not None:
      out.update(self.text_features([str(caption) for caption in out['caption']]))
    return out
