"""Video tokenizer on your own videos: a folder + captions.csv (or captions.jsonl).

  videogen build-dataset --config configs/video_folder/tokenizer.py \
      --config.data.source_dir=/path/to/videos
  videogen train --config configs/video_folder/tokenizer.py \
      --config.data.source_dir=/path/to/videos --workdir runs/my_tok
"""

from videogen.configs import common

from videogen import config_lib
from videogen.data import config as data_config


def get_config(arg=None):
  arg = config_lib.parse_arg(
    arg, size='small', quantizer='fsq', frames=17, resolution=64, runlocal=False
  )
  data = data_config.data_config('video_folder', num_frames=arg.frames, resolution=arg.resolution)
  config = common.tokenizer_experiment(arg.size, arg.quantizer, data)
  # A folder's test split is small: every held-out clip counts, once (cap it for a large one).
  config.num_eval_batches = -1
  if arg.runlocal:
    common.runlocal(config)
  return config_lib.lock(config)
