"""Shared test helpers: tiny configs for end-to-end runs of both stages."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

from videogen import config_lib

REPO = pathlib.Path(__file__).resolve().parent.parent
CONFIGS = REPO / 'configs'

# Overrides that shrink the shapes configs to seconds per step on one CPU core.
TINY_DATA = {
    'data.num_frames': 5,
    'data.height': 16,
    'data.width': 16,
    'data.num_train_examples': 32,
    'data.num_test_examples': 8,
    'data.max_objects': 1,
}
TINY_TOKENIZER = {
    **TINY_DATA,
    'batch_size': 8,
    'model.channels': 8,
    'model.channel_multipliers': (1, 1, 1, 1),
    'model.norm_groups': 4,
    'model.spatial_downsample': 4,
    'optimizer.warmup_steps': 1,
}


def tiny_config(stage: str, data_dir: str, **overrides):
  """A shapes config shrunk for tests, with `overrides` applied (dotted keys)."""
  config = config_lib.load_config_file(f'{CONFIGS / "shapes" / stage}.py:size=tiny,runlocal')
  values = dict(TINY_TOKENIZER if stage == 'tokenizer' else TINY_DATA)
  values['data.data_dir'] = data_dir
  values.update(overrides)
  config_lib.apply_overrides(config, values)
  return config


def override_flags(overrides: dict) -> list[str]:
  """`--config.key=value` flags for a subprocess run of `videogen train`."""
  flags = []
  for key, value in overrides.items():
    if isinstance(value, tuple):
      value = '(' + ','.join(str(v) for v in value) + ',)'
    flags.append(f'--config.{key}={value}')
  return flags


def run_videogen(*args, env_update=None, timeout=600, check=True, **popen):
  env = dict(os.environ)
  env.update(env_update or {})
  result = subprocess.run([sys.executable, '-m', 'videogen', *args], capture_output=True,
                          text=True, timeout=timeout, env=env, cwd=REPO, **popen)
  if check and result.returncode != 0:
    raise AssertionError(f'videogen {" ".join(args)} failed:\n{result.stderr[-6000:]}')
  return result
