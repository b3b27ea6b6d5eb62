"""Every config file builds, is locked, and has the stable top-level keys."""

import pathlib

import pytest

from videogen import config_lib

CONFIG_DIR = pathlib.Path(__file__).resolve().parent.parent / 'configs'
CONFIG_FILES = sorted(str(p) for p in CONFIG_DIR.glob('*/*.py') if p.name != '__init__.py')
STABLE_KEYS = (
  'seed',
  'batch_size',
  'num_train_steps',
  'log_every_steps',
  'eval_every_steps',
  'checkpoint_every_steps',
)


def test_config_files_found():
  assert len(CONFIG_FILES) >= 8


@pytest.mark.parametrize('path', CONFIG_FILES, ids=lambda p: '/'.join(p.split('/')[-2:]))
@pytest.mark.parametrize('arg', [None, 'runlocal'])
def test_config_builds(path, arg):
  config = config_lib.load_config_file(path + (f':{arg}' if arg else ''))
  for key in STABLE_KEYS:
    assert key in config, key
  assert 'data_dir' in config.data
  assert {'data', 'fsdp', 'tensor'} <= set(config.mesh.keys())
  assert config.stage in ('tokenizer', 'transformer')
  with pytest.raises(AttributeError):
    config.not_a_key = 1  # Locked: a typo is an error, not a new key.


@pytest.mark.parametrize('size', ['tiny', 'small', 'base'])
def test_shapes_sizes(size):
  for stage in ('tokenizer', 'transformer'):
    config = config_lib.load_config_file(
      str(CONFIG_DIR / 'shapes' / f'{stage}.py') + f':size={size}'
    )
    assert config.model.variant == size


def test_unknown_config_argument_names_valid_ones():
  with pytest.raises(ValueError, match=r"'colour'.*valid arguments"):
    config_lib.load_config_file(str(CONFIG_DIR / 'shapes' / 'tokenizer.py') + ':colour=red')
