"""The transformer stage trains from `videogen tokenize --config` shards
(`config.data.tokens_dir`): same batches and loss as tokenizing clips in the step,
with no video tokenizer in the train state."""

import jax
import numpy as np
import pytest

from tests import helpers
from videogen import tokenize
from videogen.data import pipeline
from videogen.parallel import compilation, sharding
from videogen.parallel import mesh as mesh_lib
from videogen.train import loop
from videogen.transformer import task as task_lib
from videogen.transformer.inference import TextToVideo


@pytest.fixture(scope='module')
def shards(tmp_path_factory):
  """A toy dataset, its frozen encoders and its token shards."""
  root = tmp_path_factory.mktemp('shards')
  data_dir = str(root / 'data')
  config = helpers.toy_transformer_config(data_dir, **{'model.dropout': 0.0})
  frozen = helpers.toy_inference(config, root / 'work')
  out = str(root / 'tokens')
  tokenize.tokenize_dataset(frozen.tokenizer, 'toy', config, out, clips_per_shard=6)
  return dict(
    data_dir=data_dir, frozen=frozen, tokens=out, text_encoder=root / 'work' / 'text_encoder'
  )


def test_training_from_token_shards_equals_in_step_tokenization(shards, tmp_path):
  data_dir, frozen, out = shards['data_dir'], shards['frozen'], shards['tokens']
  overrides = {'model.dropout': 0.0}
  config = helpers.toy_transformer_config(data_dir, **overrides)
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
    states = {
      'video': compilation.run_once(video_task.init_state, jax.random.key(0)),
      'shards': compilation.run_once(shard_task.init_state, jax.random.key(0)),
    }
    assert set(states['video'].frozen) == {'tokenizer', 'text'}
    assert set(states['shards'].frozen) == {'text'}  # No tokenizer weights on the devices.
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
        _, metrics = step(states[name], batch, jax.random.key(index))
        history.append(float(metrics['loss']))
        if name == 'video' and index == 0:
          first_captions = list(local['caption'])
        if name == 'shards' and index == 0:
          assert list(local['caption']) == first_captions  # The same shuffle.
      losses[name] = history
  np.testing.assert_allclose(losses['shards'], losses['video'], rtol=1e-5)
  # The given model's tokenizer decodes the samples (placed on the mesh for the call).
  videos, prompts = shard_task.sample_prompts(states['shards'])
  assert videos.shape == (2, 5, 16, 16, 3) and len(prompts) == 2


def _train(config, workdir):
  """`videogen train` of `config` in `workdir`; returns the task and the result."""
  tasks = []

  def create_task(config, mesh, workdir):
    tasks.append(task_lib.TransformerTask(config, mesh, workdir=workdir))
    return tasks[0]

  result = loop.train_and_evaluate(config, str(workdir), create_task)
  return tasks[0], result


def test_trains_from_shards_without_a_tokenizer(shards, tmp_path, monkeypatch):
  """No tokenizer checkpoint: the model is sized by the shards, evaluation reads
  their eval split, and the periodic samples are skipped with one log line."""
  config = helpers.toy_transformer_config(
    shards['data_dir'],
    **{
      'data.tokens_dir': shards['tokens'],
      'tokenizer.checkpoint': '',
      'text.path': str(shards['text_encoder']),
    },
  )
  workdir = tmp_path / 'run'
  # The task's own absl calls (caplog misses them once absl's handler is installed).
  messages = []
  info = task_lib.logging.info
  monkeypatch.setattr(
    task_lib.logging, 'info', lambda msg, *args: messages.append(str(msg)) or info(msg, *args)
  )
  task, result = _train(config, workdir)
  assert result.step == 2
  assert task.tokenizer is None and task.latent_shape == (2, 4, 4)
  assert task.spec.vocab_size == 1000
  state = jax.eval_shape(task.init_state, jax.random.key(0))
  assert set(state.frozen) == {'text'}
  assert np.isfinite(result.eval_metrics['cross_entropy'])
  skipped = [m for m in messages if 'No periodic samples' in m]
  assert len(skipped) == 1
  assert not (workdir / 'samples').exists() or not list((workdir / 'samples').iterdir())
  assert not (workdir / 'tokenizer').exists()


def test_shard_run_with_a_tokenizer_keeps_its_copy_and_writes_samples(shards, tmp_path):
  """With `config.tokenizer.checkpoint` the workdir gets its copy of the tokenizer
  (checked against the shards), samples are decoded, and `TextToVideo.load` works."""
  tokenizer_dir = tmp_path / 'tokenizer_export'
  shards['frozen'].tokenizer.export(tokenizer_dir)
  config = helpers.toy_transformer_config(
    shards['data_dir'],
    **{
      'data.tokens_dir': shards['tokens'],
      'tokenizer.checkpoint': str(tokenizer_dir),
      'text.path': str(shards['text_encoder']),
    },
  )
  workdir = tmp_path / 'run'
  task, result = _train(config, workdir)
  assert result.step == 2
  assert set(jax.eval_shape(task.init_state, jax.random.key(0)).frozen) == {'text'}
  assert (workdir / 'tokenizer' / 'model.safetensors').exists()
  assert (workdir / 'samples' / 'samples_000002.gif').stat().st_size > 0
  model = TextToVideo.load(workdir)
  assert model.step == 2 and model.latent_shape == task.latent_shape


def test_shards_of_another_tokenizer_are_refused(tmp_path):
  from videogen.data import token_shards  # noqa: PLC0415

  token_shards.write_info(
    str(tmp_path), {'latent_shape': [2, 4, 4], 'codebook_size': 64, 'tokenizer': 't'}
  )
  token_shards.check_compatible(str(tmp_path), (2, 4, 4), 64)
  with pytest.raises(ValueError, match='Tokenize with this run'):
    token_shards.check_compatible(str(tmp_path), (2, 4, 4), 1000)


def test_shards_of_other_clips_are_refused(tmp_path):
  from videogen.data import token_shards  # noqa: PLC0415

  config = helpers.toy_transformer_config(str(tmp_path / 'data'))
  clip = {'num_frames': 5, 'frame_stride': config.data.frame_stride, 'height': 16, 'width': 16}
  info = {'latent_shape': [2, 4, 4], 'codebook_size': 64, 'tokenizer': 't', 'clip': clip}
  token_shards.write_info(str(tmp_path), info)
  assert token_shards.token_space(str(tmp_path), config.data) == ((2, 4, 4), 64)
  token_shards.write_info(str(tmp_path), dict(info, clip=dict(clip, height=32, width=32)))
  with pytest.raises(ValueError, match='Tokenize with this config'):
    token_shards.token_space(str(tmp_path), config.data)
