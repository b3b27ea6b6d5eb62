"""TokenizerTask end to end on tiny shapes: init, train steps, eval, load."""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import nnx

from videogen import config_lib
from videogen.parallel import mesh as mesh_lib
from videogen.parallel import sharding
from videogen.vq import Tokenizer
from videogen.vq import config as vq_config
from videogen.vq.task import GanTrainState, TokenizerTask

FRAMES, SIZE, BATCH = 5, 16, 8
# LLVM's backend optimisations dominate compile time on CPU; 2-step runs don't need them.
FAST_COMPILE = {'xla_backend_optimization_level': 0}


def tiny_config(
  quantizer: str = 'fsq', *, gan: bool = False, ema: float = 0.0, res_blocks: int = 1
):
  config = config_lib.train_config()
  config.stage = 'tokenizer'
  config.batch_size = BATCH
  config.num_train_steps = 4
  config.optimizer.warmup_steps = 1
  config.optimizer.ema_decay = ema
  config.model = vq_config.model_config('tiny', quantizer)
  config.model.channels = 4
  config.model.channel_multipliers = (1, 2, 2)
  config.model.spatial_downsample = 4
  config.model.num_res_blocks = res_blocks
  config.model.norm_groups = 2
  config.model.lfq.bits = 6
  config.model.vq.codebook_size = 32
  config.model.vq.dim = 4
  config.loss = vq_config.loss_config()
  config.loss.gan.enabled = gan
  config.loss.gan.start_step = 1
  config.loss.gan.disc_channels = 4
  config.loss.gan.disc_channel_multipliers = (1, 2)
  config.data = ml_collections.ConfigDict(
    {'name': 'shapes', 'num_frames': FRAMES, 'height': SIZE, 'width': SIZE}
  )
  return config_lib.lock(config)


def random_batch(seed: int) -> dict[str, np.ndarray]:
  rng = np.random.default_rng(seed)
  video = rng.uniform(-1, 1, (BATCH, FRAMES, SIZE, SIZE, 3)).astype(np.float32)
  return {'video': video, 'caption': np.asarray(['a clip'] * BATCH)}


def train(config, steps: int = 2):
  """(task, state, per-step metrics, initial state) after `steps` jitted steps on 8 devices."""
  mesh = mesh_lib.create_mesh(config.mesh)
  rules = config.logical_axis_rules
  task = TokenizerTask(config, mesh)
  with sharding.axis_rules(mesh, rules):
    abstract = jax.eval_shape(task.init_state, jax.random.key(0))
    shardings = sharding.tree_shardings(abstract, mesh, rules)
    state = jax.jit(task.init_state, out_shardings=shardings, compiler_options=FAST_COMPILE)(
      jax.random.key(0)
    )
    initial = jax.tree.map(np.asarray, state)
    step_fn = jax.jit(
      task.train_step,
      out_shardings=(shardings, sharding.replicated(mesh)),
      compiler_options=FAST_COMPILE,
    )
    history = []
    for step in range(steps):
      batch = sharding.global_batch(random_batch(step), mesh, rules, keys=('video',))
      state, metrics = step_fn(state, batch, jax.random.key(step))
      history.append({k: float(v) for k, v in metrics.items()})
  return task, state, history, initial


def changed(before, after) -> bool:
  return any(
    not np.allclose(a, b)
    for a, b in zip(jax.tree.leaves(before), jax.tree.leaves(after), strict=True)
  )


@pytest.mark.parametrize('quantizer', ['fsq', 'lfq', 'vq'])
def test_two_train_steps(quantizer):
  # Residual blocks only where they add coverage: each one costs compile time.
  config = tiny_config(quantizer, res_blocks=1 if quantizer == 'fsq' else 0)
  task, state, history, initial = train(config)
  assert int(state.step) == 2
  for metrics in history:
    for key in (
      'loss',
      'recon_l1',
      'recon_l2',
      'quantizer_loss',
      'codebook_usage',
      'perplexity',
      'grad_norm',
      'learning_rate',
    ):
      assert np.isfinite(metrics[key]), (key, metrics)
  assert changed(initial.params, state.params)
  if quantizer == 'vq':
    assert changed(initial.model_state, state.model_state)  # The EMA codebook moved.
  else:
    assert not jax.tree.leaves(state.model_state)
  assert task.step_cost(BATCH).flops > 0 and task.step_cost(BATCH).frames == BATCH * FRAMES
  assert 'fsq' in task.describe(state) or quantizer != 'fsq'


def test_gan_starts_at_start_step_and_ema(tmp_path):
  config = tiny_config(gan=True, ema=0.9, res_blocks=0)
  task, state, history, initial = train(config)
  assert isinstance(state, GanTrainState)
  first, second = history
  assert first['gan_active'] == 0.0 and first['gan_disc_loss'] == 0.0
  assert second['gan_active'] == 1.0 and second['gan_disc_loss'] > 0.0
  assert second['gan_adaptive_weight'] > 0.0
  assert changed(initial.disc_params, state.disc_params)
  assert float(state.lecam_ema_real) != 0.0
  # EMA params follow params slowly.
  assert changed(initial.ema_params, state.ema_params)
  assert changed(state.params, state.ema_params)

  # Evaluation: metrics over the window and an (original | reconstruction) grid.
  results = task.evaluate(
    state,
    [random_batch(7), random_batch(8)],
    step=2,
    sample_dir=str(tmp_path / 'samples'),
  )
  for key in ('psnr', 'ssim', 'recon_l1', 'codebook_usage', 'perplexity'):
    assert np.isfinite(results[key]), results
  assert 0.0 < results['codebook_usage'] <= 1.0
  assert os.path.getsize(tmp_path / 'samples' / 'recon_000002.gif') > 0
  assert os.path.getsize(tmp_path / 'samples' / 'recon_000002.mp4') > 0

  # A checkpoint written by the shared code loads as a Tokenizer (EMA params).
  from videogen.train import checkpointing

  workdir = tmp_path / 'run'
  checkpointing.write_config(workdir, config)
  manager = checkpointing.make_manager(workdir, config.checkpoint)
  checkpointing.save(manager, 2, state, None, config, force=True)
  manager.wait_until_finished()
  manager.close()
  tokenizer = Tokenizer.load(str(workdir))
  video = random_batch(9)['video']
  tokens = tokenizer.encode(video)
  assert tokens.shape == (BATCH, 2, 4, 4) and tokens.dtype == jnp.int32
  model = nnx.merge(task.graphdef, state.ema_params, state.model_state)
  expected = Tokenizer.from_model(model, config.model)
  np.testing.assert_array_equal(tokens, expected.encode(video))
  assert tokenizer.decode(tokens).shape == video.shape
