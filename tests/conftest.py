"""Test set-up: 8 virtual CPU devices, TensorFlow kept off any accelerator."""

import os

import pytest

# Before JAX is imported anywhere: tests run on 8 virtual CPU devices.
os.environ.setdefault('XLA_FLAGS', '--xla_force_host_platform_device_count=8')
# The CLI's XLA:CPU flags (videogen.parallel.distributed.CPU_XLA_FLAGS): ~12% faster small steps.
if 'xla_cpu_enable_concurrency_optimized_scheduler' not in os.environ['XLA_FLAGS']:
  os.environ['XLA_FLAGS'] += ' --xla_cpu_enable_concurrency_optimized_scheduler=false'
os.environ.setdefault('JAX_PLATFORMS', 'cpu')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
os.environ.setdefault('CUDA_VISIBLE_DEVICES', '')


@pytest.fixture(scope='session')
def multitask_run(tmp_path_factory):
  """A toy transformer workdir trained 2 steps on every task on the 8 devices
  (`helpers.train_toy_multitask`), shared by the tests that sample it."""
  from tests import helpers  # noqa: PLC0415  (after the environment above)

  return helpers.train_toy_multitask(tmp_path_factory.mktemp('multitask'))
