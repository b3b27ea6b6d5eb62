"""Runs `videogen train` on a SLURM cluster: an sbatch script with one srun.

The script asks for `--nodes` nodes with `--gpus_per_node` GPUs each and
starts one task per GPU (`--ntasks-per-node` = GPUs per node), every task
running the same `videogen train ...`. `jax.distributed.initialize()` detects
SLURM by itself: the first node is the coordinator, `SLURM_PROCID` is the
process id and `SLURM_LOCALID` picks the task's GPU, so the command needs no
distributed flags. The code and its venv must already be on the cluster's
shared filesystem (`--source_dir`, `--venv`).

Example:
  python -m launch.slurm --name vg-run1 --nodes 2 --gpus_per_node 8 \
      --partition gpu --time 24:00:00 --source_dir ~/videogen \
      --venv ~/videogen/.venv --config configs/shapes/transformer.py \
      --workdir /shared/runs/vg-run1 --dry_run --config.batch_size=256
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from typing import Sequence

from launch import common


def build_parser() -> argparse.ArgumentParser:
  parser = common.make_parser('Train videogen on SLURM (sbatch + srun).')
  parser.add_argument('--nodes', type=int, default=1, help='Nodes to allocate.')
  parser.add_argument(
    '--gpus_per_node',
    type=int,
    default=8,
    help='GPUs per node; one task per GPU (0: one CPU task per node).',
  )
  parser.add_argument(
    '--cpus_per_task',
    type=int,
    default=0,
    help='CPUs per task (0: the cluster default).',
  )
  parser.add_argument('--partition', help='SLURM partition.')
  parser.add_argument('--account', help='SLURM account.')
  parser.add_argument('--qos', help='SLURM quality of service.')
  parser.add_argument('--time', default='24:00:00', help='Wall-clock limit.')
  parser.add_argument(
    '--requeue',
    action='store_true',
    help='Allow SLURM to requeue after preemption (training resumes '
    'from the latest checkpoint in the workdir).',
  )
  parser.add_argument(
    '--source_dir',
    default='.',
    help='videogen checkout on the shared filesystem (the job cd-s here).',
  )
  parser.add_argument('--venv', help='Virtualenv to activate (default: none).')
  parser.add_argument('--log_dir', default='slurm_logs', help='Directory for job logs.')
  parser.add_argument(
    '--script',
    help='Where to write the sbatch script (default: <log_dir>/<name>.sbatch).',
  )
  return parser


def sbatch_script(args: argparse.Namespace, train: common.TrainCommand) -> str:
  """The batch script: #SBATCH resources, environment, one `srun videogen train`."""
  tasks_per_node = max(args.gpus_per_node, 1)
  directives = [
    f'--job-name={args.name}',
    f'--nodes={args.nodes}',
    f'--ntasks-per-node={tasks_per_node}',
  ]
  if args.gpus_per_node:
    directives.append(f'--gpus-per-node={args.gpus_per_node}')
  if args.cpus_per_task:
    directives.append(f'--cpus-per-task={args.cpus_per_task}')
  for flag, value in (
    ('partition', args.partition),
    ('account', args.account),
    ('qos', args.qos),
  ):
    if value:
      directives.append(f'--{flag}={value}')
  directives += [
    f'--time={args.time}',
    '--exclusive',
    f'--output={os.path.join(args.log_dir, "%x-%j.out")}',
  ]
  if args.requeue:
    directives.append('--requeue')
  lines = ['#!/bin/bash']
  lines += [f'#SBATCH {directive}' for directive in directives]
  lines += [
    '',
    'set -eo pipefail',
    f'cd {shlex.quote(args.source_dir)}',
  ]
  if args.venv:
    lines.append(f'source {shlex.quote(os.path.join(args.venv, "bin", "activate"))}')
  lines += [
    '',
    '# Every task runs the same command; jax.distributed.initialize() reads',
    '# SLURM_PROCID / SLURM_NTASKS / SLURM_LOCALID and the node list.',
    f'srun --kill-on-bad-exit=1 {train.shell()}',
  ]
  return '\n'.join(lines) + '\n'


def main(argv: Sequence[str] | None = None) -> int:
  parser = build_parser()
  args, train = common.parse_args(parser, argv)
  if args.nodes < 1 or args.gpus_per_node < 0:
    parser.error('--nodes must be >= 1 and --gpus_per_node >= 0.')
  if args.nodes > 1 and args.workdir.startswith('/tmp'):
    parser.error('--workdir must be on a filesystem every node shares.')
  script_path = args.script or os.path.join(args.log_dir, f'{args.name}.sbatch')
  executor = common.Executor(dry_run=args.dry_run)
  executor.run(['mkdir', '-p', args.log_dir])
  executor.show_file(script_path, sbatch_script(args, train))
  executor.run(['sbatch', script_path])
  return 0


if __name__ == '__main__':
  sys.exit(main())
