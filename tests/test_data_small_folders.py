"""Small folders: padded, masked eval batches, several clips per long test video,
split sizes checked before the first step."""

import pathlib

import ml_collections
import numpy as np
import pytest

from tests import helpers
from videogen import config_lib
from videogen.data import build, pipeline, shapes, sources, transforms, video_folder, video_io
from videogen.data import config as data_config_lib

NUM_FRAMES = 5


def _write_folder(root: pathlib.Path, lengths: dict[str, int]) -> pathlib.Path:
  root.mkdir(parents=True, exist_ok=True)
  rows = ['path,caption']
  for seed, (name, length) in enumerate(lengths.items()):
    video_io.write_video(root / name, shapes.generate_example(seed, length, 16, 16).video, fps=8)
    rows.append(f'{name},clip {seed}')
  (root / 'captions.csv').write_text('\n'.join(rows) + '\n')
  return root


@pytest.fixture(scope='module')
def small_folder(tmp_path_factory) -> tuple[pathlib.Path, str]:
  """Three MP4 videos; the one the split hash puts in `test` is 3 clips long."""
  names = ['a.mp4', 'b.mp4', 'c.mp4']
  test_name = min(names, key=video_folder._path_hash)
  lengths = {name: (3 * NUM_FRAMES + 2 if name == test_name else 7) for name in names}
  return _write_folder(tmp_path_factory.mktemp('small') / 'videos', lengths), test_name


def _data(source_dir, data_dir) -> ml_collections.ConfigDict:
  data = data_config_lib.data_config('video_folder', num_frames=NUM_FRAMES, resolution=16)
  data.source_dir = str(source_dir)
  data.data_dir = str(data_dir)
  return data


def test_padded_shards_cover_every_clip_once():
  clips = [(index, 0) for index in range(5)]
  shards = [
    pipeline.pad_eval_shard(clips, process_index=i, process_count=2, local_batch_size=4)
    for i in range(2)
  ]
  assert [len(shard) for shard in shards] == [4, 4]  # Same steps on every process.
  real = [(index, start) for shard in shards for index, start, weight in shard if weight == 1.0]
  assert sorted(real) == clips
  assert sum(weight == 0.0 for shard in shards for *_, weight in shard) == 3
  # More processes than clips: a process with none still runs one padded batch.
  empty = pipeline.pad_eval_shard(clips[:1], process_index=1, process_count=2, local_batch_size=2)
  assert [weight for *_, weight in empty] == [0.0, 0.0]
  with pytest.raises(ValueError, match='no clips'):
    pipeline.pad_eval_shard([], process_index=0, process_count=1, local_batch_size=2)


def test_long_videos_give_several_clips_window_by_window():
  source = [{'video': [b''] * length} for length in (12, 4, 7)]
  assert pipeline.eval_clip_starts(source, 5, 0) == [(0, 0), (1, 0), (2, 0), (0, 5)]
  assert pipeline.eval_clip_starts(source, 3, 2) == [(0, 0), (1, 0), (2, 0), (0, 3), (2, 3)]
  assert pipeline.eval_clip_starts(source, 5, 1) == [(0, 0), (1, 0), (2, 0)]


def test_eval_iterator_pads_and_masks_a_split_smaller_than_a_batch(small_folder, tmp_path):
  folder, test_name = small_folder
  config = ml_collections.ConfigDict(
    {'data': _data(folder, tmp_path), 'batch_size': 8, 'seed': 0, 'num_eval_batches': 4}
  )
  build.ensure_built(config.data)
  assert pipeline.check_split_sizes(config, process_count=1) == {'train': 2, 'eval': 1}
  batches = list(pipeline.create_eval_iterator(config, process_index=0, process_count=1))
  assert len(batches) == 1
  batch = batches[0]
  assert batch['video'].shape == (8, NUM_FRAMES, 16, 16, 3)
  np.testing.assert_array_equal(batch[pipeline.EVAL_MASK], [1, 1, 1, 0, 0, 0, 0, 0])
  stored = transforms.decode_frames(sources.open_source(config.data, 'test')[0]['video'])
  assert len(stored) == 3 * NUM_FRAMES + 2
  for window in range(3):  # Three non-overlapping clips of the long test video.
    expected = transforms.normalize(stored[window * NUM_FRAMES : (window + 1) * NUM_FRAMES])
    np.testing.assert_allclose(batch['video'][window], expected, atol=1e-6)
  # Two processes: every clip in exactly one process's batches, the same step count.
  per_process = [
    next(pipeline.create_eval_iterator(config, process_index=i, process_count=2)) for i in range(2)
  ]
  assert [b[pipeline.EVAL_MASK].tolist() for b in per_process] == [[1, 1, 0, 0], [1, 0, 0, 0]]


def test_whole_split_or_a_cap_of_batches(small_folder, tmp_path):
  folder, _ = small_folder
  config = ml_collections.ConfigDict({'data': _data(folder, tmp_path), 'batch_size': 2, 'seed': 0})
  build.ensure_built(config.data)
  iterator = lambda: pipeline.create_eval_iterator(config, process_index=0, process_count=1)
  every = list(pipeline.take_eval_batches(iterator(), -1))  # 3 held-out clips, batches of 2.
  assert [b[pipeline.EVAL_MASK].tolist() for b in every] == [[1, 1], [1, 0]]
  assert len(list(pipeline.take_eval_batches(iterator(), 1))) == 1
  for bad in (0, -2):
    config.num_eval_batches = bad
    with pytest.raises(ValueError, match=rf'num_eval_batches={bad}: .* or -1 for the whole'):
      pipeline.check_split_sizes(config, process_count=1)


def test_train_split_smaller_than_the_process_count_fails_before_any_step(small_folder, tmp_path):
  folder, _ = small_folder
  config = ml_collections.ConfigDict(
    {'data': _data(folder, tmp_path), 'batch_size': 8, 'seed': 0, 'num_eval_batches': 4}
  )
  build.ensure_built(config.data)
  with pytest.raises(ValueError, match=r"train split 'train' of 'video_folder' has 2 examples"):
    pipeline.check_split_sizes(config, process_count=4)


def test_tokenizer_masks_padding_out_of_its_metrics():
  from tests import test_vq_task  # noqa: PLC0415  (its tiny config and 2-step trainer)

  config = test_vq_task.tiny_config()
  task, state, _, _ = test_vq_task.train(config, steps=1)
  batch = test_vq_task.random_batch(0)
  mask = np.array([1, 1, 1, 1, 1, 0, 0, 0], np.float32)
  padded = dict(batch, eval_mask=mask)
  other = dict(padded, video=batch['video'].copy())
  other['video'][5:] = -1.0  # Different padding content: the metrics must not move.
  first = task.evaluate(state, [padded], step=1, sample_dir=None)
  second = task.evaluate(state, [other], step=1, sample_dir=None)
  assert first == pytest.approx(second, rel=1e-6)
  unmasked = task.evaluate(state, [dict(batch)], step=1, sample_dir=None)
  assert first['psnr'] != pytest.approx(unmasked['psnr'], rel=1e-6)


@pytest.mark.integration
def test_small_folder_trains_and_evaluates_with_a_batch_larger_than_its_test_split(
  small_folder, tmp_path
):
  """The issue's crash: 1 test video and a batch of 8 failed at the first eval."""
  from videogen import stages  # noqa: PLC0415

  folder, _ = small_folder
  config = config_lib.load_config_file(
    str(helpers.CONFIGS / 'video_folder' / 'tokenizer.py') + ':size=tiny,runlocal,frames=5'
  )
  overrides = {
    key: value for key, value in helpers.TINY_TOKENIZER.items() if not key.startswith('data.')
  }
  overrides.update(
    {
      'data.source_dir': str(folder),
      'data.data_dir': str(tmp_path / 'tfds'),
      'data.height': 16,
      'data.width': 16,
      'num_train_steps': 2,
      'eval_every_steps': 1,
      'log_every_steps': 1,
      'checkpoint_every_steps': 1000,
      'checkpoint.async_save': False,
      'num_eval_batches': -1,
    }
  )
  config_lib.apply_overrides(config, overrides)
  result = stages.train(config, str(tmp_path / 'run'))
  assert result.step == 2
  assert np.isfinite(result.eval_metrics['psnr'])
  assert result.eval_metrics['clips'] == 3  # The long test video's three clips, once each.
