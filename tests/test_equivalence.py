"""Sharding equivalence: the same steps on 1 device and on 8-device meshes, both stages."""

import jax
import numpy as np
import pytest

from tests import helpers
from videogen.parallel import compilation, sharding
from videogen.parallel import mesh as mesh_lib
from videogen.transformer import task as transformer_task
from videogen.vq.task import TokenizerTask

# The first mesh is the reference. The tokenizer, whose compiles dominate this file's
# time, runs on (2, 2, 2) alone: its batch splits over data and fsdp, its kernels over
# fsdp, and its convolutions leave the tensor axis replicated: every kind of layout
# the other meshes give it. The transformer, tensor-parallel too, runs on every mix.
MESHES = [(1, 1, 1), (8, 1, 1), (2, 4, 1), (2, 2, 2)]
TOKENIZER_MESHES = [(1, 1, 1), (2, 2, 2)]


def _train(make_task, config, mesh_sizes, batches):
  """Losses of `len(batches)` train steps on a (data, fsdp, tensor) mesh, and the state."""
  with config.unlocked():
    config.mesh.data, config.mesh.fsdp, config.mesh.tensor = mesh_sizes
  devices = jax.devices()[: int(np.prod(mesh_sizes))]
  mesh = mesh_lib.create_mesh(config.mesh, devices=devices)
  task = make_task(config, mesh)
  rules = config.logical_axis_rules
  with sharding.axis_rules(mesh, rules):
    rng = jax.random.key(0)
    abstract = jax.eval_shape(task.init_state, rng)
    shardings = sharding.tree_shardings(abstract, mesh, rules)
    state = compilation.run_once(task.init_state, rng, out_shardings=shardings)
    step = jax.jit(
      task.train_step,
      out_shardings=(shardings, sharding.replicated(mesh)),
      donate_argnums=(0,),
    )
    losses = []
    for index, batch in enumerate(batches):
      batch = sharding.global_batch(batch, mesh, rules, task.batch_keys())
      state, metrics = step(state, batch, jax.random.key(index))
      losses.append(float(metrics['loss']))
  return losses, state


def _assert_same_losses(make_task, config, batches, meshes=MESHES):
  reference, _ = _train(make_task, config, meshes[0], batches)
  print('losses on 1 device:', reference)
  for sizes in meshes[1:]:
    losses, _ = _train(make_task, config, sizes, batches)
    relative = np.max(np.abs(np.subtract(losses, reference)) / np.abs(reference))
    print(f'mesh {sizes}: max relative difference {relative:.2e}')
    np.testing.assert_allclose(losses, reference, rtol=1e-5, err_msg=str(sizes))


@pytest.mark.parametrize('quantizer', ['fsq', 'vq'])
def test_tokenizer_losses_match_across_meshes(tmp_path, quantizer):
  config = helpers.tiny_config('tokenizer', str(tmp_path), **{'model.quantizer': quantizer})
  rng = np.random.default_rng(0)
  batches = [{'video': rng.uniform(-1, 1, (8, 5, 16, 16, 3)).astype(np.float32)} for _ in range(3)]
  _assert_same_losses(lambda c, mesh: TokenizerTask(c, mesh), config, batches, TOKENIZER_MESHES)


def test_transformer_losses_match_across_meshes(tmp_path):
  # Text dropout and residual dropout stay on: their random draws must not depend on the mesh.
  config = helpers.toy_transformer_config(
    str(tmp_path / 'data'),
    **{'tokenizer.cache_tokens': True, 'model.text_dropout_prob': 0.25},
  )
  frozen = helpers.toy_inference(config, tmp_path)

  def make_task(c, mesh):
    return transformer_task.TransformerTask(c, mesh, workdir=tmp_path, model=frozen)

  tokenize = make_task(config, mesh_lib.create_mesh(config.mesh)).text_tokenizer()
  rng = np.random.default_rng(0)
  batches = []
  for _ in range(3):
    ids, mask = tokenize([f'a red circle moving {d}' for d in ['left', 'right'] * 4])
    batches.append(
      {
        'tokens': rng.integers(0, 1000, (8, 2, 4, 4), dtype=np.int32),
        'text_ids': ids,
        'text_mask': mask,
      }
    )
  _assert_same_losses(make_task, config, batches)


def test_fsdp_shards_params_and_optimizer_state(tmp_path):
  config = helpers.tiny_config(
    'tokenizer',
    str(tmp_path),
    **{'model.channels': 16, 'model.channel_multipliers': (1, 2, 2, 2)},
  )
  batches = [{'video': np.zeros((8, 5, 16, 16, 3), np.float32)}]
  _, state = _train(lambda c, mesh: TokenizerTask(c, mesh), config, (1, 8, 1), batches)
  tree = (state.params, state.opt_state)
  per_device = sharding.bytes_per_device(tree)
  total = sum(leaf.nbytes for leaf in jax.tree.leaves(tree))
  print(
    f'FSDP on 8 devices: {max(per_device.values())} bytes per device of {total} '
    f'({max(per_device.values()) / total:.4f} of the total)'
  )
  assert max(per_device.values()) <= total / 8 * 1.05, (
    max(per_device.values()),
    total / 8,
  )
