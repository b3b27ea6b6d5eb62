"""Runs `videogen train` on a Cloud TPU VM (one slice or several).

Steps (choose with `--action`, comma-separated, in this order):
  create   `gcloud compute tpus tpu-vm create` (on-demand, one slice), or a
           queued resource (`gcloud compute tpus queued-resources create`)
           with `--spot` and/or `--num_slices > 1`, then wait until ACTIVE.
  install  puts the code on every worker (git clone of `--repo`/`--branch`,
           or a tarball of `--source_dir` copied with `tpu-vm scp`) and
           installs it with `jax[tpu]` into a Python 3.11 venv made by uv.
  train    starts the same `videogen train ...` on all workers (`--worker=all`,
           and `--node=all` for queued resources) in the background, logging
           to ~/videogen-train.log; jax.distributed finds the other hosts (and
           slices) from the TPU metadata.
  logs     tails the log of worker 0 (`--follow` to keep following).
  delete   deletes the TPU VM or queued resource.
`--action=up` is create,install,train.

Example:
  python -m launch.tpu_vm --name vg-v5e --project my-proj --zone us-west4-a \
      --accelerator_type v5litepod-16 --spot \
      --repo https://github.com/me/videogen.git --branch main \
      --config configs/shapes/transformer.py --workdir gs://my-bucket/vg/run1 \
      --dry_run --config.batch_size=256
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import tempfile
from typing import Sequence

from launch import common

ACTIONS = ('create', 'install', 'train', 'logs', 'delete')
REMOTE_SOURCE = '~/videogen'
REMOTE_VENV = '~/videogen-venv'
REMOTE_LOG = '~/videogen-train.log'
REMOTE_TARBALL = '~/videogen-src.tar.gz'
# Excluded from a copied tree: environments, caches, run outputs.
TAR_EXCLUDES = (
  '.git',
  '.venv',
  '__pycache__',
  '*.egg-info',
  'runs',
  '.pytest_cache',
  '.ruff_cache',
)


def build_parser() -> argparse.ArgumentParser:
  parser = common.make_parser('Train videogen on a Cloud TPU VM.')
  parser.add_argument('--project', required=True, help='Google Cloud project.')
  parser.add_argument('--zone', required=True, help='Zone, e.g. us-central2-b.')
  parser.add_argument(
    '--accelerator_type',
    required=True,
    help='TPU type, e.g. v4-32, v5litepod-16, v5p-64, v6e-16.',
  )
  parser.add_argument(
    '--runtime_version',
    default='tpu-ubuntu2204-base',
    help='TPU software version (v2-alpha-tpuv6e for v6e).',
  )
  parser.add_argument(
    '--spot', action='store_true', help='Spot capacity, through a queued resource.'
  )
  parser.add_argument(
    '--num_slices',
    type=int,
    default=1,
    help='Slices joined over DCN (multislice, a queued resource).',
  )
  parser.add_argument(
    '--action', default='up', help=f'Comma-separated steps from {ACTIONS}, or "up".'
  )
  source = parser.add_mutually_exclusive_group()
  source.add_argument('--repo', help='Git URL to clone on the workers.')
  source.add_argument('--source_dir', help='Local tree to copy to the workers.')
  parser.add_argument('--branch', default='main', help='Branch or tag with --repo.')
  parser.add_argument('--python', default='3.11', help='Python version of the venv.')
  parser.add_argument('--follow', action='store_true', help='logs: keep following.')
  parser.add_argument(
    '--foreground',
    action='store_true',
    help='train: stream output and wait for the end instead of starting in the background.',
  )
  return parser


def parse_actions(value: str) -> list[str]:
  actions = ['create', 'install', 'train'] if value == 'up' else value.split(',')
  unknown = [a for a in actions if a not in ACTIONS]
  if unknown:
    raise ValueError(f'Unknown --action {unknown}; choose from {ACTIONS} or "up".')
  return sorted(actions, key=ACTIONS.index)


class TpuVm:
  """gcloud commands for one TPU VM or queued resource named `args.name`."""

  def __init__(self, args: argparse.Namespace):
    self.args = args
    # Spot capacity and multislice both go through a queued resource.
    self.queued = args.spot or args.num_slices > 1

  @property
  def _where(self) -> list[str]:
    return [f'--project={self.args.project}', f'--zone={self.args.zone}']

  def node_names(self) -> list[str]:
    """The TPU VMs (one per slice) that the queued resource or create makes."""
    if self.args.num_slices > 1:
      return [f'{self.args.name}-{i}' for i in range(self.args.num_slices)]
    return [self.args.name]

  def create(self) -> list[str]:
    args = self.args
    common_flags = [*self._where, f'--accelerator-type={args.accelerator_type}']
    if not self.queued:
      return [
        'gcloud',
        'compute',
        'tpus',
        'tpu-vm',
        'create',
        args.name,
        *common_flags,
        f'--version={args.runtime_version}',
      ]
    if args.num_slices > 1:
      nodes = [f'--node-count={args.num_slices}', f'--node-prefix={args.name}']
    else:
      nodes = [f'--node-id={args.name}']
    spot = ['--spot'] if args.spot else []
    return [
      'gcloud',
      'compute',
      'tpus',
      'queued-resources',
      'create',
      args.name,
      *common_flags,
      f'--runtime-version={args.runtime_version}',
      *nodes,
      *spot,
    ]

  def describe_state(self) -> list[str]:
    return [
      'gcloud',
      'compute',
      'tpus',
      'queued-resources',
      'describe',
      self.args.name,
      *self._where,
      '--format=value(state.state)',
    ]

  def ssh(self, command: str, *, all_workers: bool = True) -> list[str]:
    """Runs `command` on every worker (of every slice) or on worker 0."""
    if self.queued:
      target = [
        'gcloud',
        'compute',
        'tpus',
        'queued-resources',
        'ssh',
        self.args.name,
        '--node=all' if all_workers else '--node=0',
      ]
    else:
      target = ['gcloud', 'compute', 'tpus', 'tpu-vm', 'ssh', self.args.name]
    worker = '--worker=all' if all_workers else '--worker=0'
    return [*target, *self._where, worker, f'--command={command}']

  def scp(self, node: str, local_path: str, remote_path: str) -> list[str]:
    return [
      'gcloud',
      'compute',
      'tpus',
      'tpu-vm',
      'scp',
      local_path,
      f'{node}:{remote_path}',
      *self._where,
      '--worker=all',
    ]

  def delete(self) -> list[str]:
    if self.queued:
      return [
        'gcloud',
        'compute',
        'tpus',
        'queued-resources',
        'delete',
        self.args.name,
        *self._where,
        '--force',
        '--quiet',
      ]
    return [
      'gcloud',
      'compute',
      'tpus',
      'tpu-vm',
      'delete',
      self.args.name,
      *self._where,
      '--quiet',
    ]


def install_script(args: argparse.Namespace) -> str:
  """Shell run on every worker: fetch the code, make the venv, install."""
  if args.repo:
    fetch = (
      f'rm -rf {REMOTE_SOURCE} && git clone --depth 1 --branch '
      f'{shlex.quote(args.branch)} {shlex.quote(args.repo)} {REMOTE_SOURCE}'
    )
  else:
    fetch = (
      f'rm -rf {REMOTE_SOURCE} && mkdir -p {REMOTE_SOURCE} && '
      f'tar -xzf {REMOTE_TARBALL} -C {REMOTE_SOURCE}'
    )
  # TPU VM images ship an older system Python; uv provides the one we need.
  steps = [
    fetch,
    'python3 -m pip install --user --quiet --upgrade uv',
    f'~/.local/bin/uv venv --allow-existing --python {args.python} {REMOTE_VENV}',
    f'~/.local/bin/uv pip install --python {REMOTE_VENV}/bin/python -e {REMOTE_SOURCE} "jax[tpu]"',
  ]
  return ' && '.join(steps)


def train_script(args: argparse.Namespace, train: common.TrainCommand) -> str:
  """Shell run on every worker: the same `videogen train` everywhere."""
  prefix = f'cd {REMOTE_SOURCE} && source {REMOTE_VENV}/bin/activate && '
  if args.foreground:
    return prefix + train.shell()
  # Detached so that closing ssh does not stop training.
  return (
    prefix + f'nohup {train.shell()} > {REMOTE_LOG} 2>&1 < /dev/null & '
    f'echo "started on $(hostname); log: {REMOTE_LOG}"'
  )


def logs_script(args: argparse.Namespace) -> str:
  return f'tail -n 200 {"-F " if args.follow else ""}{REMOTE_LOG}'


def source_tarball_command(source_dir: str, tarball: str) -> list[str]:
  excludes = [f'--exclude={pattern}' for pattern in TAR_EXCLUDES]
  return ['tar', '-czf', tarball, *excludes, '-C', source_dir, '.']


def main(argv: Sequence[str] | None = None) -> int:
  parser = build_parser()
  args, train = common.parse_args(parser, argv)
  try:
    actions = parse_actions(args.action)
  except ValueError as e:
    parser.error(str(e))
  if 'install' in actions and not (args.repo or args.source_dir):
    parser.error('install needs --repo (git URL) or --source_dir (local tree).')
  if args.num_slices < 1:
    parser.error('--num_slices must be >= 1.')
  if not common.is_shared_path(args.workdir):
    print(
      f'warning: --workdir {args.workdir} is not shared storage; every worker '
      'writes its own copy (use gs:// for multi-host runs).',
      file=sys.stderr,
    )
  executor = common.Executor(dry_run=args.dry_run)
  tpu = TpuVm(args)

  if 'create' in actions:
    executor.note(
      f'create {args.accelerator_type} x{args.num_slices}{" (spot)" if args.spot else ""}'
    )
    executor.run(tpu.create())
    if tpu.queued:
      executor.note('wait for the queued resource to become ACTIVE')
      if args.dry_run:
        executor.output(tpu.describe_state())
      else:
        common.wait_until(
          lambda: executor.output(tpu.describe_state()),
          'ACTIVE',
          ('FAILED', 'SUSPENDED'),
        )
  if 'install' in actions:
    executor.note('install videogen on every worker')
    if args.source_dir:
      tarball = os.path.join(tempfile.gettempdir(), f'{args.name}-videogen-src.tar.gz')
      executor.run(source_tarball_command(args.source_dir, tarball))
      for node in tpu.node_names():
        executor.run(tpu.scp(node, tarball, REMOTE_TARBALL))
    executor.run(tpu.ssh(install_script(args)))
  if 'train' in actions:
    executor.note('start the same training command on all workers')
    executor.run(tpu.ssh(train_script(args, train)))
  if 'logs' in actions:
    executor.run(tpu.ssh(logs_script(args), all_workers=False))
  if 'delete' in actions:
    executor.note('delete the TPU (the workdir stays)')
    executor.run(tpu.delete())
  return 0


if __name__ == '__main__':
  sys.exit(main())
