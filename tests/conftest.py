"""Test set-up: 8 virtual CPU devices, TensorFlow kept off any accelerator."""

import atexit
import os
import shutil
import tempfile

import pytest

# Before JAX is imported anywhere: tests run on 8 virtual CPU devices.
os.environ.setdefault('XLA_FLAGS', '--xla_force_host_platform_device_count=8')
# The CLI's XLA:CPU flags (videogen.parallel.distributed.CPU_XLA_FLAGS): ~12% faster small steps.
if 'xla_cpu_enable_concurrency_optimized_scheduler' not in os.environ['XLA_FLAGS']:
  os.environ['XLA_FLAGS'] += ' --xla_cpu_enable_concurrency_optimized_scheduler=false'
os.environ.setdefault('JAX_PLATFORMS', 'cpu')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
os.environ.setdefault('CUDA_VISIBLE_DEVICES', '')
# One JAX compilation cache per test session, fresh each time, shared by the xdist
# workers and the `videogen` subprocesses (they inherit the environment): the many
# tests that train the same tiny configs compile each program once.
if 'PYTEST_XDIST_WORKER' not in os.environ and 'JAX_COMPILATION_CACHE_DIR' not in os.environ:
  _CACHE_DIR = tempfile.mkdtemp(prefix='videogen-tests-jax-cache-')
  os.environ['JAX_COMPILATION_CACHE_DIR'] = _CACHE_DIR
  os.environ['JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS'] = '0.5'
  os.environ['JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES'] = '0'
  # A size limit turns on the cache's file lock: no process reads an entry half-written.
  os.environ['JAX_COMPILATION_CACHE_MAX_SIZE'] = str(8 * 2**30)
  atexit.register(shutil.rmtree, _CACHE_DIR, ignore_errors=True)


@pytest.fixture(scope='session')
def multitask_run(tmp_path_factory):
  """A toy transformer workdir trained 2 steps on every task on the 8 devices
  (`helpers.train_toy_multitask`), shared by the tests that sample it."""
  from tests import helpers  # noqa: PLC0415  (after the environment above)

  return helpers.train_toy_multitask(tmp_path_factory.mktemp('multitask'))
