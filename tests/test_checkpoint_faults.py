"""Damaged checkpoints and failed saves: fall back, move aside, name the path."""

import errno
import logging

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
from flax import nnx

from tests import helpers
from videogen import integrity, stages, weights
from videogen.parallel import compilation, sharding
from videogen.parallel import mesh as mesh_lib
from videogen.train import checkpointing
from videogen.vq.model import VideoAutoencoder
from videogen.vq.task import TokenizerTask

pytestmark = pytest.mark.integration


_OVERRIDES = {
  'log_every_steps': 1,
  'eval_every_steps': 0,
  'checkpoint_every_steps': 2,
  'checkpoint.async_save': False,
  'num_eval_batches': 1,
}


def _config(data_dir, steps, **extra):
  overrides = {**_OVERRIDES, 'num_train_steps': steps, **extra}
  return helpers.tiny_config('tokenizer', data_dir, **overrides)


def _steps(workdir):
  return sorted(p.name for p in (workdir / 'checkpoints').iterdir())


def _truncate_all(step_dir):
  for path in step_dir.rglob('*'):
    if path.is_file():
      path.write_bytes(b'')


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
  """A tiny tokenizer run saved at steps 2 and 4 (kept as a pristine copy)."""
  root = tmp_path_factory.mktemp('faults')
  data_dir = str(root / 'data')
  workdir = root / 'run'
  stages.train(_config(data_dir, 4), str(workdir))
  return data_dir, workdir


def _copy(trained, tmp_path):
  import shutil

  data_dir, workdir = trained
  copy = tmp_path / 'run'
  shutil.copytree(workdir, copy)
  return data_dir, copy


def test_every_save_records_a_manifest_with_sizes_and_checksums(trained):
  _, workdir = trained
  for step in (2, 4):
    step_dir = workdir / 'checkpoints' / str(step)
    assert integrity.verify(step_dir)
    manifest = (step_dir / integrity.MANIFEST).read_text()
    assert '"crc32"' in manifest and 'state/_METADATA' in manifest


def test_truncated_newest_checkpoint_falls_back_and_is_moved_aside(trained, tmp_path, caplog):
  data_dir, workdir = _copy(trained, tmp_path)
  _truncate_all(workdir / 'checkpoints' / '4')
  with caplog.at_level(logging.INFO):
    result = stages.train(_config(data_dir, 6), str(workdir))
  assert result.step == 6
  lines = [r.getMessage() for r in caplog.records if 'damaged checkpoint step 4' in r.getMessage()]
  assert len(lines) == 1, lines
  assert 'moved to' in lines[0] and '4.damaged' in lines[0] and 'restored step 2' in lines[0]
  assert any(
    'Resuming from' in r.getMessage() and r.getMessage().endswith('/2') for r in caplog.records
  )
  # Kept for inspection under a name orbax ignores; steps 4 and 6 trained again.
  assert _steps(workdir) == ['2', '4', '4.damaged', '6']
  assert (workdir / 'checkpoints' / '4.damaged' / 'state' / '_METADATA').stat().st_size == 0


def test_flipped_byte_is_caught_by_the_checksum(trained, tmp_path, caplog):
  """Same size, other content: only the checksum sees it."""
  data_dir, workdir = _copy(trained, tmp_path)
  step_dir = workdir / 'checkpoints' / '4'
  target = max(
    (p for p in (step_dir / 'state').rglob('*') if p.is_file()), key=lambda p: p.stat().st_size
  )
  data = bytearray(target.read_bytes())
  data[len(data) // 2] ^= 0xFF
  target.write_bytes(bytes(data))
  with pytest.raises(integrity.CheckpointDamagedError, match='another checksum'):
    integrity.verify(step_dir)
  # An inference load (sample, eval, export): falls back, leaves the workdir as it is.
  config = weights.read_config(workdir)
  abstract = nnx.eval_shape(lambda: VideoAutoencoder(config.model, rngs=nnx.Rngs(0)))
  _, params, model_state = nnx.split(abstract, nnx.Param, ...)
  with caplog.at_level(logging.INFO):
    step, _, _ = weights.restore_model_at(workdir, params, model_state)
  assert step == 2
  lines = [r.getMessage() for r in caplog.records if 'damaged checkpoint step 4' in r.getMessage()]
  assert len(lines) == 1 and 'another checksum' in lines[0] and 'left in place' in lines[0]
  assert _steps(workdir) == ['2', '4']


def test_fallback_false_stops_naming_the_step_and_the_flag(trained, tmp_path):
  data_dir, workdir = _copy(trained, tmp_path)
  _truncate_all(workdir / 'checkpoints' / '4')
  config = _config(data_dir, 6, **{'checkpoint.fallback': False})
  with pytest.raises(integrity.NoRestorableCheckpointError) as error:
    stages.train(config, str(workdir))
  assert 'checkpoint step 4' in str(error.value) and 'checkpoint.fallback=true' in str(error.value)
  assert _steps(workdir) == ['2', '4']


def test_no_checkpoint_restores_lists_what_was_tried_and_moves_nothing(trained, tmp_path):
  data_dir, workdir = _copy(trained, tmp_path)
  _truncate_all(workdir / 'checkpoints' / '4')
  (workdir / 'checkpoints' / '2' / 'state' / '_METADATA').write_text('{"not": "orbax"')
  with pytest.raises(integrity.NoRestorableCheckpointError) as error:
    stages.train(_config(data_dir, 6), str(workdir))
  message = str(error.value)
  assert 'tried step 4:' in message and 'step 2:' in message and 'Nothing was moved' in message
  assert _steps(workdir) == ['2', '4']


def test_checkpoint_of_another_model_is_skipped_for_the_older_one(trained, tmp_path, caplog):
  data_dir, workdir = _copy(trained, tmp_path)
  config = _config(data_dir, 6)
  wider = _config(data_dir, 6, **{'model.channels': 16})
  mesh = mesh_lib.create_mesh(config.mesh)
  states = {}
  for name, cfg in (('mine', config), ('wider', wider)):
    task = TokenizerTask(cfg, mesh)
    with sharding.axis_rules(mesh, cfg.logical_axis_rules):
      abstract = jax.eval_shape(task.init_state, jax.random.key(0))
      shardings = sharding.tree_shardings(abstract, mesh, cfg.logical_axis_rules)
      states[name] = (abstract, shardings, task)
  abstract, shardings, task = states['wider']
  with sharding.axis_rules(mesh, wider.logical_axis_rules):
    state = compilation.run_once(task.init_state, jax.random.key(0), out_shardings=shardings)
  manager = checkpointing.make_manager(workdir, wider.checkpoint)
  checkpointing.save(manager, 6, state, None, wider, force=True)
  checkpointing.finish(manager)
  abstract, shardings, _ = states['mine']
  with caplog.at_level(logging.INFO):
    restored = checkpointing.restore_latest(manager, abstract, shardings, None)
  manager.close()
  assert restored.step == 4 and restored.damaged[0][0] == 6
  message = next(
    r.getMessage() for r in caplog.records if 'damaged checkpoint step 6' in r.getMessage()
  )
  assert 'CheckpointMismatchError' in message and 'restored step 4' in message
  assert _steps(workdir) == ['2', '4', '6.damaged']


def test_dtype_mismatch_is_a_mismatch():
  import jax.numpy as jnp

  saved = {'w': jax.ShapeDtypeStruct((2,), jnp.bfloat16)}
  expected = {'w': jax.ShapeDtypeStruct((2,), jnp.float32)}
  with pytest.raises(checkpointing.CheckpointMismatchError, match='bfloat16 in the checkpoint'):
    weights.check_compatible(saved, expected, 'here')


@pytest.mark.parametrize('async_save', [False, True])
def test_disk_full_at_save_stops_naming_the_path_and_a_rerun_resumes(
  trained, tmp_path, monkeypatch, async_save
):
  """An injected ENOSPC in the save of step 6 (sync: at once; async: at the wait)."""
  data_dir, workdir = _copy(trained, tmp_path)
  original = ocp.handlers.JsonCheckpointHandler._save_fn  # noqa: SLF001

  async def no_space(self, item, directory):
    if '6' in str(directory):
      raise OSError(errno.ENOSPC, 'No space left on device', str(directory))
    return await original(self, item, directory)

  monkeypatch.setattr(ocp.handlers.JsonCheckpointHandler, '_save_fn', no_space)
  config = _config(data_dir, 6, **{'checkpoint.async_save': async_save})
  with pytest.raises(checkpointing.CheckpointSaveError) as error:
    stages.train(config, str(workdir))
  message = str(error.value)
  assert str(workdir / 'checkpoints' / '6') in message
  # Async: orbax may report its clean-up of the failed save instead of the ENOSPC.
  assert 'No space left' in message or async_save
  assert 'older checkpoints [2, 4] are intact' in message
  for step in (2, 4):
    assert integrity.verify(workdir / 'checkpoints' / str(step))
  monkeypatch.setattr(ocp.handlers.JsonCheckpointHandler, '_save_fn', original)
  # The user's re-run is a new process, as after freeing space. (In this one the
  # failed save's other writers, sync or async, may still be writing into its
  # temporary directory while a retry clears it.)
  overrides = {**helpers.TINY_TOKENIZER, 'data.data_dir': data_dir, **_OVERRIDES}
  result = helpers.run_videogen(
    'train',
    '--config',
    'configs/shapes/tokenizer.py:size=tiny,runlocal',
    '--workdir',
    str(workdir),
    *helpers.override_flags({**overrides, 'num_train_steps': 6}),
  )
  resumed = [line for line in result.stderr.splitlines() if 'Resuming from' in line]
  assert resumed and resumed[0].rstrip().endswith('checkpoints/4'), result.stderr[-3000:]
  assert integrity.verify(workdir / 'checkpoints' / '6')
  assert _steps(workdir) == ['2', '4', '6']
  np.testing.assert_equal(weights.latest_step(workdir), 6)
