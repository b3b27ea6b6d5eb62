"""The C allocator a training process runs with: one that keeps its freed memory.

XLA:CPU allocates every step's buffers and frees them when the step ends. By
default glibc hands freed memory back to the kernel, so the next step
page-faults the same memory in again: on 2 cores, 16% of the tiny
tokenizer's CPU time and 15% of the multi-task transformer's went to the
kernel (302 million page faults in 1400 steps).

The `videogen` command therefore starts itself again (`restart_with_kept_memory`;
an allocator is chosen before the process starts: `mallopt` from Python after
start-up gave the tiny tokenizer 8.0 steps/s against 8.8) with:

- tcmalloc preloaded where the system has it (Colab does; Debian and Ubuntu:
  `apt install libtcmalloc-minimal4`). Steps per second on 2 cores, against
  glibc with `CPU_ONLY_GLIBC_SETTINGS`: tiny transformer 3.68 vs 3.31,
  multi-task 1.18 vs 1.05, tiny tokenizer 8.58 vs 7.97; the transformer's
  peak memory 1.76 vs 2.23 GiB (`benchmarks/results/host_allocator.md`).
- Otherwise glibc, told to keep its memory (`GLIBC_SETTINGS`; with one arena
  on a CPU-only machine, `CPU_ONLY_GLIBC_SETTINGS`).

A process whose environment already chooses (any `MALLOC_*`, `GLIBC_TUNABLES`,
or a malloc in `LD_PRELOAD`) is left as it is, and so is any C library other
than glibc.
"""

from __future__ import annotations

import ctypes.util
import os
import sys
from typing import Mapping

GLIBC_SETTINGS = {
  # Never return freed heap memory to the kernel (the largest value glibc takes).
  'MALLOC_TRIM_THRESHOLD_': str(2**31 - 1),
  # Grow the heap in steps this large, so a step's buffers fit in one growth.
  'MALLOC_TOP_PAD_': str(256 * 2**20),
  # Serve every block from the (kept) heap, never from a fresh mmap: a block
  # over the mmap threshold (at most 32 MiB) that does not fit the heap's
  # free top would otherwise be mapped and unmapped on every step (measured:
  # the tiny tokenizer at 7.5 steps/s instead of 8.8).
  'MALLOC_MMAP_MAX_': '0',
}
# XLA:CPU runs a step on its own threads, and a thread's own arena serves a block
# larger than its 64 MiB heaps from a fresh mmap whatever MALLOC_MMAP_MAX_ says. One
# arena (the main heap) keeps them too: tiny transformer 3.31 vs 2.73 steps/s (page faults
# 26.8 -> 0.9 million in 300 steps), multi-task 1.05 vs 0.92, tokenizer 7.97 vs 8.44.
# Not set where an accelerator may run: there the input pipeline's threads would share
# one lock, and the steps' buffers live in the accelerator's memory.
CPU_ONLY_GLIBC_SETTINGS = {**GLIBC_SETTINGS, 'MALLOC_ARENA_MAX': '1'}
# Library names `ctypes.util.find_library` looks up, preferred first.
TCMALLOC_LIBRARIES = ('tcmalloc_minimal', 'tcmalloc')


def is_glibc() -> bool:
  """Whether this process runs on glibc (whose malloc the settings are for)."""
  try:
    return os.confstr('CS_GNU_LIBC_VERSION').startswith('glibc')
  except (AttributeError, ValueError, OSError):  # Not a POSIX system, or not glibc.
    return False


def find_tcmalloc() -> str | None:
  """The system's tcmalloc shared library (a name `LD_PRELOAD` finds), or None."""
  for name in TCMALLOC_LIBRARIES:
    library = ctypes.util.find_library(name)
    if library:
      return library
  return None


def chooses_allocator(environ: Mapping[str, str]) -> bool:
  """Whether `environ` already sets the allocator or its options."""
  if 'GLIBC_TUNABLES' in environ or any(key.startswith('MALLOC_') for key in environ):
    return True
  return 'malloc' in environ.get('LD_PRELOAD', '')


def _keeps_its_own(environ: Mapping[str, str]) -> bool:
  return not is_glibc() or chooses_allocator(environ)


def allocator_environment(
  environ: Mapping[str, str], *, tcmalloc: str | None, cpu_only: bool
) -> dict[str, str] | None:
  """`environ` with the allocator chosen, or None when the process should keep its own.

  Args:
    environ: the process's environment.
    tcmalloc: the tcmalloc library to preload (`find_tcmalloc()`), or None for glibc.
    cpu_only: JAX will run on the CPU (one glibc arena then).

  Returns:
    None on other C libraries and when `environ` already chooses
    (`chooses_allocator`): the user's choice wins.
  """
  if _keeps_its_own(environ):
    return None
  if tcmalloc:
    preload = ' '.join(filter(None, (environ.get('LD_PRELOAD', ''), tcmalloc)))
    return {**environ, 'LD_PRELOAD': preload}
  return {**environ, **(CPU_ONLY_GLIBC_SETTINGS if cpu_only else GLIBC_SETTINGS)}


def restart_with_kept_memory() -> None:
  """Re-executes this process with `allocator_environment` unless it has chosen.

  Call first thing in a command-line entry point, after JAX_PLATFORMS is
  settled: it does not return when it restarts (same interpreter, same
  command line, same process id).
  """
  from videogen.parallel import platform  # noqa: PLC0415  (a sibling; keeps startup light)

  # Checked before the library lookup (`ldconfig`), which the restarted process skips.
  if _keeps_its_own(os.environ):
    return
  environ = allocator_environment(
    os.environ, tcmalloc=find_tcmalloc(), cpu_only=platform.cpu_only()
  )
  sys.stdout.flush()
  sys.stderr.flush()
  os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], environ)
