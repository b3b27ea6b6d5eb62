"""The `config.data` section: which clips to train on and how to load them.

Three kinds of dataset share one section:

* `shapes`: procedural coloured shapes, built offline into TFDS by videogen.
* `video_folder`: a folder of the user's videos plus `captions.csv` or
  `captions.jsonl`, built into TFDS by videogen (`source_dir`).
* any prepared TFDS dataset by name (`ucf101`, `bair_robot_pushing_small`,
  `ucf101/ucf101_1:2.0.0`), with class labels turned into captions.

Built datasets land in `data_dir/<name>/<config name>/<version>/`; the config
name spells out frames, resolution and sizes (and, for `video_folder`, a hash
of the folder and its captions), so different settings never share files.
"""

from __future__ import annotations

import os

import ml_collections

SHAPES = 'shapes'
VIDEO_FOLDER = 'video_folder'
BUILT_DATASETS = (SHAPES, VIDEO_FOLDER)
# Eval batches carry float32 [b] weights under this key: 1 for a held-out clip,
# 0 for the padding that fills a last, partial batch (every clip counts once).
EVAL_MASK = 'eval_mask'

# Per-dataset defaults, keyed by dataset name: what a TFDS dataset needs to be
# usable by name, and what suits a built one.
_NAMED_DATASET_DEFAULTS = {
  # A shapes clip decodes in ~0.4 ms, so one reader thread stays far ahead of
  # any train step; four cost the tiny tokenizer 4% of its steps/s on 2 cores.
  SHAPES: dict(read_threads=1),
  # A user's test split is small and its videos long: evaluate every clip of them.
  VIDEO_FOLDER: dict(eval_clips_per_video=0),
  'bair_robot_pushing_small': dict(
    video_key='image_main', default_caption='a robot arm pushing objects'
  ),
}


def data_config(
  name: str = SHAPES, *, num_frames: int = 17, resolution: int = 64
) -> ml_collections.ConfigDict:
  """The data section of a training config.

  Args:
    name: 'shapes', 'video_folder' or the name of a prepared TFDS dataset.
    num_frames: frames per training clip.
    resolution: clip height and width in pixels.

  Returns:
    An unlocked ConfigDict (the experiment file locks the whole config).
  """
  data = ml_collections.ConfigDict()
  # One line per field, its comment included.
  # fmt: off
  data.name = name  # 'shapes', 'video_folder' or a prepared TFDS name ('ucf101', 'bair_robot_pushing_small', 'ucf101/ucf101_1:2.0.0').
  data.data_dir = ''  # TFDS data dir (local or gs://); '' = $TFDS_DATA_DIR or ~/tensorflow_datasets, like `tfds build`. '~' and $VARS expand.
  data.source_dir = ''  # video_folder: the folder of videos with captions.csv (path,caption) or captions.jsonl.
  data.manifest = ''  # video_folder: a clip manifest (.csv/.jsonl/.parquet: path, caption, optional start/end; see videogen/data/manifest.py) instead of captions.csv; relative paths start at source_dir, else at the manifest's folder.
  data.manifest_columns = ''  # video_folder: manifest column names that differ from the accepted ones, e.g. 'path=file,caption=desc'.
  data.clip_seconds = 0.0  # video_folder: cut each video (manifest row without a time range) into windows this long; 0 = one example per video/row.
  data.clip_stride_seconds = 0.0  # video_folder: seconds between window starts (clip_seconds > 0); 0 = back to back.
  data.scene_detect = ''  # video_folder: '' = off; 'content' = split each windowed video at its scene cuts first (PySceneDetect's ContentDetector, videogen[scenes]), so no window crosses a cut.
  data.scene_threshold = 27.0  # video_folder: ContentDetector's cut threshold (mean HSV change per frame, 0-255); lower finds more cuts.
  data.beam_runner = ''  # video_folder: build as an Apache Beam pipeline on this runner ('DirectRunner', 'DataflowRunner', 'FlinkRunner', 'SparkRunner'); '' = in process. Needs videogen[beam].
  data.tokens_dir = ''  # Transformer stage: train on the token shards `videogen tokenize --config C --out DIR` wrote to DIR (no tokenizer in the train state; samples need tokenizer.checkpoint); '' = tokenize clips in the step.
  data.beam_options = ''  # Beam pipeline options for beam_runner, e.g. '--direct_num_workers=4 --direct_running_mode=multi_processing'.
  data.num_frames = num_frames  # Frames per clip given to the model.
  data.height = resolution  # Clip height in pixels; stored clips of another size are centre-cropped and resized.
  data.width = resolution  # Clip width in pixels.
  data.frame_stride = 1  # Take every k-th stored frame; a clip spans (num_frames - 1) * frame_stride + 1 stored frames.
  data.train_split = 'train'  # TFDS split to train on (slices such as 'train[:90%]' work).
  data.eval_split = 'test'  # TFDS split to evaluate on.
  data.caption_template = 'a video of {label}'  # Caption for class-label datasets; {label} is the class name in words.
  data.default_caption = ''  # Caption for datasets with neither text nor labels; '' = such a dataset is an error.
  data.video_key = ''  # TFDS feature holding the video; '' = 'video', else the dataset's only Video feature.
  data.caption_key = ''  # TFDS Text or ClassLabel feature giving the caption; '' = the first Text, else 'label'/first ClassLabel.
  data.source_num_frames = 0  # Frames stored per built clip; 0 = shapes: the span one clip needs, video_folder: every frame.
  data.source_height = 0  # Height of built clips; 0 = height.
  data.source_width = 0  # Width of built clips; 0 = width.
  data.num_train_examples = 1000  # shapes: clips in the train split.
  data.num_test_examples = 100  # shapes: clips in the test split.
  data.min_objects = 1  # shapes: fewest objects per clip (1 or 2).
  data.max_objects = 2  # shapes: most objects per clip (1 or 2); the caption names every object.
  data.test_fraction = 0.05  # video_folder: share of videos in the test split (by a hash of the path; both splits get >= 1).
  data.eval_clips_per_video = 1  # Non-overlapping clips evaluated per stored eval video (from frame 0); 0 = all that fit.
  data.worker_count = 0  # grain worker processes; 0 = decode in threads of the training process (fastest on few cores).
  data.read_threads = 4  # Threads that read and decode examples ahead of the training step.
  data.prefetch_buffer_size = 64  # Decoded examples (not batches) kept ready per process.
  data.max_skipped_fraction = 0.01  # Training stops once more than this share of the examples read fail to decode or have the wrong shape (skipped until then).
  # fmt: on
  for key, value in _NAMED_DATASET_DEFAULTS.get(name.split('/')[0], {}).items():
    data[key] = value
  return data


def resolve_data_dir(data: ml_collections.ConfigDict) -> str:
  """The TFDS data dir that `data.data_dir` names, with '~' and $VARS expanded."""
  data_dir = data.data_dir or os.environ.get('TFDS_DATA_DIR', '~/tensorflow_datasets')
  if '://' in data_dir:  # gs:// and other remote paths are used as given.
    return data_dir
  return os.path.abspath(os.path.expanduser(os.path.expandvars(data_dir)))


def clip_span(data: ml_collections.ConfigDict) -> int:
  """Stored frames one clip covers: `(num_frames - 1) * frame_stride + 1`."""
  return (data.num_frames - 1) * data.frame_stride + 1


def stored_size(data: ml_collections.ConfigDict) -> tuple[int, int]:
  """(height, width) of the clips videogen builds for this config."""
  return (data.source_height or data.height, data.source_width or data.width)


def validate(data: ml_collections.ConfigDict) -> None:
  """Raises ValueError naming the first `config.data` field that is invalid."""
  positive = ['num_frames', 'height', 'width', 'frame_stride']
  if data.name == SHAPES:
    positive += ['num_train_examples', 'num_test_examples']
  for key in positive:
    if data[key] < 1:
      raise ValueError(f'config.data.{key} must be >= 1, got {data[key]}.')
  for key in (
    'source_num_frames',
    'source_height',
    'source_width',
    'worker_count',
    'eval_clips_per_video',
  ):
    if data.get(key, 0) < 0:
      raise ValueError(f'config.data.{key} must be >= 0, got {data[key]}.')
  if not 0 <= data.get('max_skipped_fraction', 0.0) <= 1:
    raise ValueError(
      f'config.data.max_skipped_fraction must be in [0, 1], got {data.max_skipped_fraction}.'
    )
  if data.read_threads < 1 or data.prefetch_buffer_size < 1:
    raise ValueError(
      'config.data.read_threads and prefetch_buffer_size must be >= 1, got '
      f'{data.read_threads} and {data.prefetch_buffer_size}.'
    )
  if data.name == SHAPES:
    if not 1 <= data.min_objects <= data.max_objects <= 2:
      raise ValueError(
        'config.data.min_objects and max_objects must satisfy 1 <= min <= max <= 2, '
        f'got {data.min_objects} and {data.max_objects}.'
      )
    if data.source_num_frames and data.source_num_frames < clip_span(data):
      raise ValueError(
        f'config.data.source_num_frames={data.source_num_frames} is shorter than one '
        f'clip: num_frames={data.num_frames} with frame_stride={data.frame_stride} '
        f'spans {clip_span(data)} frames.'
      )
  if data.name == VIDEO_FOLDER:
    if not data.source_dir and not data.get('manifest', ''):
      raise ValueError(
        "config.data.source_dir must name the video folder when name='video_folder' "
        '(e.g. --config.data.source_dir=/path/to/videos), or config.data.manifest a '
        'clip manifest.'
      )
    if data.get('clip_seconds', 0.0) < 0 or data.get('clip_stride_seconds', 0.0) < 0:
      raise ValueError(
        'config.data.clip_seconds and clip_stride_seconds must be >= 0, got '
        f'{data.clip_seconds} and {data.clip_stride_seconds}.'
      )
    scene_detect = data.get('scene_detect', '')
    if scene_detect not in ('', 'content'):
      raise ValueError(
        f"config.data.scene_detect={scene_detect!r}: use '' (off) or 'content' (PySceneDetect's "
        'ContentDetector).'
      )
    if scene_detect and not data.clip_seconds > 0:
      raise ValueError(
        f'config.data.scene_detect={scene_detect!r} cuts each scene into clip_seconds windows; '
        'set config.data.clip_seconds > 0.'
      )
    if scene_detect and not data.get('scene_threshold', 27.0) > 0:
      raise ValueError(f'config.data.scene_threshold must be > 0, got {data.scene_threshold}.')
    if not 0.0 < data.test_fraction < 1.0:
      raise ValueError(f'config.data.test_fraction must be in (0, 1), got {data.test_fraction}.')
    if data.source_num_frames and data.source_num_frames < clip_span(data):
      raise ValueError(
        f'config.data.source_num_frames={data.source_num_frames} is shorter than one '
        f'clip ({clip_span(data)} frames).'
      )
