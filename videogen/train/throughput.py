"""Reference FLOP/s for model-FLOPs utilisation (MFU).

MFU = model FLOPs per second / peak FLOP/s of the devices in use. On GPU and
TPU the peak is the chip's published dense bf16 figure; on CPU no such figure
is meaningful, so the reference is a large matmul measured in the same process
(the best a dense kernel does on this machine right now).
"""

from __future__ import annotations

import functools
import time

import jax
import jax.numpy as jnp

# Dense bf16 peak FLOP/s per chip, by substring of `device.device_kind`.
_PEAK_FLOPS = (
  ('H200', 989e12),
  ('H100', 989e12),
  ('A100', 312e12),
  ('L4', 121e12),
  ('TPU v6', 918e12),
  ('TPU v5p', 459e12),
  ('TPU v5 lite', 197e12),
  ('TPU v5e', 197e12),
  ('TPU v4', 275e12),
)


def chip_peak_flops(device: jax.Device) -> float | None:
  """The published peak of one accelerator chip, or None when unknown/CPU."""
  if device.platform == 'cpu':
    return None
  for name, flops in _PEAK_FLOPS:
    if name.lower() in device.device_kind.lower():
      return flops
  return None


@functools.cache
def measured_matmul_flops(size: int = 2048, dtype: str = 'float32', repeats: int = 5) -> float:
  """FLOP/s of a [size, size] @ [size, size] matmul on the first device."""
  device = jax.local_devices()[0]
  key_a, key_b = jax.random.split(jax.random.key(0))
  a = jax.device_put(jax.random.normal(key_a, (size, size), dtype), device)
  b = jax.device_put(jax.random.normal(key_b, (size, size), dtype), device)
  matmul = jax.jit(jnp.matmul)
  matmul(a, b).block_until_ready()
  best = float('inf')
  for _ in range(repeats):
    start = time.perf_counter()
    matmul(a, b).block_until_ready()
    best = min(best, time.perf_counter() - start)
  return 2.0 * size**3 / best


def reference_flops(configured_peak: float = 0.0) -> tuple[float, str]:
  """(FLOP/s of all devices in use, where the figure comes from).

  Args:
    configured_peak: per-device peak from the config; 0 = look it up / measure.
  """
  devices = jax.devices()
  if configured_peak:
    return configured_peak * len(devices), 'config.peak_flops'
  chip = chip_peak_flops(devices[0])
  if chip is not None:
    return chip * len(devices), f'{devices[0].device_kind} peak'
  # Virtual CPU devices share the same cores: one matmul is the machine's peak.
  return measured_matmul_flops(), 'measured 2048x2048 f32 matmul'


def measured_copy_bandwidth(num_bytes: int = 1 << 30, repeats: int = 5) -> float:
  """Device-memory bytes/s of an elementwise pass over `num_bytes` of float32
  on the first device, counting bytes read plus bytes written (2 * num_bytes).

  The ceiling for memory-bound work such as KV-cached decoding.
  """
  device = jax.local_devices()[0]
  x = jax.device_put(jax.random.uniform(jax.random.key(0), (num_bytes // 4,)), device)
  double = jax.jit(lambda x: x * 2.0)
  double(x).block_until_ready()
  best = float('inf')
  for _ in range(repeats):
    start = time.perf_counter()
    double(x).block_until_ready()
    best = min(best, time.perf_counter() - start)
  return 2.0 * (num_bytes // 4) * 4 / best
