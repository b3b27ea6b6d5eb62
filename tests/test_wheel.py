"""videogen installed the way Colab installs it (a wheel, not the checkout) works.

The wheel is built from the checkout and installed into a directory outside
it; from a third directory that holds no `configs/`, the CLI builds a dataset
from a packaged config and a shrunk quickstart trains, samples and scores.
"""

import json
import os
import subprocess
import sys

import pytest

from tests import helpers

pytestmark = pytest.mark.integration

RUN = {'num_train_steps': 2, 'log_every_steps': 1, 'eval_every_steps': 2, 'num_eval_batches': 1}


def _python(code_or_args, cwd, site, timeout=900):
  env = dict(os.environ, PYTHONPATH=str(site))
  args = ['-c', code_or_args] if isinstance(code_or_args, str) else code_or_args
  result = subprocess.run(
    [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
  )
  assert result.returncode == 0, result.stderr[-6000:]
  return result


def test_a_wheel_installed_outside_the_checkout_runs_the_quickstart(tmp_path):
  wheels, site, elsewhere = tmp_path / 'wheels', tmp_path / 'site', tmp_path / 'elsewhere'
  elsewhere.mkdir()
  pip = [sys.executable, '-m', 'pip']
  subprocess.run(
    [*pip, 'wheel', '--no-deps', '--no-build-isolation', '-q', '-w', wheels, helpers.REPO],
    check=True,
    timeout=300,
  )
  (wheel,) = wheels.glob('videogen-*.whl')
  subprocess.run(
    [*pip, 'install', '--no-deps', '-q', '--target', site, wheel], check=True, timeout=300
  )

  found = _python('import videogen, videogen.configs; print(videogen.__file__)', elsewhere, site)
  assert found.stdout.strip().startswith(str(site)), 'imported the checkout, not the wheel'

  data_dir = tmp_path / 'data'
  flags = helpers.override_flags({**helpers.TINY_DATA, 'data.data_dir': str(data_dir)})
  built = _python(
    ['-m', 'videogen', 'build-dataset', '--config', 'configs/shapes/tokenizer.py:size=tiny']
    + flags,
    elsewhere,
    site,
  )
  assert 'train: 32 clips' in built.stdout

  overrides = {
    'tokenizer': {**helpers.TINY_TOKENIZER, **RUN, 'data.data_dir': str(data_dir)},
    'transformer': {
      **helpers.TINY_DATA,
      **RUN,
      'data.data_dir': str(data_dir),
      'batch_size': 8,
      'model.num_layers': 1,
      'model.embed_dim': 32,
      'model.num_heads': 2,
      'model.num_kv_heads': 1,
      'model.mlp_dim': 64,
    },
  }
  code = (
    'from videogen import quickstart; '
    f"quickstart.run('run', prompts=['a red circle moving left'], samples_per_prompt=2, "
    f'**{overrides!r})'
  )
  _python(code, elsewhere, site)
  summary = json.loads((elsewhere / 'run' / 'eval.json').read_text())
  assert summary['alignment']['num_clips'] == 2
  assert (elsewhere / 'run' / 'samples' / 'grid.gif').exists()
