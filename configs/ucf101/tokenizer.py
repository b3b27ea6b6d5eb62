"""Video tokenizer on UCF-101 (TFDS `ucf101`), 17 frames at 128x128.

UCF-101 must be prepared in `data.data_dir` first (TFDS downloads it where
the network allows: `tfds build ucf101 --data_dir DIR`).

  videogen train --config configs/ucf101/tokenizer.py \
      --config.data.data_dir=gs://bucket/tfds --workdir gs://bucket/runs/ucf_tok
"""

from videogen.configs import common

from videogen import config_lib
from videogen.data import config as data_config


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, size='base', quantizer='fsq', gan=True, runlocal=False)
  data = data_config.data_config('ucf101', num_frames=17, resolution=128)
  config = common.tokenizer_experiment(arg.size, arg.quantizer, data)
  # Natural video: the adversarial loss (MAGVIT-v2) sharpens what L2 blurs; `gan=False` to drop it.
  config.loss.gan.enabled = arg.gan
  if arg.runlocal:
    common.runlocal(config)
  return config_lib.lock(config)
