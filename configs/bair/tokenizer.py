"""Video tokenizer on BAIR robot pushing (TFDS `bair_robot_pushing_small`), 17x64x64.

  videogen train --config configs/bair/tokenizer.py \
      --config.data.data_dir=gs://bucket/tfds --workdir gs://bucket/runs/bair_tok
"""

from videogen.configs import common

from videogen import config_lib
from videogen.data import config as data_config


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, size='small', quantizer='fsq', gan=True, runlocal=False)
  data = data_config.data_config('bair_robot_pushing_small', num_frames=17, resolution=64)
  config = common.tokenizer_experiment(arg.size, arg.quantizer, data)
  # Natural video: the adversarial loss (MAGVIT-v2) sharpens what L2 blurs; `gan=False` to drop it.
  config.loss.gan.enabled = arg.gan
  if arg.runlocal:
    common.runlocal(config)
  return config_lib.lock(config)
