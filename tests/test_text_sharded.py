"""The T5 encoder sharded as for XXL (tensor x fsdp) on 8 virtual devices gives the same output."""

import functools

import jax
import numpy as np
import pytest

from videogen import config_lib
from videogen.parallel import mesh as mesh_lib
from videogen.parallel import sharding
from videogen.text import T5Encoder, T5EncoderConfig, encode_fn

RULES = sharding.DEFAULT_LOGICAL_AXIS_RULES


@pytest.fixture(scope='module')
def mesh():
  if jax.device_count() < 8:
    pytest.skip('needs 8 (virtual) devices; conftest sets them before JAX starts')
  config = config_lib.mesh_config()
  config.update(data=1, fsdp=2, tensor=4)
  return mesh_lib.create_mesh(config, jax.devices()[:8])


@pytest.fixture(scope='module')
def encoder():
  # Sizes divisible by the mesh so that every annotated axis really shards.
  config = T5EncoderConfig(vocab_size=64, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4)
  return T5Encoder.from_config(config, seed=1)


def _batch():
  rng = np.random.default_rng(0)
  mask = np.ones((4, 12), np.int32)
  mask[1, 5:] = 0
  mask[3, 2:] = 0
  return (rng.integers(3, 64, (4, 12)) * mask).astype(np.int32), mask


def _sharded_encode(mesh, graphdef, state, ids, mask):
  state_shardings = sharding.tree_shardings(state, mesh, RULES)
  batch = sharding.batch_sharding(mesh, RULES, 2)
  state = jax.device_put(state, state_shardings)
  ids, mask = jax.device_put(ids, batch), jax.device_put(mask, batch)
  with sharding.axis_rules(mesh, RULES):
    run = jax.jit(
      functools.partial(encode_fn, graphdef),
      in_shardings=(state_shardings, batch, batch),
    )
    return run(state, ids, mask), state


def test_sharded_matches_single_device(mesh, encoder):
  ids, mask = _batch()
  expected = np.asarray(encoder.encode_ids(ids, mask))
  output, state = _sharded_encode(mesh, encoder.graphdef, encoder.state, ids, mask)
  query_spec = state['layers']['query'][...].sharding.spec
  assert query_spec == jax.sharding.PartitionSpec(None, 'fsdp', 'tensor', None)
  assert state['layers']['wi'][...].sharding.spec == jax.sharding.PartitionSpec(
    None, 'fsdp', 'tensor'
  )
  assert state['token_embedding'][...].sharding.spec == jax.sharding.PartitionSpec('tensor', 'fsdp')
  np.testing.assert_allclose(np.asarray(output), expected, rtol=0, atol=1e-5)


def test_from_pretrained_onto_mesh(mesh, encoder, tmp_path):
  encoder.save_pretrained(tmp_path)
  loaded = T5Encoder.from_pretrained(tmp_path, mesh=mesh, rules=RULES)
  wo = loaded.network.layers.wo[...]
  assert wo.sharding.spec == jax.sharding.PartitionSpec(None, 'tensor', 'fsdp')
  assert len(wo.addressable_shards) == 8 and wo.addressable_shards[0].data.shape == (
    2,
    16,
    16,
  )
  ids, mask = _batch()
  output, _ = _sharded_encode(mesh, loaded.graphdef, loaded.state, ids, mask)
  np.testing.assert_allclose(
    np.asarray(output), np.asarray(encoder.encode_ids(ids, mask)), atol=1e-5
  )
