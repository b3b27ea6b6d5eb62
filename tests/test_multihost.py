"""`videogen train` as 2 local processes x 4 virtual CPU devices (gloo collectives)."""

import json
import os
import pathlib
import socket
import subprocess
import sys

import pytest

from tests import helpers

pytestmark = pytest.mark.integration


def _free_port():
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def _run_two_processes(workdir, data_dir, steps):
  port = _free_port()
  overrides = {
    **helpers.TINY_TOKENIZER,
    'data.data_dir': data_dir,
    'num_train_steps': steps,
    'log_every_steps': 1,
    'eval_every_steps': steps,
    'checkpoint_every_steps': 2,
    'mesh.data': 2,
    'mesh.fsdp': 4,
  }
  env = dict(os.environ, JAX_NUM_CPU_DEVICES='4', XLA_FLAGS='')
  processes = [
    subprocess.Popen(
      [
        sys.executable,
        '-m',
        'videogen',
        'train',
        '--config',
        'configs/shapes/tokenizer.py:size=tiny,runlocal',
        '--workdir',
        str(workdir),
        *helpers.override_flags(overrides),
        '--coordinator_address',
        f'127.0.0.1:{port}',
        '--num_processes',
        '2',
        '--process_id',
        str(index),
      ],
      cwd=helpers.REPO,
      env=env,
      stdout=subprocess.PIPE,
      stderr=subprocess.STDOUT,
      text=True,
    )
    for index in range(2)
  ]
  outputs = [p.communicate(timeout=600)[0] for p in processes]
  for process, output in zip(processes, outputs, strict=True):
    assert process.returncode == 0, output[-5000:]
  return outputs


def test_two_processes_train_checkpoint_and_resume(tmp_path):
  workdir = tmp_path / 'run'
  data_dir = str(tmp_path / 'data')
  outputs = _run_two_processes(workdir, data_dir, 4)
  assert 'Process 0 of 2; 4 local devices, 8 in all' in outputs[0]
  assert 'Process 1 of 2; 4 local devices, 8 in all' in outputs[1]
  checkpoints = workdir / 'checkpoints'
  assert {'2', '4'} <= {p.name for p in checkpoints.iterdir()}
  # Each process saved its own data-iterator state in the shared checkpoint.
  data_files = sorted(p.name for p in (checkpoints / '4' / 'data').glob('process_*.json'))
  assert data_files == ['process_0-of-2.json', 'process_1-of-2.json']
  # ... each reading its own half of the 32 training clips.
  for index, output in enumerate(outputs):
    assert f'process {index} of 2 reads 16 of the 32 examples (every 2-th from #{index})' in output
  # Only process 0 writes metrics.
  steps = [
    json.loads(line)['step']
    for line in (workdir / 'metrics.jsonl').read_text().splitlines()
    if 'loss' in line
  ]
  assert steps == [1, 2, 3, 4]

  outputs = _run_two_processes(workdir, data_dir, 6)
  assert 'Resuming from' in outputs[0] and 'Resuming from' in outputs[1]
  steps = [
    json.loads(line)['step']
    for line in (workdir / 'metrics.jsonl').read_text().splitlines()
    if 'loss' in line
  ]
  assert steps == [1, 2, 3, 4, 5, 6]
  assert pathlib.Path(checkpoints / '6').exists()
