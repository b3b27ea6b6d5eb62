"""From `config.data` to a TFDS builder and a random-access source of clips.

`open_source` gives every dataset the same face, whatever its features:
`source[i] == {'video': frames, 'caption': str}`, where `frames` holds the
stored frames still encoded (object array [T] of PNG/JPEG bytes; decode with
`transforms.decode_frames`, which decodes only the frames a clip uses) and
the caption comes from a Text feature, a class label through
`config.data.caption_template`, or `config.data.default_caption`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Iterator, Sequence

import ml_collections
import tensorflow_datasets as tfds
from absl import logging

from videogen.data import config as config_lib
from videogen.data import shapes_tfds, transforms, video_folder

ARRAY_RECORD = 'array_record'


class _DropCustomConfigNotice(logging.logging.Filter):
  """Hides TFDS's per-construction warning about configs outside BUILDER_CONFIGS.

  shapes and video_folder derive their config from `config.data` by design;
  the notice would repeat every time a source opens.
  """

  def filter(self, record) -> bool:
    return not str(record.msg).startswith('Using custom data configuration')


logging.get_absl_logger().addFilter(_DropCustomConfigNotice())


class DatasetNotReadyError(RuntimeError):
  """The dataset a config names is not prepared in its data dir."""


def get_builder(data: ml_collections.ConfigDict) -> tfds.core.DatasetBuilder:
  """The TFDS builder `config.data` names (nothing is built or read yet)."""
  data_dir = config_lib.resolve_data_dir(data)
  if data.name == config_lib.SHAPES:
    return shapes_tfds.Shapes(
      config=shapes_tfds.shapes_config(data),
      data_dir=data_dir,
      file_format=ARRAY_RECORD,
    )
  if data.name == config_lib.VIDEO_FOLDER:
    return video_folder.VideoFolder(
      config=video_folder.video_folder_config(data),
      data_dir=data_dir,
      file_format=ARRAY_RECORD,
    )
  try:
    return tfds.builder(data.name, data_dir=data_dir)
  except tfds.core.registered.DatasetNotFoundError as error:
    raise ValueError(
      f"Unknown dataset config.data.name={data.name!r}: not 'shapes', "
      "'video_folder' or a TFDS dataset name (e.g. 'ucf101')."
    ) from error


def not_prepared_message(data: ml_collections.ConfigDict, builder: tfds.core.DatasetBuilder) -> str:
  """How to prepare a TFDS-by-name dataset that is missing (nothing downloads here)."""
  data_dir = config_lib.resolve_data_dir(data)
  return (
    f'TFDS dataset {data.name!r} is not prepared in {data_dir} (looked in '
    f'{builder.data_path}). Prepare it where it can be downloaded, with '
    f'`tfds build {data.name} --data_dir={data_dir} --file_format=array_record` '
    '(or `videogen build-dataset --config CONFIG`), then copy it there or point '
    'config.data.data_dir at it.'
  )


class EncodedFrames(tfds.decode.Decoder):
  """Leaves a Video feature's frames as encoded image bytes.

  TFDS would decode every frame of every example; a training clip needs a
  few frames of each video (17 of ucf101's ~190).
  """

  def decode_example(self, serialized):
    return serialized

  def decode_example_np(self, serialized):
    return serialized

  def decode_batch_example_np(self, serialized):
    return serialized


@dataclasses.dataclass(frozen=True)
class Captioner:
  """Turns a decoded TFDS example into a caption.

  Attributes:
    text_key: Text feature to read, or '' when captions come from elsewhere.
    label_key: ClassLabel feature to read, or ''.
    label_names: class names of `label_key`, as words.
    template: caption for a label; `{label}` is replaced by the class name.
    fixed: caption for datasets with neither text nor labels.
  """

  text_key: str = ''
  label_key: str = ''
  label_names: tuple[str, ...] = ()
  template: str = 'a video of {label}'
  fixed: str = ''

  def __call__(self, example: dict[str, Any]) -> str:
    if self.text_key:
      text = example[self.text_key]
      return text.decode('utf-8') if isinstance(text, bytes) else str(text)
    if self.label_key:
      return self.template.format(label=self.label_names[int(example[self.label_key])])
    return self.fixed


def _features_of_type(features: tfds.features.FeaturesDict, kind: type) -> list[str]:
  return [key for key, feature in features.items() if isinstance(feature, kind)]


def resolve_video_key(data: ml_collections.ConfigDict, features: tfds.features.FeaturesDict) -> str:
  """The feature holding the video: config.data.video_key, 'video', or the only Video."""
  videos = _features_of_type(features, tfds.features.Video)
  if data.video_key:
    if data.video_key not in videos:
      raise ValueError(
        f'config.data.video_key={data.video_key!r} is not a Video feature of '
        f'{data.name!r}; Video features: {videos}.'
      )
    return data.video_key
  if 'video' in videos:
    return 'video'
  if len(videos) == 1:
    return videos[0]
  raise ValueError(
    f'Dataset {data.name!r} has Video features {videos}; set config.data.video_key '
    'to the one to train on.'
  )


def resolve_captioner(
  data: ml_collections.ConfigDict, features: tfds.features.FeaturesDict
) -> Captioner:
  """Where captions come from: a Text feature, a ClassLabel, or default_caption."""
  texts = _features_of_type(features, tfds.features.Text)
  labels = _features_of_type(features, tfds.features.ClassLabel)
  key = data.caption_key
  if key and key not in texts + labels:
    raise ValueError(
      f'config.data.caption_key={key!r} is not a Text or ClassLabel feature of '
      f'{data.name!r}; Text: {texts}, ClassLabel: {labels}.'
    )
  if key in texts or (not key and texts and 'caption' in texts):
    return Captioner(text_key=key or 'caption')
  if not key and texts:
    return Captioner(text_key=texts[0])
  label_key = key or ('label' if 'label' in labels else (labels[0] if labels else ''))
  if label_key:
    names = tuple(transforms.label_to_words(name) for name in features[label_key].names)
    return Captioner(label_key=label_key, label_names=names, template=data.caption_template)
  if data.default_caption:
    return Captioner(fixed=data.default_caption)
  raise ValueError(
    f'Dataset {data.name!r} has no Text or ClassLabel feature to caption clips '
    'with; set config.data.default_caption.'
  )


@dataclasses.dataclass(frozen=True)
class ClipSource:
  """Random access to `{'video': encoded frames, 'caption': str}` examples.

  Attributes:
    data_source: the TFDS data source of one split (video left encoded).
    video_key: feature holding the video.
    captioner: makes the caption from a decoded example.
    stored_shape: the Video feature's (time, height, width, channels);
      None marks a size that varies between clips.
  """

  data_source: Sequence[dict[str, Any]]
  video_key: str
  captioner: Captioner
  stored_shape: tuple[int | None, ...]

  def __len__(self) -> int:
    return len(self.data_source)

  def __getitem__(self, index: int) -> dict[str, Any]:
    example = self.data_source[index]
    return {'video': example[self.video_key], 'caption': self.captioner(example)}

  def __iter__(self) -> Iterator[dict[str, Any]]:
    for index in range(len(self)):
      yield self[index]


def open_source(data: ml_collections.ConfigDict, split: str) -> ClipSource:
  """The clips of one split of the dataset `config.data` names.

  Raises:
    DatasetNotReadyError: the dataset is not prepared (or not array_record).
  """
  builder = get_builder(data)
  if not builder.is_prepared():
    if data.name in config_lib.BUILT_DATASETS:
      raise DatasetNotReadyError(
        f'Dataset {data.name!r} is not built at {builder.data_path}; run '
        '`videogen build-dataset --config CONFIG` or call '
        'videogen.data.build.ensure_built(config.data) first.'
      )
    raise DatasetNotReadyError(not_prepared_message(data, builder))
  if builder.info.file_format is None or builder.info.file_format.value != ARRAY_RECORD:
    raise DatasetNotReadyError(
      f'Dataset {data.name!r} at {builder.data_path} is stored as '
      f'{builder.info.file_format.value if builder.info.file_format else "unknown"}; '
      'random access needs array_record. Convert it with `tfds convert_format '
      f'--dataset_version_dir={builder.data_path} --out_file_format=array_record` '
      'or rebuild it with --file_format=array_record.'
    )
  features = builder.info.features
  video_key = resolve_video_key(data, features)
  return ClipSource(
    data_source=builder.as_data_source(split=split, decoders={video_key: EncodedFrames()}),
    video_key=video_key,
    captioner=resolve_captioner(data, features),
    stored_shape=tuple(features[video_key].shape),
  )
