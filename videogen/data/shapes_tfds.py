"""The `shapes` TFDS builder: procedural clips written as array_record.

Example `i` of a split is `shapes.generate_example(seed)` with
`seed = SPLIT_SEED_OFFSETS[split] + i`, so a split is reproducible from its
config alone and train and test never share a clip. The builder config name
spells out every setting that changes the data, e.g. `17f_64x64_1000-100_obj1-2`
(frames, size, train-test counts, objects per clip), so datasets of different
settings live side by side in one data dir.
"""

from __future__ import annotations

import dataclasses

import ml_collections
import tensorflow_datasets as tfds
from etils import epath

from videogen.data import config as config_lib
from videogen.data import shapes, video_io

SPLIT_SEED_OFFSETS = {'train': 0, 'test': 1 << 40}


@dataclasses.dataclass(eq=False)
class ShapesConfig(tfds.core.BuilderConfig):
  """What a shapes dataset contains (the name is derived from it)."""

  num_frames: int = 17
  height: int = 64
  width: int = 64
  num_train_examples: int = 1000
  num_test_examples: int = 100
  min_objects: int = 1
  max_objects: int = 2


def shapes_config(data: ml_collections.ConfigDict) -> ShapesConfig:
  """The builder config that `config.data` asks for."""
  num_frames = data.source_num_frames or config_lib.clip_span(data)
  height, width = config_lib.stored_size(data)
  name = (
    f'{num_frames}f_{height}x{width}_{data.num_train_examples}-'
    f'{data.num_test_examples}_obj{data.min_objects}-{data.max_objects}'
  )
  return ShapesConfig(
    name=name,
    description=(
      f'{num_frames} frames of {height}x{width}, {data.min_objects}-'
      f'{data.max_objects} objects, {data.num_train_examples} train / '
      f'{data.num_test_examples} test clips.'
    ),
    num_frames=num_frames,
    height=height,
    width=width,
    num_train_examples=data.num_train_examples,
    num_test_examples=data.num_test_examples,
    min_objects=data.min_objects,
    max_objects=data.max_objects,
  )


class Shapes(tfds.core.GeneratorBasedBuilder):
  """Coloured shapes moving on black, captioned "a red circle moving left"."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'First release.'}

  @tfds.core.utils.classproperty
  @classmethod
  def code_path(cls) -> epath.Path:
    # TFDS would find this file through `importlib_resources`, which it does
    # not install; naming it directly avoids that import.
    return epath.Path(__file__)

  def _info(self) -> tfds.core.DatasetInfo:
    config = self.builder_config
    return tfds.core.DatasetInfo(
      builder=self,
      description=(
        'Procedural clips of coloured shapes (square, circle, triangle) in '
        'eight exact colours moving left, right, up or down on black.'
      ),
      features=tfds.features.FeaturesDict(
        {
          'video': tfds.features.Video(shape=(config.num_frames, config.height, config.width, 3)),
          'caption': tfds.features.Text(),
        }
      ),
      supervised_keys=None,
    )

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    del dl_manager  # Nothing to download: clips are generated.
    config = self.builder_config
    return {
      'train': self._generate_examples('train', config.num_train_examples),
      'test': self._generate_examples('test', config.num_test_examples),
    }

  def _generate_examples(self, split: str, num_examples: int):
    config = self.builder_config
    for index in range(num_examples):
      example = shapes.generate_example(
        SPLIT_SEED_OFFSETS[split] + index,
        num_frames=config.num_frames,
        height=config.height,
        width=config.width,
        min_objects=config.min_objects,
        max_objects=config.max_objects,
      )
      yield (
        index,
        {
          'video': video_io.encode_png_frames(example.video),
          'caption': example.caption,
        },
      )
