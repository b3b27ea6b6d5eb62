"""`videogen compile`: real XLA:TPU compilation for a TPU slice on this CPU-only machine.

Needs libtpu (the `tpu` extra, also in `test`); JAX itself stays on the CPU.
"""

import importlib.util

import jax
import pytest

from tests import helpers
from videogen import compile as compile_lib
from videogen import config_lib
from videogen.parallel import tpu

pytestmark = pytest.mark.skipif(
  importlib.util.find_spec('libtpu') is None, reason="needs libtpu: pip install -e '.[tpu]'"
)

# The shapes configs at the quickstart's tiny size, their data shrunk (compile
# time on 2 CPU cores grows with every convolution and layer).
_TRANSFORMER = 'configs/shapes/transformer.py:size=tiny'


def test_cpu_stays_the_default_backend_with_libtpu_installed():
  assert jax.default_backend() == 'cpu'
  assert all(d.platform == 'cpu' for d in jax.devices())


@pytest.mark.parametrize(
  'name, chips, topology',
  [
    ('v5p-128', 64, 'v5:4x4x4'),
    ('v5litepod-64', 64, 'v5e:8x8'),
    ('v5e-256', 256, 'v5e:16x16'),
    ('v6e-256', 256, 'v6e:16x16'),
    ('v4-8', 4, 'v4:2x2x1'),
    ('v5e:2x2', 4, 'v5e:2x2'),
  ],
)
def test_accelerator_names(name, chips, topology):
  tpu_slice = tpu.parse_accelerator(name)
  assert (tpu_slice.num_chips, tpu_slice.topology) == (chips, topology)


def test_unknown_accelerator_names_the_valid_ones():
  with pytest.raises(ValueError, match='v5p-128'):
    tpu.parse_accelerator('v5p-100')


@pytest.fixture(scope='module')
def tiny_transformer_report():
  return compile_lib.compile_config(config_lib.load_config_file(_TRANSFORMER), 'v5e:2x2')


def test_tiny_transformer_compiles_for_v5e_with_the_splash_kernel(tiny_transformer_report):
  config = config_lib.load_config_file(_TRANSFORMER)
  report = tiny_transformer_report
  train, decode = report.programs
  assert report.num_chips == 4 and report.fits
  # The Mosaic (splash attention) kernels were compiled for the TPU, not interpreted.
  assert train.mosaic_kernels > 0
  assert 'splash' in report.description
  assert 0 < train.peak_bytes < train.hbm_bytes
  assert train.flops > 0 and train.bytes_accessed > 0 and train.model_flops > 0
  assert train.items == config.batch_size * 192  # 3x8x8 tokens per clip.
  assert 0 < train.mfu(report.chip.peak_bf16_flops) <= 1
  assert decode.name == 'decode step' and decode.fits and decode.mosaic_kernels == 0
  assert 'ESTIMATE' in report.summary() and 'costliest: ' in report.summary()
  # Every operation is bounded by its own roofline, so the sum is at least the overlapped bound.
  assert train.ops_s >= max(train.compute_s, train.memory_s) > 0


def test_scanned_layers_cost_what_unrolled_layers_cost(tiny_transformer_report):
  """The roofline counts a scanned stack's loop body once per layer (XLA's own
  cost analysis counts it once): the same model scanned or unrolled does the
  same matrix FLOPs."""
  config = config_lib.load_config_file(_TRANSFORMER)
  config_lib.apply_overrides(config, {'model.scan_layers': True})
  scanned = compile_lib.compile_config(config, 'v5e:2x2', decode=False).programs[0]
  unrolled = tiny_transformer_report.programs[0]
  assert scanned.flops == pytest.approx(unrolled.flops, rel=1e-6)
  assert scanned.xla_flops < 0.75 * unrolled.xla_flops  # What the walk corrects.


def test_tiny_tokenizer_compiles_for_v5e(tmp_path):
  config = helpers.tiny_config(
    'tokenizer',
    str(tmp_path),
    **{'model.channel_multipliers': (1, 1, 1), 'model.spatial_downsample': 4},
  )
  report = compile_lib.compile_config(config, 'v5e:2x2')
  (train,) = report.programs
  assert report.fits and train.item_name == 'frames'
  assert train.items == config.batch_size * config.data.num_frames
  assert train.flops > 0 and train.collective_bytes > 0  # Data parallel: gradients all-reduced.


def test_a_config_that_cannot_fit_exits_nonzero_with_the_numbers():
  result = helpers.run_videogen(
    'compile',
    '--config',
    _TRANSFORMER,
    '--topology',
    'v5e:2x2',
    '--config.batch_size=16384',
    check=False,
  )
  assert result.returncode == 1, result.stderr[-3000:]
  assert 'DOES NOT FIT' in result.stdout
  error = [line for line in result.stderr.splitlines() if line.startswith('videogen compile:')]
  assert len(error) == 1 and 'does not fit on v5e:2x2' in error[0] and 'GiB over' in error[0]


def test_batch_that_does_not_divide_is_a_usage_error():
  config = config_lib.load_config_file(_TRANSFORMER)
  config_lib.apply_overrides(config, {'batch_size': 6})
  with pytest.raises(compile_lib.CompileUsageError, match='multiple of 4'):
    compile_lib.compile_config(config, 'v5e:2x2')
