"""`videogen tokenize --config`: token shards cover every clip once, on 1 or 2 processes,
and a rerun redoes only unfinished shards."""

import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from tests import helpers
from tests.test_tokenize_video import tokenizer_workdir  # noqa: F401  (a fixture)
from videogen import tokenize
from videogen.data import pipeline, token_shards


@pytest.mark.parametrize('clips, shards, processes', [(32, 7, 2), (5, 5, 3), (3, 1, 2), (0, 1, 1)])
def test_shards_and_processes_cover_each_clip_once(clips, shards, processes):
  ranges = token_shards.shard_ranges(clips, shards)
  owned = [
    clip
    for process in range(processes)
    for shard in token_shards.shards_of_process(shards, process, processes)
    for clip in range(*ranges[shard])
  ]
  assert sorted(owned) == list(range(clips))


def test_records_round_trip():
  tokens = np.arange(24, dtype=np.int32).reshape(2, 3, 4) * 997
  record = token_shards.serialize(tokens, 'a blue ß', 41)
  parsed = token_shards.parse(record)
  np.testing.assert_array_equal(parsed['tokens'], tokens)
  assert parsed['caption'] == 'a blue ß' and parsed['clip_id'] == 41


def test_shards_equal_in_step_tokens_and_resume(tmp_path):
  tokenizer = helpers.random_tokenizer()
  config = helpers.toy_transformer_config(str(tmp_path / 'data'))
  out = str(tmp_path / 'tokens')
  report = tokenize.tokenize_dataset(tokenizer, 'toy', config, out, clips_per_shard=5)
  train, test = report.splits
  assert (train.num_clips, train.num_shards, train.encoded_shards) == (16, 4, 4)
  assert (test.num_clips, test.num_shards, test.encoded_shards) == (8, 2, 2)
  source = token_shards.TokenShardSource(out, 'train')
  clips = pipeline.create_iterator(
    config, 'train', train=False, process_index=0, process_count=1, drop_remainder=False
  )
  expected = np.concatenate([np.asarray(tokenizer.encode(batch['video'])) for batch in clips])
  np.testing.assert_array_equal(np.stack([source[i]['tokens'] for i in range(16)]), expected)
  assert [source[i]['clip_id'] for i in range(16)] == list(range(16))

  # A killed run leaves a temporary file and misses a shard: only that shard is redone.
  lost = token_shards.shard_path(out, 'train', 2, 4)
  before = lost.read_bytes()
  lost.unlink()
  (lost.parent / f'.{lost.name}.tmp-12345').write_bytes(b'partial')
  again = tokenize.tokenize_dataset(tokenizer, 'toy', config, out, clips_per_shard=5)
  assert (again.splits[0].encoded_shards, again.splits[0].skipped_shards) == (1, 3)
  assert (again.splits[1].encoded_shards, again.splits[1].skipped_shards) == (0, 2)
  assert lost.read_bytes() == before

  # Eval batches: every clip once, padding masked.
  batches = list(
    token_shards.token_shard_iterator(
      config, out, 'test', train=False, process_index=0, process_count=1
    )
  )
  mask = np.concatenate([batch['eval_mask'] for batch in batches])
  ids = np.concatenate([batch['clip_id'] for batch in batches])
  assert sorted(ids[mask == 1].tolist()) == list(range(8))
  train_batch = next(
    token_shard_iterator_train := token_shards.token_shard_iterator(
      config, out, 'train', train=True, process_index=0, process_count=1
    )
  )
  assert train_batch['tokens'].shape == (8, 2, 4, 4)
  assert token_shard_iterator_train.get_state()


def _free_port():
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


@pytest.mark.integration
def test_two_processes_write_every_clip_exactly_once(tmp_path, tokenizer_workdir):  # noqa: F811
  port = _free_port()
  out = tmp_path / 'tokens'
  overrides = {**helpers.TINY_DATA, 'data.data_dir': str(tmp_path / 'data')}
  env = dict(os.environ, JAX_NUM_CPU_DEVICES='2', XLA_FLAGS='')
  processes = [
    subprocess.Popen(
      [
        sys.executable,
        '-m',
        'videogen',
        'tokenize',
        '--tokenizer',
        tokenizer_workdir,
        '--config',
        'configs/shapes/transformer.py:size=tiny,runlocal',
        *helpers.override_flags(overrides),
        '--out',
        str(out),
        '--clips_per_shard',
        '5',
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
  outputs = [process.communicate(timeout=600)[0] for process in processes]
  for process, output in zip(processes, outputs, strict=True):
    assert process.returncode == 0, output[-5000:]
  # 32 train clips in 7 shards: process 0 encodes shards 0, 2, 4, 6; process 1 the rest.
  assert 'process 0 of 2, 2 local devices' in outputs[0]
  assert 'train: 32 clips in 7 shards; this process encoded 4 shards' in outputs[0]
  assert 'train: 32 clips in 7 shards; this process encoded 3 shards' in outputs[1]
  assert 'clips/s' in outputs[1]
  for split, count in (('train', 32), ('test', 8)):
    source = token_shards.TokenShardSource(str(out), split)
    ids = [source[i]['clip_id'] for i in range(len(source))]
    assert ids == list(range(count))


@pytest.mark.integration
def test_a_killed_run_resumes_from_its_finished_shards(tmp_path, tokenizer_workdir):  # noqa: F811
  out = tmp_path / 'tokens'
  overrides = {**helpers.TINY_DATA, 'data.data_dir': str(tmp_path / 'data')}
  args = [
    sys.executable,
    '-m',
    'videogen',
    'tokenize',
    '--tokenizer',
    tokenizer_workdir,
    '--config',
    'configs/shapes/transformer.py:size=tiny,runlocal',
    *helpers.override_flags(overrides),
    '--out',
    str(out),
    '--clips_per_shard',
    '1',
  ]
  env = dict(os.environ, JAX_NUM_CPU_DEVICES='2', XLA_FLAGS='')
  first = subprocess.Popen(
    args, cwd=helpers.REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
  )
  done = 0
  for line in first.stderr:
    done += 'done (process 0)' in line
    if done == 3:
      first.kill()  # SIGKILL: no cleanup runs.
      break
  first.wait(timeout=600)
  assert done == 3
  again = helpers.run_videogen(*args[3:], env_update={'JAX_NUM_CPU_DEVICES': '2', 'XLA_FLAGS': ''})
  encoded = int(
    again.stdout.split('train: 32 clips in 32 shards; this process encoded ')[1].split()[0]
  )
  assert encoded <= 29  # At least the 3 shards the killed run finished were not redone.
  assert 'found ' in again.stdout
  for split, count in (('train', 32), ('test', 8)):
    source = token_shards.TokenShardSource(str(out), split)
    assert [source[i]['clip_id'] for i in range(len(source))] == list(range(count))
