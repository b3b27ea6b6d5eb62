"""Mesh construction and logical-axis sharding on 8 virtual CPU devices."""

import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest
from flax import nnx

from videogen import config_lib
from videogen.parallel import distributed, host_memory, platform, sharding
from videogen.parallel import mesh as mesh_lib

RULES = sharding.DEFAULT_LOGICAL_AXIS_RULES


def _mesh_config(data=1, fsdp=-1, tensor=1):
  config = config_lib.mesh_config()
  config.data, config.fsdp, config.tensor = data, fsdp, tensor
  return config


@pytest.mark.parametrize('sizes', [(8, 1, 1), (2, 4, 1), (2, 2, 2), (1, -1, 1), (-1, 2, 2)])
def test_mesh_shapes(sizes):
  mesh = mesh_lib.create_mesh(_mesh_config(*sizes))
  assert mesh.size == 8
  assert mesh.axis_names == ('data', 'fsdp', 'tensor')
  expected = [s for s in sizes if s != -1]
  assert all(mesh.shape[a] == s for a, s in zip(mesh.axis_names, sizes, strict=True) if s != -1)
  assert np.prod(expected) <= 8


def test_mesh_mismatch_names_mesh_and_device_count():
  with pytest.raises(ValueError, match=r"'data': 4.*'fsdp': 4.*8 devices"):
    mesh_lib.create_mesh(_mesh_config(4, 4, 1))
  with pytest.raises(ValueError, match='not divisible'):
    mesh_lib.create_mesh(_mesh_config(3, -1, 1))


def test_logical_to_spec_drops_non_divisible_and_reused_axes():
  mesh = mesh_lib.create_mesh(_mesh_config(2, 2, 2))
  rules = sharding.normalize_rules(RULES)
  assert sharding.logical_to_spec(('embed', 'mlp'), rules, mesh, (16, 32)) == jax.P(
    'fsdp', 'tensor'
  )
  # 3 channels cannot split over fsdp=2: replicated instead of failing.
  assert sharding.logical_to_spec(('conv_in', 'conv_out'), rules, mesh, (4, 3)) == jax.P(None, None)
  assert sharding.logical_to_spec(('batch', 'embed'), rules, mesh, (8, 16)) == jax.P(
    ('data', 'fsdp'), None
  )


class _Model(nnx.Module):
  def __init__(self, rngs):
    init = sharding.with_logical(nnx.initializers.lecun_normal(), ('embed', 'mlp'))
    self.dense = nnx.Linear(64, 128, kernel_init=init, rngs=rngs)


def test_state_initialised_directly_sharded():
  mesh = mesh_lib.create_mesh(_mesh_config(1, 4, 2))
  tx = optax.adamw(1e-3)

  def init(rng):
    params = nnx.split(_Model(nnx.Rngs(rng)), nnx.Param)[1]
    return params, tx.init(params)

  abstract = jax.eval_shape(init, jax.random.key(0))
  shardings = sharding.tree_shardings(abstract, mesh, RULES)
  params, opt_state = jax.jit(init, out_shardings=shardings)(jax.random.key(0))
  kernel = params['dense']['kernel'][...]
  assert kernel.sharding.spec == jax.P('fsdp', 'tensor')
  assert opt_state[0].mu['dense']['kernel'][...].sharding.spec == jax.P('fsdp', 'tensor')
  assert opt_state[0].count.sharding.spec == jax.P()
  per_device = sharding.bytes_per_device(params)
  # The kernel is split 8 ways; the bias has no logical axes and is replicated.
  assert max(per_device.values()) == (64 * 128 * 4) // 8 + 128 * 4


def test_constrain_is_noop_outside_rules_and_shards_inside():
  mesh = mesh_lib.create_mesh(_mesh_config(8, 1, 1))
  x = jnp.ones((8, 4))
  assert sharding.constrain(x, ('batch', None)) is x
  with sharding.axis_rules(mesh, RULES):
    y = jax.jit(lambda v: sharding.constrain(v * 2, ('batch', None)))(x)
  assert y.sharding.spec[0] == 'data'
  assert len(y.addressable_shards) == 8 and y.addressable_shards[0].data.shape == (1, 4)


def test_global_batch_shards_leading_axis():
  mesh = mesh_lib.create_mesh(_mesh_config(2, 4, 1))
  batch = {
    'video': np.zeros((8, 2, 4, 4, 3), np.float32),
    'caption': np.array(['a'] * 8),
  }
  result = sharding.global_batch(batch, mesh, RULES)
  assert set(result) == {'video'}
  assert result['video'].shape == (8, 2, 4, 4, 3)
  assert len(result['video'].addressable_shards) == 8


def test_parse_arg_and_missing_key_messages():
  arg = config_lib.parse_arg('size=tiny,runlocal', size='small', runlocal=False, steps=10)
  assert arg.size == 'tiny' and arg.runlocal is True and arg.steps == 10
  with pytest.raises(ValueError, match=r"'sise'.*\['runlocal', 'size'\]"):
    config_lib.parse_arg('sise=tiny', size='small', runlocal=False)
  config = ml_collections.ConfigDict({'model': {'width': 1, 'depth': 2}, 'seed': 0})
  assert config_lib.describe_missing_key(config, 'model.width') is None
  message = config_lib.describe_missing_key(config, 'model.widht')
  assert 'config.model.widht' in message and 'depth, width' in message


_SET_AND_COUNT = (
  'import os, sys, jax\n'
  'from videogen.parallel import distributed\n'
  'print(distributed.set_cpu_devices(*map(int, sys.argv[1:])))\n'
  'print(jax.device_count())\n'
  "print(os.environ['XLA_FLAGS'])\n"
)


def _set_and_count(*args: str, **env: str) -> list[str]:
  """[what set_cpu_devices returned, JAX devices, $XLA_FLAGS after it] in a fresh process."""
  clean = {k: v for k, v in os.environ.items() if k not in ('XLA_FLAGS', 'JAX_NUM_CPU_DEVICES')}
  result = subprocess.run(
    [sys.executable, '-c', _SET_AND_COUNT, *args],
    env={**clean, **env},
    capture_output=True,
    text=True,
    check=True,
  )
  return result.stdout.splitlines()


def test_cpu_xla_flags_are_added_and_a_users_own_value_is_kept():
  added = ' '.join(distributed.CPU_XLA_FLAGS)
  assert _set_and_count('2')[2] == added
  count = '--xla_force_host_platform_device_count=2'
  assert _set_and_count(XLA_FLAGS=count)[2] == f'{count} {added}'
  own = '--xla_cpu_enable_concurrency_optimized_scheduler=true'
  assert _set_and_count('2', XLA_FLAGS=own)[2] == own


def test_cpu_split_into_devices_one_per_core_unless_the_environment_says():
  cores = len(os.sched_getaffinity(0))
  per_core = 2 ** (min(cores, 8).bit_length() - 1)
  assert _set_and_count()[:2] == [str(per_core)] * 2
  assert _set_and_count('3')[:2] == ['3', '3']
  assert _set_and_count(JAX_NUM_CPU_DEVICES='1')[:2] == ['None', '1']
  flags = '--xla_force_host_platform_device_count=5'
  assert _set_and_count('3', XLA_FLAGS=flags)[:2] == ['None', '5']


_RESTART_AND_SHOW = (
  'import os, sys\n'
  'from videogen.parallel import host_memory\n'
  "print('start', os.getpid(), sys.argv[1:], flush=True)\n"
  'host_memory.restart_with_kept_memory()\n'
  'import jax.numpy as jnp\n'
  "keys = ('LD_PRELOAD', 'MALLOC_TRIM_THRESHOLD_', 'MALLOC_ARENA_MAX')\n"
  "print('env', *[os.environ.get(k) for k in keys], int(jnp.arange(4).sum()))\n"
)


def _restart_and_show(**env: str) -> list[str]:
  """Output lines of a fresh JAX_PLATFORMS=cpu process that calls restart_with_kept_memory."""
  clean = {k: v for k, v in os.environ.items() if not host_memory.chooses_allocator({k: v})}
  result = subprocess.run(
    [sys.executable, '-c', _RESTART_AND_SHOW, 'arg'],
    env={**clean, 'JAX_PLATFORMS': 'cpu', **env},
    capture_output=True,
    text=True,
    check=True,
  )
  return result.stdout.splitlines()


@pytest.mark.skipif(not host_memory.is_glibc(), reason='glibc settings')
def test_cli_restarts_itself_with_an_allocator_unless_the_user_has_chosen_one():
  start, again, env = _restart_and_show()
  # Same process id and arguments; the second run starts with the allocator this machine
  # gets (tcmalloc where installed, else glibc's settings with one arena), and runs JAX.
  assert start == again and start.endswith("['arg']")
  tcmalloc = host_memory.find_tcmalloc()
  chosen = host_memory.allocator_environment({}, tcmalloc=tcmalloc, cpu_only=True)
  keys = ('LD_PRELOAD', 'MALLOC_TRIM_THRESHOLD_', 'MALLOC_ARENA_MAX')
  assert env == ' '.join(['env', *[str(chosen.get(k)) for k in keys], '6'])
  assert chosen.get('LD_PRELOAD') == tcmalloc and ('MALLOC_ARENA_MAX' in chosen) != bool(tcmalloc)
  # A user's own choice is kept: no restart.
  start, env = _restart_and_show(MALLOC_ARENA_MAX='2')
  assert env == 'env None None 2 6'


def test_allocator_environment_prefers_tcmalloc_and_keeps_a_users_choice():
  choose = host_memory.allocator_environment
  if not host_memory.is_glibc():
    assert choose({}, tcmalloc='libtcmalloc.so.4', cpu_only=True) is None
    return
  base = {'PATH': '/bin', 'LD_PRELOAD': 'libfoo.so'}
  with_tcmalloc = choose(base, tcmalloc='libtcmalloc_minimal.so.4', cpu_only=True)
  assert with_tcmalloc == {'PATH': '/bin', 'LD_PRELOAD': 'libfoo.so libtcmalloc_minimal.so.4'}
  cpu = choose({'PATH': '/bin'}, tcmalloc=None, cpu_only=True)
  assert cpu == {'PATH': '/bin', **host_memory.CPU_ONLY_GLIBC_SETTINGS}
  assert cpu['MALLOC_ARENA_MAX'] == '1' and cpu['MALLOC_MMAP_MAX_'] == '0'
  accelerator = choose({'PATH': '/bin'}, tcmalloc=None, cpu_only=False)
  assert accelerator == {'PATH': '/bin', **host_memory.GLIBC_SETTINGS}
  assert 'MALLOC_ARENA_MAX' not in accelerator
  for chosen in (
    {'GLIBC_TUNABLES': 'glibc.malloc.trim_threshold=1'},
    {'MALLOC_ARENA_MAX': '4'},
    {'LD_PRELOAD': '/usr/lib/x86_64-linux-gnu/libjemalloc.so.2'},
  ):
    assert choose(chosen, tcmalloc='libtcmalloc.so.4', cpu_only=True) is None


def test_cpu_only_reads_jax_platforms_before_any_backend(monkeypatch):
  for platforms, expected in (('cpu', True), ('CPU', True), ('tpu', False), ('cuda', False)):
    monkeypatch.setenv('JAX_PLATFORMS', platforms)
    assert platform.cpu_only() is expected
  monkeypatch.delenv('JAX_PLATFORMS')
  monkeypatch.setattr(platform, 'tpu_visible', lambda: False)
  monkeypatch.setattr(platform, '_gpu_plugin_installed', lambda: False)
  assert platform.cpu_only()
  monkeypatch.setattr(platform, 'tpu_visible', lambda: True)
  assert not platform.cpu_only()
