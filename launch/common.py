"""Helpers shared by the launchers: flags, the train command, running commands.

Every launcher runs the same `videogen train --config ... --workdir ...`
command on every host and only differs in how hosts are obtained. `--dry_run`
prints each command (one per line, shell-quoted, runnable by copy-paste) and
each generated file instead of running anything.
"""

from __future__ import annotations

import argparse
import dataclasses
import shlex
import subprocess
import sys
import time
from typing import Callable, Sequence, TextIO

OVERRIDE_PREFIX = '--config.'


@dataclasses.dataclass(frozen=True)
class TrainCommand:
  """The `videogen train` invocation every host runs.

  Attributes:
    config: config file, optionally with its argument (`configs/x.py:size=small`).
    workdir: the run directory; multi-host runs need shared storage (gs://).
    overrides: `--config.key=value` flags passed through unchanged.
  """

  config: str
  workdir: str
  overrides: tuple[str, ...] = ()

  def argv(self, extra: Sequence[str] = ()) -> list[str]:
    return [
      'videogen',
      'train',
      '--config',
      self.config,
      '--workdir',
      self.workdir,
      *self.overrides,
      *extra,
    ]

  def shell(self, extra: Sequence[str] = ()) -> str:
    """The command as one shell string (arguments quoted where needed)."""
    return shlex.join(self.argv(extra))


def make_parser(description: str) -> argparse.ArgumentParser:
  """An argparse parser with the flags every launcher takes."""
  parser = argparse.ArgumentParser(
    description=description,
    allow_abbrev=False,
    epilog='Any number of --config.key=value overrides may follow; they are '
    'passed to `videogen train` unchanged.',
  )
  parser.add_argument('--name', required=True, help='Name of the TPU VM / JobSet / SLURM job.')
  parser.add_argument(
    '--config',
    required=True,
    help='Experiment config, e.g. configs/shapes/transformer.py[:arg].',
  )
  parser.add_argument(
    '--workdir',
    required=True,
    help='Run directory; gs:// (or another shared path) for multi-host runs.',
  )
  parser.add_argument(
    '--dry_run',
    action='store_true',
    help='Print the commands and generated files instead of running them.',
  )
  return parser


def parse_args(
  parser: argparse.ArgumentParser, argv: Sequence[str] | None
) -> tuple[argparse.Namespace, TrainCommand]:
  """Parses launcher flags; leftover `--config.key=value` flags become overrides.

  Raises:
    SystemExit: (through `parser.error`) on an unknown flag or an override
      not written as `--config.key=value`.
  """
  args, rest = parser.parse_known_args(argv)
  bad = [arg for arg in rest if not (arg.startswith(OVERRIDE_PREFIX) and '=' in arg)]
  if bad:
    parser.error(
      f'unrecognized arguments: {" ".join(bad)} (config overrides must be '
      f'written {OVERRIDE_PREFIX}key=value)'
    )
  return args, TrainCommand(args.config, args.workdir, tuple(rest))


def is_shared_path(path: str) -> bool:
  """Whether every host sees `path` (object storage; not a local directory)."""
  return path.startswith(('gs://', 's3://', 'hdfs://'))


@dataclasses.dataclass
class Executor:
  """Runs commands, or prints them when `dry_run`.

  Attributes:
    dry_run: print instead of run.
    out: where dry-run output goes.
    runner: `subprocess.run`-like callable (injectable for tests).
  """

  dry_run: bool
  out: TextIO = dataclasses.field(default_factory=lambda: sys.stdout)
  runner: Callable[..., subprocess.CompletedProcess] = subprocess.run

  def note(self, text: str) -> None:
    """A `# comment` line saying what the next commands do."""
    print(f'# {text}', file=self.out if self.dry_run else sys.stderr, flush=True)

  def run(self, argv: Sequence[str], *, stdin_text: str | None = None) -> None:
    """Runs `argv` (raising on failure); with `stdin_text`, feeds it on stdin."""
    if self.dry_run:
      print(shlex.join(argv), file=self.out)
      if stdin_text is not None:
        print(stdin_text.rstrip('\n'), file=self.out)
        print('# (end of stdin)', file=self.out)
      return
    print(f'+ {shlex.join(argv)}', file=sys.stderr, flush=True)
    self.runner(list(argv), input=stdin_text, text=True, check=True)

  def output(self, argv: Sequence[str]) -> str:
    """Runs `argv` and returns its stdout; in a dry run prints it, returns ''."""
    if self.dry_run:
      print(shlex.join(argv), file=self.out)
      return ''
    result = self.runner(list(argv), text=True, check=True, capture_output=True)
    return result.stdout

  def show_file(self, path: str, content: str) -> None:
    """Writes a generated file (or prints it in a dry run)."""
    if self.dry_run:
      print(f'# ---- {path} ----', file=self.out)
      print(content.rstrip('\n'), file=self.out)
      print(f'# ---- end of {path} ----', file=self.out)
      return
    with open(path, 'w') as f:
      f.write(content)
    print(f'wrote {path}', file=sys.stderr)


def wait_until(
  probe: Callable[[], str],
  ready: str,
  failed: Sequence[str],
  *,
  poll_seconds: float = 30.0,
  timeout_seconds: float = 24 * 3600.0,
  sleep: Callable[[float], None] = time.sleep,
) -> None:
  """Polls `probe()` until it returns `ready`.

  Raises:
    RuntimeError: when the probe returns one of `failed` or time runs out.
  """
  deadline = time.monotonic() + timeout_seconds
  while True:
    state = probe().strip()
    if state == ready:
      return
    if state in failed:
      raise RuntimeError(f'resource entered state {state}')
    if time.monotonic() > deadline:
      raise RuntimeError(f'still {state or "unknown"} after {timeout_seconds:.0f}s')
    print(f'state: {state or "unknown"}; waiting for {ready}', file=sys.stderr, flush=True)
    sleep(poll_seconds)
