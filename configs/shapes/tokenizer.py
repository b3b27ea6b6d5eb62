"""Video tokenizer (causal 3D CNN + FSQ/LFQ/VQ) on the procedural shapes dataset.

  videogen train --config configs/shapes/tokenizer.py --workdir runs/tokenizer
  videogen train --config configs/shapes/tokenizer.py:size=tiny --workdir runs/tok_tiny
  videogen train --config configs/shapes/tokenizer.py:quantizer=lfq,runlocal --workdir /tmp/t

`size=tiny` is the quickstart size (9 frames at 32x32, minutes on a laptop
CPU); `small` (the default) is 17 frames at 64x64; `base` is MAGVIT-v2's
width. `runlocal` shrinks steps and batch for a smoke test.
"""

from videogen.configs import common

from videogen import config_lib
from videogen.data import config as data_config

# size: (frames, resolution, clips in the train split)
_DATA = {'tiny': (9, 32, 20000), 'small': (17, 64, 20000), 'base': (17, 64, 50000)}


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, size='small', quantizer='fsq', runlocal=False)
  num_frames, resolution, num_train = _DATA[arg.size]
  data = data_config.data_config('shapes', num_frames=num_frames, resolution=resolution)
  data.num_train_examples = num_train
  config = common.tokenizer_experiment(arg.size, arg.quantizer, data)
  if arg.runlocal:
    common.runlocal(config)
    config.data.num_train_examples = 64
    config.data.num_test_examples = 16
  return config_lib.lock(config)
