"""Damaged training examples: skipped, counted, resumable; too many stop the run."""

import json

import numpy as np
import pytest

from tests import helpers
from videogen import stages
from videogen.data import pipeline, sources

BAD_READ = {3, 17}  # Records that fail to read (a damaged shard).
BAD_SHAPE = {8}  # A record whose video is cut short (a source changed under the dataset).


class _Source:
  """32 tiny clips; some records fail to read, one has too few frames."""

  def __len__(self):
    return 32

  def __getitem__(self, index):
    if index in BAD_READ:
      raise ValueError(f'corrupt record {index}')
    frames = 2 if index in BAD_SHAPE else 5
    return {'video': np.full((frames, 4, 4, 3), index, np.uint8), 'caption': f'clip {index}'}


def _clip(example, rng):
  del rng
  if example['video'].shape[0] != 5:
    raise ValueError(f'clip of shape {example["video"].shape}')
  return {'index': np.int32(example['video'][0, 0, 0, 0])}


def _iterator(**kwargs):
  return pipeline.batched_iterator(
    _Source(),
    batch_size=4,
    train=True,
    seed=0,
    example_fn=_clip,
    process_index=0,
    process_count=1,
    read_threads=2,
    skip_bad_examples=True,
    **kwargs,
  )


def test_bad_examples_are_skipped_counted_and_the_stream_resumes_exactly():
  iterator = _iterator()
  batches = [next(iterator) for _ in range(16)]  # 64 good examples: over two passes.
  seen = np.concatenate([b['index'] for b in batches])
  assert not set(seen.tolist()) & (BAD_READ | BAD_SHAPE)
  assert set(seen[:29].tolist()) == set(range(32)) - BAD_READ - BAD_SHAPE
  counts = [int(b[pipeline.SKIPPED]) for b in batches]
  assert counts == sorted(counts) and 6 <= counts[-1] <= 9  # 64 good: 2-3 passes of 3 bad.
  assert int(batches[0][pipeline.SHARD_SIZE]) == 32

  # Exact resume: state after 5 batches, a fresh iterator, the same next batches.
  resumed = _iterator()
  first = _iterator()
  for _ in range(5):
    next(first)
  resumed.set_state(first.get_state())
  for expected in batches[5:]:
    np.testing.assert_array_equal(next(resumed)['index'], expected['index'])


def test_without_skipping_a_bad_example_raises():
  iterator = pipeline.batched_iterator(
    _Source(),
    batch_size=4,
    train=True,
    seed=0,
    example_fn=_clip,
    process_index=0,
    process_count=1,
    read_threads=1,
  )
  with pytest.raises(ValueError):
    for _ in range(16):
      next(iterator)


class _DamagedTrainSplit:
  """The real train split with records 1 and 2 unreadable."""

  def __init__(self, source):
    self.source = source

  def __len__(self):
    return len(self.source)

  def __getitem__(self, index):
    if index in (1, 2):
      raise OSError(f'array_record: corrupt chunk at record {index}')
    return self.source[index]


@pytest.fixture
def damaged_train_split(monkeypatch):
  original = sources.open_source

  def open_source(data, split):
    source = original(data, split)
    return _DamagedTrainSplit(source) if split == data.train_split else source

  monkeypatch.setattr(pipeline.sources, 'open_source', open_source)


def _config(data_dir, fraction):
  return helpers.tiny_config(
    'tokenizer',
    data_dir,
    **{
      'num_train_steps': 4,
      'log_every_steps': 2,
      'eval_every_steps': 0,
      'checkpoint_every_steps': 100,
      'checkpoint.async_save': False,
      'num_eval_batches': 1,
      'data.max_skipped_fraction': fraction,
    },
  )


def test_training_skips_damaged_records_and_logs_the_count(tmp_path, damaged_train_split):
  workdir = tmp_path / 'run'
  result = stages.train(_config(str(tmp_path / 'data'), 0.1), str(workdir))
  assert result.step == 4
  records = [json.loads(line) for line in (workdir / 'metrics.jsonl').read_text().splitlines()]
  skipped = [r['data/skipped_examples'] for r in records if 'data/skipped_examples' in r]
  assert skipped and skipped[-1] == 2  # 32 examples, 4 steps of 8: one pass, both bad ones.
  assert result.last_train_metrics['data/skipped_examples'] == 2


def test_too_many_damaged_records_stop_the_run_with_a_message(tmp_path, damaged_train_split):
  with pytest.raises(pipeline.TooManySkippedExamples, match=r'max_skipped_fraction=0\.01'):
    stages.train(_config(str(tmp_path / 'data'), 0.01), str(tmp_path / 'run'))
