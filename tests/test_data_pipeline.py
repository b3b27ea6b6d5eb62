"""The grain pipeline: batches, determinism, exact resume, per-process shards."""

import hashlib
import threading

import grain
import ml_collections
import numpy as np
import pytest

from videogen.data import build, pipeline, shapes, shapes_tfds, sources, transforms
from videogen.data import config as data_config_lib

NUM_TRAIN, NUM_TEST = 12, 8


def _config(data_dir, batch_size=4, seed=0, **data_overrides) -> ml_collections.ConfigDict:
  data = data_config_lib.data_config('shapes', num_frames=3, resolution=16)
  data.data_dir = str(data_dir)
  data.num_train_examples = NUM_TRAIN
  data.num_test_examples = NUM_TEST
  data.source_num_frames = 6  # Longer than a clip: train starts vary.
  for key, value in data_overrides.items():
    data[key] = value
  return ml_collections.ConfigDict({'data': data, 'batch_size': batch_size, 'seed': seed})


@pytest.fixture(scope='module')
def data_dir(tmp_path_factory):
  path = tmp_path_factory.mktemp('tfds')
  build.ensure_built(_config(path).data, process_index=0, process_count=1)
  return path


def _take(iterator, count):
  return [next(iterator) for _ in range(count)]


def _digests(batches):
  """One id per clip (captions repeat; pixels do not)."""
  return [
    hashlib.sha1(video.tobytes()).hexdigest() for batch in batches for video in batch['video']
  ]


def _iterator(config, split='train', train=True, **kwargs):
  kwargs.setdefault('process_index', 0)
  kwargs.setdefault('process_count', 1)
  return pipeline.create_iterator(config, split, train=train, **kwargs)


def test_batches_have_the_documented_layout(data_dir):
  def text_features(texts):
    ids = np.array([[len(text), 1, 0] for text in texts], np.int32)
    return {'text_ids': ids, 'text_mask': (ids > 0).astype(np.int32)}

  batch = next(_iterator(_config(data_dir), text_features=text_features))
  assert batch['video'].shape == (4, 3, 16, 16, 3)
  assert batch['video'].dtype == np.float32
  assert batch['video'].min() == -1.0 and batch['video'].max() == 1.0
  assert batch['caption'].shape == (4,) and batch['caption'].dtype.kind == 'U'
  assert all(shapes.parse_caption(str(caption)) for caption in batch['caption'])
  assert batch['text_ids'].dtype == np.int32 and batch['text_mask'].dtype == np.int32
  np.testing.assert_array_equal(
    batch['text_ids'][:, 0], [len(caption) for caption in batch['caption']]
  )


def test_eval_is_in_order_from_frame_zero_and_drops_the_partial_batch(data_dir):
  config = _config(data_dir, batch_size=3, frame_stride=2)
  batches = list(_iterator(config, 'test', train=False))
  assert len(batches) == NUM_TEST // 3
  source = sources.open_source(config.data, 'test')
  for index, clip in enumerate(np.concatenate([b['video'] for b in batches])):
    stored = transforms.decode_frames(source[index]['video'])
    np.testing.assert_allclose(clip, stored[0:6:2] / 127.5 - 1.0, atol=1e-6)
  assert _digests(batches) == _digests(list(_iterator(config, 'test', train=False)))


def test_train_crops_random_windows_of_stored_clips(data_dir):
  config = _config(data_dir, batch_size=4)
  source = sources.open_source(config.data, 'train')
  windows = {}
  for index in range(NUM_TRAIN):
    stored = transforms.normalize(transforms.decode_frames(source[index]['video']))
    for start in range(4):
      windows[hashlib.sha1(stored[start : start + 3].tobytes()).hexdigest()] = start
  clips = _digests(_take(_iterator(config), 12))
  assert all(digest in windows for digest in clips)
  assert len({windows[digest] for digest in clips}) > 1  # Not always frame 0.


def test_same_seed_same_stream_other_seed_other_stream(data_dir):
  first = _digests(_take(_iterator(_config(data_dir, seed=3)), 4))
  again = _digests(_take(_iterator(_config(data_dir, seed=3)), 4))
  other = _digests(_take(_iterator(_config(data_dir, seed=4)), 4))
  assert first == again and first != other


def test_epochs_are_reshuffled_and_cover_the_split(data_dir):
  config = _config(data_dir, batch_size=NUM_TRAIN, num_frames=6)  # Whole stored clips.
  first, second = _take(_iterator(config), 2)
  assert sorted(_digests([first])) == sorted(_digests([second]))  # Whole split each.
  assert _digests([first]) != _digests([second])  # In a new order.


def test_resume_from_saved_state_is_exact(data_dir):
  config = _config(data_dir, batch_size=4)
  iterator = _iterator(config)
  _take(iterator, 5)  # Crosses an epoch boundary (12 clips, 4 per batch).
  state = iterator.get_state()
  expected = _take(iterator, 4)
  resumed = _iterator(config)
  resumed.set_state(state)
  for want, got in zip(expected, _take(resumed, 4), strict=True):
    np.testing.assert_array_equal(want['video'], got['video'])
    np.testing.assert_array_equal(want['caption'], got['caption'])


@pytest.mark.parametrize('train', [True, False])
def test_two_processes_get_disjoint_shards_covering_the_split(data_dir, train):
  config = _config(data_dir, batch_size=2)
  split, size = ('train', NUM_TRAIN) if train else ('test', NUM_TEST)
  shards = []
  for index in range(2):
    iterator = _iterator(config, split, train=train, process_index=index, process_count=2)
    batches = _take(iterator, size // 2) if train else list(iterator)
    assert all(batch['video'].shape[0] == 1 for batch in batches)
    shards.append(set(_digests(batches)))
  assert not shards[0] & shards[1]
  assert len(shards[0] | shards[1]) == size


def test_batch_size_must_divide_by_process_count(data_dir):
  with pytest.raises(ValueError, match=r'batch_size=5.*\(2\)'):
    _iterator(_config(data_dir, batch_size=5), process_index=0, process_count=2)


def test_stored_size_differing_from_config_is_resized(data_dir):
  config = _config(data_dir, height=12, width=8, source_height=16, source_width=16)
  batch = next(_iterator(config))
  assert batch['video'].shape == (4, 3, 12, 8, 3)


def test_missing_dataset_is_a_clear_error(tmp_path):
  with pytest.raises(sources.DatasetNotReadyError, match='build-dataset'):
    _iterator(_config(tmp_path))


def test_generic_helper_batches_any_random_access_source():
  source = [{'tokens': np.full((3,), i, np.int32)} for i in range(10)]

  def add_noise(example, rng):
    return {'tokens': example['tokens'], 'noise': rng.integers(1000)}

  iterator = pipeline.batched_iterator(
    source,
    batch_size=4,
    train=True,
    seed=1,
    example_fn=add_noise,
    process_index=1,
    process_count=2,
  )
  assert isinstance(iterator, grain.DatasetIterator)
  batch = next(iterator)
  assert batch['tokens'].shape == (2, 3) and set(batch['tokens'][:, 0]) <= {
    1,
    3,
    5,
    7,
    9,
  }
  state = iterator.get_state()
  expected = _take(iterator, 3)
  fresh = pipeline.batched_iterator(
    source,
    batch_size=4,
    train=True,
    seed=1,
    example_fn=add_noise,
    process_index=1,
    process_count=2,
  )
  fresh.set_state(state)
  for want, got in zip(expected, _take(fresh, 3), strict=True):
    np.testing.assert_array_equal(want['noise'], got['noise'])


def test_ensure_built_builds_on_process_zero_while_others_wait(tmp_path, monkeypatch):
  monkeypatch.setattr(build, '_POLL_SECONDS', 0.1)
  data = _config(tmp_path, num_train_examples=4, num_test_examples=2).data
  errors = []

  def waiter():
    try:
      build.ensure_built(data, process_index=1, process_count=2, timeout_s=120)
    except Exception as error:  # pylint: disable=broad-except
      errors.append(error)

  thread = threading.Thread(target=waiter)
  thread.start()
  assert not sources.get_builder(data).is_prepared()
  build.ensure_built(data, process_index=0, process_count=2)
  thread.join(timeout=120)
  assert not thread.is_alive() and errors == []
  assert sources.get_builder(data).is_prepared()


def test_waiting_process_times_out_with_a_clear_error(tmp_path, monkeypatch):
  monkeypatch.setattr(build, '_POLL_SECONDS', 0.05)
  data = _config(tmp_path).data
  with pytest.raises(TimeoutError, match='process 0'):
    build.ensure_built(data, process_index=1, process_count=2, timeout_s=0.2)


@pytest.mark.slow
def test_worker_processes_give_the_same_batches(data_dir):
  config = _config(data_dir)
  expected = _take(_iterator(config), 3)
  config.data.worker_count = 1
  iterator = _iterator(config)
  got = _take(iterator, 2)
  state = iterator.get_state()
  got += _take(iterator, 1)
  assert _digests(expected) == _digests(got)
  resumed = _iterator(config)
  resumed.set_state(state)
  assert _digests(_take(resumed, 1)) == _digests(expected[2:])


def test_split_captions(data_dir):
  captions = pipeline.split_captions(_config(data_dir), 'test', limit=3)
  expected = {
    shapes.generate_example(shapes_tfds.SPLIT_SEED_OFFSETS['test'] + i, 6, 16, 16).caption
    for i in range(NUM_TEST)
  }
  assert len(captions) == 3 and set(captions) <= expected


def test_one_pass_read_without_drop_remainder_keeps_every_example():
  """Shards of 10 examples over 3 processes: 4 + 3 + 3, none dropped."""
  source = [{'tokens': np.full((2,), i, np.int32)} for i in range(10)]
  seen = []
  for index in range(3):
    iterator = pipeline.batched_iterator(
      source,
      batch_size=6,
      train=False,
      seed=0,
      process_index=index,
      process_count=3,
      drop_remainder=False,
    )
    seen.extend(int(value) for batch in iterator for value in batch['tokens'][:, 0])
  assert sorted(seen) == list(range(10))
