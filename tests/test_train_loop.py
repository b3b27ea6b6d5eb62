"""The shared loop end to end: resume, preemption, crashes, NaN policy, restore elsewhere."""

import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from tests import helpers

pytestmark = pytest.mark.integration


def _losses(workdir):
  lines = pathlib.Path(workdir, 'metrics.jsonl').read_text().splitlines()
  return {r['step']: r['loss'] for r in map(json.loads, lines) if 'loss' in r}


def _train_args(workdir, data_dir, steps, **extra):
  overrides = {
    **helpers.TINY_TOKENIZER,
    'data.data_dir': data_dir,
    'num_train_steps': steps,
    'log_every_steps': 1,
    'eval_every_steps': 0,
    'checkpoint_every_steps': 1000,
    'checkpoint.async_save': False,
    **extra,
  }
  return [
    'train',
    '--config',
    'configs/shapes/tokenizer.py:size=tiny,runlocal',
    '--workdir',
    str(workdir),
    *helpers.override_flags(overrides),
  ]


@pytest.fixture(scope='module')
def data_dir(tmp_path_factory):
  return str(tmp_path_factory.mktemp('data'))


def test_sigterm_saves_and_resume_matches_uninterrupted(tmp_path, data_dir):
  steps = 60
  reference = tmp_path / 'reference'
  helpers.run_videogen(*_train_args(reference, data_dir, steps))
  expected = _losses(reference)
  assert sorted(expected) == list(range(1, steps + 1))

  preempted = tmp_path / 'preempted'
  process = subprocess.Popen(
    [sys.executable, '-m', 'videogen', *_train_args(preempted, data_dir, steps)],
    cwd=helpers.REPO,
    stdout=subprocess.PIPE,
    stderr=subprocess.STDOUT,
    text=True,
  )
  metrics = preempted / 'metrics.jsonl'
  deadline = time.time() + 300
  while time.time() < deadline and process.poll() is None:
    if metrics.exists() and len(metrics.read_text().splitlines()) >= 3:
      break
    time.sleep(0.05)
  process.send_signal(signal.SIGTERM)
  output, _ = process.communicate(timeout=300)
  assert process.returncode == 0, output[-4000:]
  saved = sorted(int(p.name) for p in (preempted / 'checkpoints').iterdir() if p.name.isdigit())
  assert saved and saved[-1] < steps, f'no early checkpoint: {saved}\n{output[-3000:]}'
  assert 'Preempted' in output

  helpers.run_videogen(*_train_args(preempted, data_dir, steps))
  resumed = _losses(preempted)
  assert sorted(resumed) == list(range(1, steps + 1))
  worst = max(abs(resumed[s] - expected[s]) / abs(expected[s]) for s in expected)
  print(f'resumed after step {saved[-1]}: max relative loss difference {worst:.2e}')
  for step in range(1, steps + 1):
    np.testing.assert_allclose(resumed[step], expected[step], rtol=1e-6, err_msg=f'step {step}')


def test_partial_save_is_ignored_on_resume(tmp_path, data_dir):
  workdir = tmp_path / 'run'
  helpers.run_videogen(*_train_args(workdir, data_dir, 4))
  # What a SIGKILL during the save of step 6 leaves behind.
  partial = workdir / 'checkpoints' / '6.orbax-checkpoint-tmp-1234'
  (partial / 'state').mkdir(parents=True)
  (partial / 'state' / 'garbage').write_bytes(b'\0' * 10)
  result = helpers.run_videogen(*_train_args(workdir, data_dir, 6))
  assert 'Resuming from' in result.stderr and 'checkpoints/4' in result.stderr
  assert 'checkpoint_manager.py' not in result.stderr  # Library INFO lines are filtered.
  assert sorted(_losses(workdir)) == list(range(1, 7))


@pytest.mark.parametrize('log_every', [1, 10])
def test_nan_loss_stops_naming_the_step(tmp_path, data_dir, log_every):
  """Logged or not (checked one step late), the step named is the first bad one."""
  overrides = {'optimizer.learning_rate': 1e30, 'log_every_steps': log_every}
  result = helpers.run_videogen(
    *_train_args(tmp_path / 'nan', data_dir, 5, **overrides), check=False
  )
  assert result.returncode != 0
  assert 'Non-finite loss at step 3;' in result.stderr


def test_tokenizer_from_8_devices_loads_in_single_device_process(tmp_path, data_dir):
  workdir = tmp_path / 'eight'
  helpers.run_videogen(*_train_args(workdir, data_dir, 2, **{'mesh.fsdp': 4, 'mesh.data': 2}))
  script = (
    'import jax, numpy as np\n'
    'from videogen import vq\n'
    f'tok = vq.Tokenizer.load({str(workdir)!r})\n'
    'assert jax.device_count() == 1\n'
    'video = np.zeros((1, 5, 16, 16, 3), np.float32)\n'
    'tokens = tok.encode(video)\n'
    'print(tokens.shape, tok.decode(tokens).shape)\n'
  )
  env = dict(os.environ, JAX_NUM_CPU_DEVICES='1', XLA_FLAGS='')
  result = subprocess.run(
    [sys.executable, '-c', script],
    capture_output=True,
    text=True,
    env=env,
    cwd=helpers.REPO,
    timeout=300,
  )
  assert result.returncode == 0, result.stderr[-4000:]
  assert '(1, 5, 16, 16, 3)' in result.stdout
