"""Video continuation on BAIR robot pushing: one caption, frames as the condition.

BAIR has no text; every clip gets `data.caption_template`. Sample with
`videogen sample --prefix_video` to continue a clip.

  videogen train --config configs/bair/transformer.py \
      --config.tokenizer.checkpoint=gs://bucket/runs/bair_tok --workdir gs://bucket/runs/bair_t2v
"""

from videogen.configs import common

from videogen import config_lib
from videogen.data import config as data_config


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, size='small', runlocal=False)
  data = data_config.data_config('bair_robot_pushing_small', num_frames=17, resolution=64)
  config = common.transformer_experiment(arg.size, data)
  config.model.text_dropout_prob = 0.0
  if arg.runlocal:
    common.runlocal(config)
  return config_lib.lock(config)
