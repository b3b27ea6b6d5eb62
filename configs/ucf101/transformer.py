"""Class-conditional text-to-video transformer on UCF-101 ("a video of {label}").

  videogen train --config configs/ucf101/transformer.py \
      --config.tokenizer.checkpoint=gs://bucket/runs/ucf_tok \
      --config.data.data_dir=gs://bucket/tfds --workdir gs://bucket/runs/ucf_t2v
"""

from videogen.configs import common

from videogen import config_lib
from videogen.data import config as data_config


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, size='base', runlocal=False)
  data = data_config.data_config('ucf101', num_frames=17, resolution=128)
  config = common.transformer_experiment(arg.size, data)
  config.model.max_latent_frames = 32
  if arg.runlocal:
    common.runlocal(config)
  return config_lib.lock(config)
