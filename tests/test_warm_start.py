"""`config.init_from`: step 0 from another run's or export's weights
(`videogen.train.warm_start`)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests import helpers
from videogen import weights
from videogen.parallel import compilation, sharding
from videogen.parallel import mesh as mesh_lib
from videogen.train import warm_start
from videogen.transformer import task as task_lib
from videogen.transformer import tasks


def test_merge_copies_equal_shapes_grows_tables_and_keeps_new_parameters():
  params = {'embed': jnp.zeros((5, 3)), 'w': jnp.zeros((3, 2)), 'extra': jnp.ones((2,))}
  saved = {'embed': np.full((4, 3), 2.0), 'w': np.full((3, 2), 3.0), 'gone': np.zeros(1)}
  merged, report = warm_start.merge(params, saved, 'test')
  np.testing.assert_array_equal(merged['embed'][:4], 2.0)
  np.testing.assert_array_equal(merged['embed'][4], 0.0)  # The new row keeps its init.
  np.testing.assert_array_equal(merged['w'], 3.0)
  np.testing.assert_array_equal(merged['extra'], 1.0)
  assert report.copied == ['w']
  assert report.grown == [('embed', 4, 5)]
  assert report.new == ['extra']
  assert report.unused == ['gone']


@pytest.mark.parametrize(
  'new, saved',
  [((4, 2), (3, 4)), ((4, 2), (3,)), ((3, 2), (6, 2))],  # Other width, other rank, fewer rows.
)
def test_merge_names_a_parameter_of_another_shape(new, saved):
  with pytest.raises(weights.CheckpointMismatchError, match=r"parameter 'w' has shape"):
    warm_start.merge({'w': jnp.zeros(new)}, {'w': np.zeros(saved)}, 'test')


def _task(config, tmp_path, name, frozen):
  mesh = mesh_lib.create_mesh(config.mesh)
  return task_lib.TransformerTask(config, mesh, workdir=tmp_path / name, model=frozen), mesh


def test_a_text_to_video_export_starts_a_multitask_model(tmp_path):
  """The multi-task model's input table grows by the mask and task tokens: the
  text-to-video rows are kept, everything else is copied."""
  data_dir = str(tmp_path / 'data')
  t2v_config = helpers.toy_transformer_config(data_dir)
  frozen = helpers.toy_inference(t2v_config, tmp_path / 'frozen')
  t2v_task, mesh = _task(t2v_config, tmp_path, 't2v', frozen)
  with sharding.axis_rules(mesh, t2v_config.logical_axis_rules):
    t2v_params = compilation.run_once(t2v_task.init_state, jax.random.key(1)).params
  (tmp_path / 'export').mkdir()
  weights.save_tree(tmp_path / 'export' / 'transformer.safetensors', t2v_params)

  every_task = {f'model.tasks.{name}': 1.0 for name in tasks.TASKS}
  config = helpers.toy_transformer_config(data_dir, **every_task)
  multi_task, _ = _task(config, tmp_path, 'multi', frozen)
  with sharding.axis_rules(mesh, config.logical_axis_rules):
    fresh = compilation.run_once(multi_task.init_state, jax.random.key(0))
    state = warm_start.apply(fresh, str(tmp_path / 'export'))

  saved = weights.flatten(t2v_params)
  loaded, init = weights.flatten(state.params), weights.flatten(fresh.params)
  assert loaded.keys() == saved.keys()
  for name, value in saved.items():
    if name == 'token_embed/embedding':
      rows = value.shape[0]
      assert loaded[name].shape[0] == rows + 1 + len(tasks.TASKS)  # Mask + task tokens.
      np.testing.assert_array_equal(loaded[name][:rows], value)
      np.testing.assert_array_equal(loaded[name][rows:], init[name][rows:])
    else:
      np.testing.assert_array_equal(loaded[name], value)
    assert loaded[name].sharding == init[name].sharding
  for name, value in weights.flatten(state.ema_params).items():  # The EMA starts there too.
    np.testing.assert_array_equal(value, loaded[name])


def test_a_run_workdir_is_read_as_saved_and_a_missing_path_is_one_clear_error(
  multitask_run, tmp_path
):
  step, saved = weights.read_params(multitask_run)
  assert step == 2
  data_dir = str(tmp_path / 'data')
  every_task = {f'model.tasks.{name}': 1.0 for name in tasks.TASKS}
  config = helpers.toy_transformer_config(data_dir, **every_task)
  frozen = helpers.toy_inference(config, tmp_path / 'frozen')
  task, mesh = _task(config, tmp_path, 'multi', frozen)
  with sharding.axis_rules(mesh, config.logical_axis_rules):
    fresh = compilation.run_once(task.init_state, jax.random.key(0))
    state = warm_start.apply(fresh, str(multitask_run))
    with pytest.raises(warm_start.WarmStartError, match='config.init_from: No workdir'):
      warm_start.apply(fresh, str(tmp_path / 'nothing'))
  for name, value in weights.flatten(state.params).items():
    np.testing.assert_array_equal(value, saved[name])
