"""What a committed checkpoint held, recorded after the save and verified on restore.

After orbax commits `checkpoints/<step>/`, process 0 writes
`<step>/videogen_manifest.json`: every file under the step with its size
and, while they cost under `CHECKSUM_BUDGET` of the save time, its CRC-32.
The save time is orbax's own (`commit - init` in `_CHECKPOINT_METADATA`);
once a run's checksums cost more than the budget, its later manifests hold
sizes only (remote storage, where reading a checkpoint back costs about as
much as writing it, ends there after its first save).

`verify(step_dir)` raises `CheckpointDamagedError` naming the first file that
is missing, has another size, or another checksum; a truncated or swapped
file is damage, not garbage loaded into the model. A step without a manifest
(written before manifests existed, or killed between commit and manifest) is
not verified here; orbax's own checks and the shape check still apply.

`newest_that_restores` is the one fallback loop: training resume
(`train.checkpointing`) and every inference load (sample, eval, export)
try the newest step first and fall back past the damaged ones. This module
sits below the models, so inference code may use it without the engine.
"""

from __future__ import annotations

import json
import time
import zlib
from typing import Any, Callable

import jax
from etils import epath

MANIFEST = 'videogen_manifest.json'
# Checksums are kept while they take at most this fraction of the save time.
CHECKSUM_BUDGET = 0.05
_CHUNK = 1 << 22


class CheckpointDamagedError(RuntimeError):
  """A checkpoint's files are not what was written at save time."""


class NoRestorableCheckpointError(RuntimeError):
  """Checkpoints exist, but none of those tried restores."""


def _files(step_dir: epath.Path) -> list[tuple[str, epath.Path]]:
  found = []
  for root, _, names in step_dir.walk():
    root = epath.Path(root)
    for name in names:
      path = root / name
      relative = str(path.relative_to(step_dir))
      if relative != MANIFEST:
        found.append((relative, path))
  return sorted(found)


def _crc32(path: epath.Path) -> str:
  crc = 0
  with path.open('rb') as f:
    while chunk := f.read(_CHUNK):
      crc = zlib.crc32(chunk, crc)
  return f'{crc:08x}'


def save_seconds(step_dir: epath.Path) -> float | None:
  """The save's duration as orbax recorded it (None when unreadable)."""
  try:
    meta = json.loads((step_dir / '_CHECKPOINT_METADATA').read_text())
    return (meta['commit_timestamp_nsecs'] - meta['init_timestamp_nsecs']) / 1e9
  except (OSError, ValueError, KeyError, TypeError):
    return None


def write_manifest(step_dir: epath.Path, *, checksums: bool) -> dict:
  """Records the files of a committed step; returns the manifest written.

  Args:
    step_dir: `checkpoints/<step>`, committed.
    checksums: also record CRC-32s (timed: `checksum_seconds`).
  """
  step_dir = epath.Path(step_dir)
  files = {}
  start = time.perf_counter()
  for relative, path in _files(step_dir):
    entry = {'size': int(path.stat().length)}
    if checksums:
      entry['crc32'] = _crc32(path)
    files[relative] = entry
  manifest = {
    'format': 1,
    'files': files,
    'save_seconds': save_seconds(step_dir),
    'checksum_seconds': time.perf_counter() - start if checksums else None,
  }
  (step_dir / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True))
  return manifest


def checksums_within_budget(manifest: dict) -> bool:
  """Whether this manifest's checksums cost at most `CHECKSUM_BUDGET` of its save."""
  spent, saved = manifest.get('checksum_seconds'), manifest.get('save_seconds')
  if spent is None or not saved:
    return spent is None
  return spent <= CHECKSUM_BUDGET * saved


def verify(step_dir: epath.Path) -> bool:
  """Checks `step_dir` against its manifest.

  Returns:
    True when a manifest was checked, False when the step has none.

  Raises:
    CheckpointDamagedError: naming the first file that differs.
  """
  step_dir = epath.Path(step_dir)
  path = step_dir / MANIFEST
  if not path.exists():
    return False
  try:
    files = json.loads(path.read_text())['files']
  except (ValueError, KeyError, TypeError) as error:
    raise CheckpointDamagedError(f'its manifest {MANIFEST} is unreadable ({error})') from None
  for relative, entry in sorted(files.items()):
    file = step_dir / relative
    if not file.exists():
      raise CheckpointDamagedError(f'{relative} is missing')
    size = int(file.stat().length)
    if size != entry['size']:
      raise CheckpointDamagedError(
        f'{relative} has {size} bytes, {entry["size"]} when it was saved (truncated or replaced)'
      )
    if 'crc32' in entry and _crc32(file) != entry['crc32']:
      raise CheckpointDamagedError(f'{relative} has another checksum than when it was saved')
  return True


def describe_error(error: Exception) -> str:
  """`Type: first line of the message`, short enough for one log line."""
  text = str(error).strip().splitlines()[0] if str(error).strip() else ''
  return f'{type(error).__name__}: {text}'[:400] if text else type(error).__name__


def _all_agree(ok: bool) -> bool:
  """True when every process succeeded (so all fall back, or none does)."""
  if jax.process_count() == 1:
    return ok
  import numpy as np
  from jax.experimental import multihost_utils

  return bool(np.all(multihost_utils.process_allgather(np.int32(ok))))


def newest_that_restores(
  steps: list[int],
  attempt: Callable[[int], Any],
  *,
  fallback: bool,
  directory: epath.Path,
) -> tuple[int, Any, list[tuple[int, str]]]:
  """Tries `attempt(step)` newest first; the one place restores fall back.

  Any exception of `attempt` marks the step damaged; processes agree on
  each verdict, so all fall back together.

  Args:
    steps: the candidate steps.
    attempt: `step -> result`, raising when the step cannot be restored.
    fallback: try older steps after a failure; False raises at the first.
    directory: the checkpoints directory, for messages.

  Returns:
    (step restored, its result, [(newer step, reason it failed)]).

  Raises:
    NoRestorableCheckpointError: listing each step tried and why it failed.
  """
  failures: list[tuple[int, str]] = []
  for step in sorted(steps, reverse=True):
    try:
      result, error = attempt(step), None
    except Exception as caught:  # noqa: BLE001 - any failure to restore is damage here.
      result, error = None, caught
    if _all_agree(error is None):
      return step, result, failures
    reason = describe_error(error) if error is not None else 'another process could not restore it'
    failures.append((step, reason))
    if not fallback:
      raise NoRestorableCheckpointError(
        f'checkpoint step {step} in {directory} cannot be restored ({reason}). '
        'Set --config.checkpoint.fallback=true to fall back to an older checkpoint.'
      ) from error
  tried = '; '.join(f'step {step}: {reason}' for step, reason in failures)
  raise NoRestorableCheckpointError(
    f'no checkpoint in {directory} restores; tried {tried}. Nothing was moved; delete or '
    'repair them, or train in another --workdir.'
  )
