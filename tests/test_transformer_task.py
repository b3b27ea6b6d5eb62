"""The transformer stage end to end on 8 CPU devices: train steps, token cache, eval.

The frozen encoders are the real ones at toy size: a random-init video
tokenizer (`videogen.vq.Tokenizer`, FSQ, 4x spatial / 4x temporal
compression) and the offline default T5 built from the dataset captions.
"""

import copy

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from videogen.configs import common

from tests import helpers
from videogen.data import pipeline
from videogen.parallel import compilation, sharding
from videogen.parallel import mesh as mesh_lib
from videogen.train import checkpointing
from videogen.train.task import TrainState
from videogen.transformer import losses, token_cache
from videogen.transformer import task as task_lib


@pytest.fixture(scope='module')
def setup(tmp_path_factory):
  data_dir = str(tmp_path_factory.mktemp('data'))
  workdir = tmp_path_factory.mktemp('workdir')
  # FSDP over the 8 test devices (tiny configs are data parallel by default).
  config = helpers.toy_transformer_config(data_dir, **{'mesh.data': 1, 'mesh.fsdp': -1})
  frozen = helpers.toy_inference(config, workdir)
  mesh = mesh_lib.create_mesh(config.mesh)
  task = task_lib.TransformerTask(config, mesh, workdir=workdir, model=frozen)
  rules = config.logical_axis_rules
  with sharding.axis_rules(mesh, rules):
    abstract = jax.eval_shape(task.init_state, jax.random.key(0, impl='unsafe_rbg'))
    shardings = sharding.tree_shardings(abstract, mesh, rules)
    state = compilation.run_once(
      task.init_state, jax.random.key(0, impl='unsafe_rbg'), out_shardings=shardings
    )
    step = jax.jit(
      task.train_step,
      out_shardings=(shardings, sharding.replicated(mesh)),
      donate_argnums=(0,),
    )
  return dict(
    config=config,
    task=task,
    mesh=mesh,
    state=state,
    step=step,
    workdir=workdir,
    model=frozen,
  )


def _global(setup, batch):
  config = setup['config']
  return sharding.global_batch(
    batch, setup['mesh'], config.logical_axis_rules, setup['task'].batch_keys()
  )


def test_two_train_steps_on_a_sharded_mesh(setup):
  config, task, mesh = setup['config'], setup['task'], setup['mesh']
  assert task.batch_keys() == ('video', 'text_ids', 'text_mask')
  iterator = pipeline.create_iterator(
    config, config.data.train_split, train=True, text_features=task.text_features()
  )
  state = setup['state']
  kernel = state.params['blocks']['mlp']['up']['kernel'][...]
  assert kernel.sharding.spec == jax.sharding.PartitionSpec(None, 'fsdp', None)
  before = jax.tree.map(np.asarray, state.params)
  frozen_before = jax.tree.map(np.asarray, state.frozen)
  history = []
  with sharding.axis_rules(mesh, config.logical_axis_rules):
    for index in range(2):
      batch = _global(setup, next(iterator))
      state, metrics = setup['step'](
        state, batch, jax.random.fold_in(jax.random.key(1, impl='unsafe_rbg'), index)
      )
      history.append({k: float(v) for k, v in metrics.items()})
  setup['state'] = state
  assert int(state.step) == 2
  for metrics in history:
    assert set(metrics) >= {
      'loss',
      'cross_entropy',
      'bits_per_token',
      'accuracy',
      'z_loss',
    }
    assert np.isfinite(metrics['loss']) and 0 <= metrics['accuracy'] <= 1
    np.testing.assert_allclose(
      metrics['bits_per_token'], metrics['cross_entropy'] / np.log(2), rtol=1e-5
    )
  # Near-uniform predictions over the 1000 codes at initialisation.
  assert abs(history[0]['cross_entropy'] - np.log(1000)) < 1.5
  changed = jax.tree.map(lambda a, b: not np.allclose(a, np.asarray(b)), before, state.params)
  assert all(jax.tree.leaves(changed))
  for a, b in zip(jax.tree.leaves(frozen_before), jax.tree.leaves(state.frozen), strict=True):
    np.testing.assert_array_equal(a, np.asarray(b))
  assert state.ema_params is not None


def test_step_cost_and_describe(setup):
  task = setup['task']
  cost = task.step_cost(8)
  assert task.latent_shape == (2, 4, 4)
  assert cost.tokens == 8 * 32 and cost.frames == 8 * 5
  assert cost.flops == pytest.approx(losses.train_step_flops(task.spec, 8, 32, 12))
  assert 'TransformerTask: tiny transformer' in task.describe(setup['state'])


def test_evaluate_reports_losses_and_writes_a_sample_grid(setup, tmp_path):
  config, task = setup['config'], setup['task']
  batches = pipeline.create_iterator(
    config, config.data.eval_split, train=False, text_features=task.text_features()
  )
  results = task.evaluate(setup['state'], batches, step=7, sample_dir=str(tmp_path))
  assert set(results) >= {'loss', 'cross_entropy', 'bits_per_token', 'accuracy'}
  assert all(np.isfinite(v) for v in results.values())
  assert (tmp_path / 'samples_000007.gif').stat().st_size > 0
  videos, prompts = task.sample_prompts(setup['state'])
  assert videos.shape == (2, 5, 16, 16, 3) and videos.dtype == np.uint8
  assert prompts == list(config.sampling.prompts)[:2]


def test_token_cache_matches_video_encoding_and_trains(setup, tmp_path):
  config = helpers.toy_transformer_config(
    setup['config'].data.data_dir, **{'tokenizer.cache_tokens': True}
  )
  task = task_lib.TransformerTask(config, setup['mesh'], workdir=tmp_path, model=setup['model'])
  assert task.batch_keys() == ('tokens', 'text_ids', 'text_mask')
  # As the loop does: inside the training mesh's rules (the tokenizer is on one device).
  with sharding.axis_rules(setup['mesh'], config.logical_axis_rules):
    iterator = task.create_train_iterator()
  directory = token_cache.cache_directory(config, tmp_path)
  assert len(list(directory.glob('done-*.json'))) == 1
  source = token_cache.TokenCacheSource(str(directory), 1)
  assert len(source) == 16
  # Cached tokens are the tokenizer's codes of the clips from their first frame.
  clips = pipeline.create_iterator(config, config.data.train_split, train=False)
  first = next(clips)
  tokenizer = setup['model'].tokenizer
  expected = tokenizer.encode(first['video'])
  np.testing.assert_array_equal(source[0]['tokens'], expected[0])
  assert source[0]['caption'] == first['caption'][0]
  batch = next(iterator)
  assert batch['tokens'].shape == (8, 2, 4, 4) and batch['text_ids'].shape == (8, 12)
  # A second call reuses the cache instead of encoding again.
  assert token_cache.build_token_cache(config, directory, lambda video: 1 / 0) == 0
  # A batch size that does not divide the split (16 = 6 + 6 + 4), or exceeds it, still
  # caches every clip.
  for batch_size in (6, 32):
    uneven = copy.deepcopy(config)
    with uneven.unlocked():
      uneven.batch_size = batch_size
    directory_b = tmp_path / f'batch{batch_size}'
    assert token_cache.build_token_cache(uneven, directory_b, tokenizer.encode) == 16
    np.testing.assert_array_equal(
      token_cache.TokenCacheSource(str(directory_b), 1)[15]['tokens'], source[15]['tokens']
    )
  mesh, rules = setup['mesh'], config.logical_axis_rules
  with sharding.axis_rules(mesh, rules):
    state = compilation.run_once(task.init_state, jax.random.key(0, impl='unsafe_rbg'))
    global_batch = sharding.global_batch(batch, mesh, rules, task.batch_keys())
    _, metrics = jax.jit(task.train_step)(state, global_batch, jax.random.key(2, impl='unsafe_rbg'))
  assert np.isfinite(float(metrics['loss']))


def test_text_embedding_cache_replaces_t5_in_the_step(setup, tmp_path):
  """`config.text.cache_embeddings`: batches carry cached T5 outputs; same loss."""
  data_dir = setup['config'].data.data_dir
  tasks = {}
  for cached in (False, True):
    config = helpers.toy_transformer_config(
      data_dir,
      **{'tokenizer.cache_tokens': True, 'text.cache_embeddings': cached, 'model.dropout': 0.0},
    )
    tasks[cached] = task_lib.TransformerTask(
      config, setup['mesh'], workdir=tmp_path / str(cached), model=setup['model']
    )
  task = tasks[True]
  assert task.batch_keys() == ('tokens', 'text_emb', 'text_mask')
  assert len(task.text_cache) > 0  # Filled with the splits' captions up front.
  captions = ['a red circle moving left', 'a blue square moving up'] * 4
  features = task.text_features()(captions)
  assert features['text_emb'].shape == (8, 12, task.text_encoder.embed_dim)
  tokens = np.random.default_rng(0).integers(0, 1000, (8, 2, 4, 4), dtype=np.int32)
  mesh, rules = setup['mesh'], task.config.logical_axis_rules
  losses_by_path = {}
  with sharding.axis_rules(mesh, rules):
    state = compilation.run_once(task.init_state, jax.random.key(0))
    for cached, each in tasks.items():
      batch = {'tokens': tokens, **each.text_features()(captions)}
      batch = sharding.global_batch(batch, mesh, rules, each.batch_keys())
      _, metrics = jax.jit(each.train_step)(state, batch, jax.random.key(3))
      losses_by_path[cached] = float(metrics['loss'])
  np.testing.assert_allclose(losses_by_path[True], losses_by_path[False], rtol=1e-5)


def test_load_inference_from_workdirs(setup, tmp_path):
  """Real loading: a saved tokenizer run, and the default T5 built on first use."""
  tokenizer = setup['model'].tokenizer
  tokenizer_dir = tmp_path / 'tokenizer'
  tokenizer_config = common.tokenizer_experiment('tiny', 'fsq', setup['config'].data)
  tokenizer_config.model = helpers.toy_tokenizer_model_config()
  checkpointing.write_config(tokenizer_dir, tokenizer_config)
  _, params, model_state = nnx.split(nnx.merge(tokenizer.graphdef, tokenizer.state), nnx.Param, ...)
  saved = TrainState(
    step=jnp.int32(1),
    params=params,
    opt_state={},
    model_state=model_state,
    ema_params=None,
  )
  manager = checkpointing.make_manager(tokenizer_dir, tokenizer_config.checkpoint)
  checkpointing.save(manager, 1, saved, None, tokenizer_config, force=True)
  manager.wait_until_finished()
  manager.close()

  config = helpers.toy_transformer_config(
    setup['config'].data.data_dir, **{'tokenizer.checkpoint': str(tokenizer_dir)}
  )
  workdir = tmp_path / 'transformer'
  frozen = task_lib.load_inference(config, workdir)
  assert (workdir / 'text_encoder' / 'config.json').exists()
  assert (workdir / 'tokenizer' / 'model.safetensors').exists()  # The copy that moves with it.
  assert frozen.tokenizer.codebook_size == 1000
  video = np.zeros((1, 5, 16, 16, 3), np.float32)
  np.testing.assert_array_equal(frozen.tokenizer.encode(video), tokenizer.encode(video))
  ids, mask = task_lib.TransformerTask(
    config, setup['mesh'], workdir=workdir, model=frozen
  ).text_tokenizer()(['a red circle'])
  assert ids.shape == mask.shape == (1, 12) and mask.sum() > 0
