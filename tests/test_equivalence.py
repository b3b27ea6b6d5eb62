"""Sharding equivalence: the same steps on 1 device and on 8-device meshes."""

import jax
import numpy as np
import pytest

from tests import helpers

pytestmark = pytest.mark.integration
from videogen.parallel import mesh as mesh_lib
from videogen.parallel import sharding
from videogen.vq.task import TokenizerTask

MESHES = [(1, 1, 1), (8, 1, 1), (2, 4, 1), (2, 2, 2)]


def _losses(config, mesh_sizes, batches):
  with config.unlocked():
    config.mesh.data, config.mesh.fsdp, config.mesh.tensor = mesh_sizes
  devices = jax.devices()[: int(np.prod(mesh_sizes))]
  mesh = mesh_lib.create_mesh(config.mesh, devices=devices)
  task = TokenizerTask(config, mesh)
  rules = config.logical_axis_rules
  with sharding.axis_rules(mesh, rules):
    rng = jax.random.key(0)
    abstract = jax.eval_shape(task.init_state, rng)
    shardings = sharding.tree_shardings(abstract, mesh, rules)
    state = jax.jit(task.init_state, out_shardings=shardings)(rng)
    step = jax.jit(task.train_step, out_shardings=(shardings, sharding.replicated(mesh)),
                   donate_argnums=(0,))
    losses = []
    for index, batch in enumerate(batches):
      state, metrics = step(state, sharding.global_batch(batch, mesh, rules, ('video',)),
                            jax.random.key(index))
      losses.append(float(metrics['loss']))
  return losses, state


@pytest.mark.parametrize('quantizer', ['fsq', 'vq'])
def test_tokenizer_losses_match_across_meshes(tmp_path, quantizer):
  config = helpers.tiny_config('tokenizer', str(tmp_path), **{'model.quantizer': quantizer})
  rng = np.random.default_rng(0)
  batches = [{'video': rng.uniform(-1, 1, (8, 5, 16, 16, 3)).astype(np.float32)}
             for _ in range(3)]
  reference, _ = _losses(config, MESHES[0], batches)
  for sizes in MESHES[1:]:
    losses, _ = _losses(config, sizes, batches)
    np.testing.assert_allclose(losses, reference, rtol=1e-5, err_msg=str(sizes))


def test_fsdp_shards_params_and_optimizer_state(tmp_path):
  config = helpers.tiny_config('tokenizer', str(tmp_path), **{
      'model.channels': 16, 'model.channel_multipliers': (1, 2, 2, 2)})
  batches = [{'video': np.zeros((8, 5, 16, 16, 3), np.float32)}]
  _, state = _losses(config, (1, 8, 1), batches)
  tree = (state.params, state.opt_state)
  per_device = sharding.bytes_per_device(tree)
  total = sum(leaf.nbytes for leaf in jax.tree.leaves(tree))
  assert max(per_device.values()) <= total / 8 * 1.05, (max(per_device.values()), total / 8)
