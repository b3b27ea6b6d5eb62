"""The transformer stage trains from `videogen tokenize --config` shards
(`config.data.tokens_dir`): same batches and loss as tokenizing clips in the step."""

import jax
import numpy as np
import pytest

from tests import helpers
from videogen import tokenize
from videogen.data import pipeline
from videogen.parallel import mesh as mesh_lib
from videogen.parallel import sharding
from videogen.transformer import task as task_lib


def test_training_from_token_shards_equals_in_step_tokenization(tmp_path):
  data_dir = str(tmp_path / 'data')
  overrides = {'model.dropout': 0.0}
  config = helpers.toy_transformer_config(data_dir, **overrides)
  frozen = helpers.toy_inference(config, tmp_path / 'work')
  out = str(tmp_path / 'tokens')
  tokenize.tokenize_dataset(frozen.tokenizer, 'toy', config, out, clips_per_shard=6)
  shard_config = helpers.toy_transformer_config(data_dir, **overrides, **{'data.tokens_dir': out})
  mesh = mesh_lib.create_mesh(config.mesh)
  rules = config.logical_axis_rules
  video_task = task_lib.TransformerTask(config, mesh, workdir=tmp_path / 'a', model=frozen)
  shard_task = task_lib.TransformerTask(shard_config, mesh, workdir=tmp_path / 'b', model=frozen)
  assert shard_task.batch_keys() == ('tokens', 'text_ids', 'text_mask')
  video_batches = pipeline.create_iterator(
    config,
    config.data.train_split,
    train=True,
    text_features=video_task.text_features(),
    process_index=0,
    process_count=1,
  )
  with sharding.axis_rules(mesh, rules):
    shard_batches = shard_task.create_train_iterator()
    state = jax.jit(video_task.init_state)(jax.random.key(0))
    losses = {}
    for name, task, batches in (
      ('video', video_task, video_batches),
      ('shards', shard_task, shard_batches),
    ):
      step = jax.jit(task.train_step)
      history = []
      for index in range(2):
        local = next(batches)
        batch = sharding.global_batch(local, mesh, rules, task.batch_keys())
        _, metrics = step(state, batch, jax.random.key(index))
        history.append(float(metrics['loss']))
        if name == 'video' and index == 0:
          first_captions = list(local['caption'])
        if name == 'shards' and index == 0:
          assert list(local['caption']) == first_captions  # The same shuffle.
      losses[name] = history
  np.testing.assert_allclose(losses['shards'], losses['video'], rtol=1e-5)


def test_shards_of_another_tokenizer_are_refused(tmp_path):
  from videogen.data import token_shards  # noqa: PLC0415

  token_shards.write_info(
    str(tmp_path), {'latent_shape': [2, 4, 4], 'codebook_size': 64, 'tokenizer': 't'}
  )
  token_shards.check_compatible(str(tmp_path), (2, 4, 4), 64)
  with pytest.raises(ValueError, match='Tokenize with this run'):
    token_shards.check_compatible(str(tmp_path), (2, 4, 4), 1000)
