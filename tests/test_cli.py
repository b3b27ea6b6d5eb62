"""The `videogen` command: dispatch and config errors that name the key."""

import subprocess
import sys

import pytest

from tests import helpers


def _videogen(*args):
  return subprocess.run(
    [sys.executable, '-m', 'videogen', *args],
    capture_output=True,
    text=True,
    timeout=300,
  )


def test_unknown_command_lists_commands():
  result = _videogen('frobnicate')
  assert result.returncode != 0
  assert 'quickstart, train, sample, eval, build-dataset' in result.stderr + result.stdout


@pytest.mark.parametrize(
  'override, expected',
  [
    (
      '--config.model.widht=3',
      'config.model.widht; valid keys of config.model: channel_multipliers',
    ),
    ('--config.optimizer.learning_rat=3', 'valid keys of config.optimizer: b1, b2'),
    (
      '--config.batchsize=3',
      'Unknown config key config.batchsize; valid keys of config:',
    ),
  ],
)
def test_wrong_config_key_names_key_and_valid_ones(override, expected):
  result = _videogen(
    'train',
    '--config',
    'configs/shapes/tokenizer.py:runlocal',
    override,
    '--workdir',
    '/tmp/unused',
  )
  assert result.returncode == 2
  assert expected in result.stderr


def test_train_requires_workdir():
  result = _videogen('train', '--config', 'configs/shapes/tokenizer.py:runlocal')
  assert result.returncode != 0
  assert 'needs --workdir' in result.stderr + result.stdout


def test_build_dataset_reports_the_build_once(tmp_path):
  flags = helpers.override_flags({**helpers.TINY_DATA, 'data.data_dir': str(tmp_path)})
  args = ('build-dataset', '--config', 'configs/shapes/tokenizer.py:runlocal', *flags)
  first = helpers.run_videogen(*args)
  output = first.stdout + first.stderr
  assert output.count('built in') == 1, output[-3000:]
  again = helpers.run_videogen(*args)
  assert 'already built' in again.stdout
