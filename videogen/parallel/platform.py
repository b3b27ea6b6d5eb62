"""The platform a program is built for, which need not be the one running it.

Ahead-of-time compilation for a TPU topology (`videogen compile`) traces on
a CPU-only machine, but the model must choose what it would choose on the
TPU (the splash-attention kernel, native 3D convolutions). Code that picks
an implementation by platform asks `current()`, and the compiler sets it
with `target('tpu')` while tracing.
"""

from __future__ import annotations

import contextlib
import contextvars
import glob
import importlib.util
import os
from typing import Iterator

_TARGET: contextvars.ContextVar[str | None] = contextvars.ContextVar(
  'videogen_target_platform', default=None
)


def current() -> str:
  """'cpu', 'gpu' or 'tpu': the target set by `target`, else JAX's default backend."""
  target_platform = _TARGET.get()
  if target_platform is not None:
    return target_platform
  import jax  # noqa: PLC0415  (keeps this module importable before JAX is configured)

  return jax.default_backend()


@contextlib.contextmanager
def target(platform: str) -> Iterator[None]:
  """Within this context, `current()` is `platform` (tracing for another machine)."""
  token = _TARGET.set(platform)
  try:
    yield
  finally:
    _TARGET.reset(token)


def tpu_visible() -> bool:
  """Whether this machine has TPU chips (v2-v5e as /dev/accel*, v5p/v6e as VFIO)."""
  return bool(glob.glob('/dev/accel*') or glob.glob('/dev/vfio/[0-9]*'))


def _gpu_plugin_installed() -> bool:
  return any(
    importlib.util.find_spec(name) is not None
    for name in ('jax_cuda12_plugin', 'jax_cuda13_plugin', 'jax_rocm60_plugin')
  )


def _accelerator_present() -> bool:
  return tpu_visible() or _gpu_plugin_installed()


def prefer_cpu_without_tpu() -> bool:
  """Pins JAX to the CPU where libtpu is installed but no TPU (nor GPU) is there.

  `pip install '.[tpu]'` brings libtpu for ahead-of-time compilation; on a
  machine without TPU chips JAX still falls back to the CPU, but only after
  libtpu has printed errors about missing TPU environment variables at every
  start. Call before JAX initialises a backend. A user's JAX_PLATFORMS wins.

  Returns:
    True when JAX_PLATFORMS was set to 'cpu'.
  """
  if 'JAX_PLATFORMS' in os.environ or importlib.util.find_spec('libtpu') is None:
    return False
  if _accelerator_present():
    return False
  os.environ['JAX_PLATFORMS'] = 'cpu'
  return True


def cpu_only() -> bool:
  """Whether JAX will run on the CPU, known before it starts a backend.

  True when JAX_PLATFORMS names only 'cpu', or, with JAX_PLATFORMS unset, when
  this machine has no TPU chips and no GPU plugin is installed.
  """
  platforms = os.environ.get('JAX_PLATFORMS', '')
  if platforms:
    return platforms.lower() == 'cpu'
  return not _accelerator_present()
