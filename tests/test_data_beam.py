"""The video_folder build as an Apache Beam pipeline (DirectRunner, 2 workers) writes the
same records as the in-process build.

The `beam` extra is part of `test` (apache-beam 2.77.0; pip resolves protobuf 6.x and
pyarrow 25.x for it), so this runs wherever the tests do.
"""

import glob

import numpy as np

from videogen.data import build, shapes, video_io
from videogen.data import config as data_config_lib


def _records(data_dir: str, split: str) -> list[dict]:
  import tensorflow as tf  # noqa: PLC0415
  from array_record.python import array_record_data_source  # noqa: PLC0415

  files = sorted(glob.glob(f'{data_dir}/video_folder/*/*/*-{split}.array_record*'))
  source = array_record_data_source.ArrayRecordDataSource(files)
  records = []
  for index in range(len(source)):
    features = tf.train.Example.FromString(source[index]).features.feature
    records.append({key: list(value.bytes_list.value) for key, value in features.items()})
  return records


def test_beam_build_equals_the_local_build(tmp_path):
  long = np.concatenate([shapes.generate_example(seed, 16, 32, 32).video for seed in range(3)])
  video_io.write_video(tmp_path / 'long.mp4', long, fps=8)
  for seed in range(3):
    video = shapes.generate_example(10 + seed, 12, 32, 32).video
    video_io.write_video(tmp_path / f'v{seed}.mp4', video, fps=8)
  (tmp_path / 'clips.csv').write_text(
    'path,caption,start,end\n'
    'long.mp4,first,0,2\n'
    'long.mp4,later,00:00:03.000,00:00:05.000\n'
    'long.mp4,past the end,5,9\n'
    'v0.mp4,zero,,\n'
    'v1.mp4,one,,\n'
    'v2.mp4,two,0.5,\n'
    'gone.mp4,missing,,\n'
  )
  reports = {}
  for name, beam in (('local', ''), ('beam', 'DirectRunner')):
    data = data_config_lib.data_config('video_folder', num_frames=5, resolution=16)
    data.manifest = str(tmp_path / 'clips.csv')
    data.data_dir = str(tmp_path / name)
    data.beam_runner = beam
    data.beam_options = '--direct_num_workers=2 --direct_running_mode=multi_processing'
    reports[name] = build.build_dataset(data)
  local, beam = reports['local'], reports['beam']
  assert beam.config_name == local.config_name
  assert beam.num_examples == local.num_examples and sum(local.num_examples.values()) == 5
  assert [(s.row, s.reason) for s in beam.skipped] == [(s.row, s.reason) for s in local.skipped]
  assert [s.row for s in local.skipped] == [3, 7]
  for split in ('train', 'test'):
    assert _records(str(tmp_path / 'beam'), split) == _records(str(tmp_path / 'local'), split)
