"""Checkpoints: resharding on restore, retention, and a clear error for another model."""

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from tests import helpers
from videogen import weights
from videogen.parallel import compilation, sharding
from videogen.parallel import mesh as mesh_lib
from videogen.train import checkpointing
from videogen.vq.task import TokenizerTask


def _sharded_state(config, mesh_sizes):
  """A freshly initialised tokenizer train state on a (data, fsdp, tensor) mesh."""
  with config.unlocked():
    config.mesh.data, config.mesh.fsdp, config.mesh.tensor = mesh_sizes
  devices = jax.devices()[: int(np.prod(mesh_sizes))]
  mesh = mesh_lib.create_mesh(config.mesh, devices=devices)
  task = TokenizerTask(config, mesh)
  with sharding.axis_rules(mesh, config.logical_axis_rules):
    abstract = jax.eval_shape(task.init_state, jax.random.key(config.seed))
    shardings = sharding.tree_shardings(abstract, mesh, config.logical_axis_rules)
    state = compilation.run_once(
      task.init_state, jax.random.key(config.seed), out_shardings=shardings
    )
  return state, abstract, shardings


def _save(workdir, config, state, step=1):
  manager = checkpointing.make_manager(workdir, config.checkpoint)
  checkpointing.save(manager, step, state, None, config, force=True)
  manager.wait_until_finished()
  manager.close()


def _restore(workdir, config, abstract, shardings):
  manager = checkpointing.make_manager(workdir, config.checkpoint, read_only=True)
  try:
    return checkpointing.restore(manager, manager.latest_step(), abstract, shardings, None)
  finally:
    manager.close()


@pytest.mark.parametrize(
  'saved_mesh, restored_mesh', [((2, 4, 1), (8, 1, 1)), ((1, 8, 1), (1, 1, 1))]
)
def test_restore_reshards_onto_another_mesh(tmp_path, saved_mesh, restored_mesh):
  config = helpers.tiny_config('tokenizer', str(tmp_path / 'data'))
  state, _, _ = _sharded_state(config, saved_mesh)
  _save(tmp_path / 'run', config, state)
  _, abstract, shardings = _sharded_state(config, restored_mesh)
  restored, metadata = _restore(tmp_path / 'run', config, abstract, shardings)
  assert metadata['stage'] == 'tokenizer' and metadata['step'] == 1
  for saved, loaded, target in zip(
    jax.tree.leaves(state), jax.tree.leaves(restored), jax.tree.leaves(shardings), strict=True
  ):
    np.testing.assert_array_equal(np.asarray(saved), np.asarray(loaded))
    assert loaded.sharding.is_equivalent_to(target, loaded.ndim)


def test_a_checkpoint_saved_with_orbax_default_handlers_restores(tmp_path):
  """Runs saved before `make_manager` set its own array handler (orbax's defaults:
  replica-parallel writes of every replicated array) resume bit for bit."""
  config = helpers.tiny_config('tokenizer', str(tmp_path / 'data'))
  state, abstract, shardings = _sharded_state(config, (8, 1, 1))  # Every leaf replicated.
  names = (checkpointing.STATE, checkpointing.METADATA)
  with ocp.CheckpointManager(
    checkpointing.checkpoint_dir(tmp_path / 'run'), item_names=names
  ) as manager:
    items = {names[0]: ocp.args.PyTreeSave(state), names[1]: ocp.args.JsonSave({'step': 1})}
    manager.save(1, args=ocp.args.Composite(**items))
  restored, metadata = _restore(tmp_path / 'run', config, abstract, shardings)
  assert metadata['step'] == 1
  for saved, loaded in zip(jax.tree.leaves(state), jax.tree.leaves(restored), strict=True):
    np.testing.assert_array_equal(np.asarray(saved), np.asarray(loaded))


def test_relative_workdir(tmp_path, monkeypatch):
  config = helpers.tiny_config('tokenizer', str(tmp_path / 'data'))
  state, abstract, shardings = _sharded_state(config, (1, 1, 1))
  monkeypatch.chdir(tmp_path)
  _save('runs/relative', config, state, step=3)
  _, metadata = _restore('runs/relative', config, abstract, shardings)
  assert metadata['step'] == 3


def test_checkpoint_of_another_model_names_the_parameter_and_shapes(tmp_path):
  config = helpers.tiny_config('tokenizer', str(tmp_path / 'data'))
  state, _, _ = _sharded_state(config, (1, 1, 1))
  _save(tmp_path / 'run', config, state)
  wider = helpers.tiny_config('tokenizer', str(tmp_path / 'data'), **{'model.channels': 16})
  _, abstract, shardings = _sharded_state(wider, (1, 1, 1))
  with pytest.raises(checkpointing.CheckpointMismatchError) as error:
    _restore(tmp_path / 'run', wider, abstract, shardings)
  message = str(error.value)
  assert "parameter 'params/" in message
  assert 'in the checkpoint but' in message and '16' in message


def test_keeps_last_k_plus_every_m_steps(tmp_path):
  config = helpers.tiny_config(
    'tokenizer',
    str(tmp_path / 'data'),
    **{'checkpoint.max_to_keep': 2, 'checkpoint.keep_period': 3},
  )
  state, _, _ = _sharded_state(config, (1, 1, 1))
  manager = checkpointing.make_manager(tmp_path / 'run', config.checkpoint)
  for step in range(1, 8):
    checkpointing.save(manager, step, state, None, config, force=True)
  manager.wait_until_finished()
  manager.close()
  assert weights.latest_step(tmp_path / 'run') == 7
  kept = sorted(int(p.name) for p in (tmp_path / 'run' / 'checkpoints').iterdir())
  assert kept == [3, 6, 7]
