"""TFDS datasets by name (ucf101-like, bair-like), on tiny datasets built here."""

import ml_collections
import numpy as np
import pytest
import tensorflow_datasets as tfds

from videogen.data import build, pipeline, sources
from videogen.data import config as data_config_lib

ACTIONS = ['ApplyEyeMakeup', 'PlayingGuitar', 'sea_lion']


class VideogenTestActions(tfds.core.GeneratorBasedBuilder):
  """ucf101-like: variable-length 20x24 videos with a ClassLabel, no text."""

  VERSION = tfds.core.Version('1.0.0')

  def _info(self):
    return tfds.core.DatasetInfo(
      builder=self,
      features=tfds.features.FeaturesDict(
        {
          'video': tfds.features.Video(shape=(None, 20, 24, 3)),
          'label': tfds.features.ClassLabel(names=ACTIONS),
        }
      ),
    )

  def _split_generators(self, dl_manager):
    return {'train': self._generate_examples(6), 'test': self._generate_examples(3)}

  def _generate_examples(self, count):
    for index in range(count):
      # Frame t of example i is flat grey 40 * i + 5 * t; clips have 3 + i frames.
      video = (40 * index + 5 * np.arange(3 + index, dtype=np.uint8))[:, None, None, None]
      video = np.broadcast_to(video, (3 + index, 20, 24, 3))
      yield index, {'video': video, 'label': index % len(ACTIONS)}


class VideogenTestRobot(tfds.core.GeneratorBasedBuilder):
  """bair-like: two cameras, no caption or label."""

  VERSION = tfds.core.Version('1.0.0')

  def _info(self):
    video = tfds.features.Video(shape=(4, 16, 16, 3))
    return tfds.core.DatasetInfo(
      builder=self,
      features=tfds.features.FeaturesDict({'image_main': video, 'image_aux1': video}),
    )

  def _split_generators(self, dl_manager):
    return {'train': self._generate_examples(4), 'test': self._generate_examples(2)}

  def _generate_examples(self, count):
    for index in range(count):
      main = np.full((4, 16, 16, 3), 200, np.uint8)
      yield index, {'image_main': main, 'image_aux1': np.zeros_like(main)}


@pytest.fixture(scope='module')
def data_dir(tmp_path_factory):
  path = tmp_path_factory.mktemp('tfds')
  for builder_class in (VideogenTestActions, VideogenTestRobot):
    builder_class(data_dir=str(path), file_format='array_record').download_and_prepare()
  return path


def _config(name, data_dir, **overrides):
  data = data_config_lib.data_config(name, num_frames=4, resolution=16)
  data.data_dir = str(data_dir)
  for key, value in overrides.items():
    data[key] = value
  return ml_collections.ConfigDict({'data': data, 'batch_size': 2, 'seed': 0})


def test_class_labels_become_captions(data_dir):
  config = _config('videogen_test_actions', data_dir)
  build.ensure_built(config.data)  # Prepared: a quiet no-op.
  batches = list(
    pipeline.create_iterator(config, 'train', train=False, process_index=0, process_count=1)
  )
  assert len(batches) == 3 and batches[0]['video'].shape == (2, 4, 16, 16, 3)
  words = ['apply eye makeup', 'playing guitar', 'sea lion']
  seen = set()
  for batch in batches:
    for video, caption in zip(batch['video'], batch['caption'], strict=True):
      grey = np.round((video[:, 0, 0, 0] + 1.0) * 127.5).astype(int)
      index = grey[0] // 40
      seen.add(index)
      assert caption == f'a video of {words[index % 3]}'
      # Eval starts at frame 0; a clip shorter than 4 frames holds its last one.
      frames = np.minimum(np.arange(4), 2 + index)
      np.testing.assert_array_equal(grey, 40 * index + 5 * frames)
      assert np.ptp(video[0]) == 0  # Flat frames stay flat through crop + resize.
  assert seen == set(range(6))


def test_caption_template_is_configurable(data_dir):
  config = _config('videogen_test_actions', data_dir, caption_template='{label}')
  iterator = pipeline.create_iterator(config, 'test', train=True, process_index=0, process_count=1)
  captions = {str(c) for c in next(iterator)['caption']}
  assert captions <= {'apply eye makeup', 'playing guitar', 'sea lion'}


def test_dataset_without_text_uses_default_caption_and_video_key(data_dir):
  config = _config('videogen_test_robot', data_dir)
  with pytest.raises(ValueError, match='video_key'):  # Two cameras: ambiguous.
    sources.open_source(config.data, 'train')
  config.data.video_key = 'image_main'
  with pytest.raises(ValueError, match='default_caption'):
    sources.open_source(config.data, 'train')
  config.data.default_caption = 'a robot arm pushing objects'
  batch = next(
    pipeline.create_iterator(config, 'train', train=True, process_index=0, process_count=1)
  )
  assert list(batch['caption']) == ['a robot arm pushing objects'] * 2
  np.testing.assert_allclose(batch['video'], 200 / 127.5 - 1.0, atol=1e-6)


def test_named_defaults_for_bair():
  data = data_config_lib.data_config('bair_robot_pushing_small')
  assert data.video_key == 'image_main'
  assert data.default_caption == 'a robot arm pushing objects'


def test_unprepared_dataset_says_how_to_prepare_it(tmp_path):
  data = _config('videogen_test_actions', tmp_path).data
  with pytest.raises(sources.DatasetNotReadyError) as error:
    build.ensure_built(data)
  message = str(error.value)
  assert 'tfds build videogen_test_actions' in message and str(tmp_path) in message
  assert 'videogen build-dataset' in message


def test_unknown_name_is_a_clear_error(tmp_path):
  with pytest.raises(ValueError, match="config.data.name='no_such_dataset_xyz'"):
    build.ensure_built(_config('no_such_dataset_xyz', tmp_path).data)


def test_tfrecord_dataset_is_refused_with_a_conversion_hint(tmp_path):
  VideogenTestRobot(data_dir=str(tmp_path), file_format='tfrecord').download_and_prepare()
  data = _config('videogen_test_robot', tmp_path, video_key='image_main', default_caption='x').data
  with pytest.raises(sources.DatasetNotReadyError, match='convert_format'):
    sources.open_source(data, 'train')
