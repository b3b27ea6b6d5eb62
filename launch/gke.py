"""Runs `videogen train` on GKE: a JobSet for TPU slices or GPU nodes, or XPK.

`--mode=jobset` (default) writes a JobSet manifest (needs the JobSet
controller in the cluster) and applies it with `kubectl apply -f -`;
`--mode=xpk` prints/runs the equivalent `xpk workload create` (TPU) instead.
Every pod runs the same `videogen train ...` from a container image that has
videogen installed (`--image`, see launch/README.md).

TPU (`--accelerator_type` v4-N, v5litepod-N, v5p-N, v6e-N, with `--topology`):
one replicated Job per slice (`--num_slices`), one pod per TPU host; GKE
sets the TPU worker environment (and the multislice variables) that
`jax.distributed.initialize()` reads.

GPU (`--accelerator_type nvidia-...`): one Indexed Job of `--num_nodes` pods,
each with `--gpus_per_node` GPUs; the pods find their coordinator (pod 0)
through the JobSet's headless service and pass `--coordinator_address`,
`--num_processes` and `--process_id` to `videogen train`.

Example:
  python -m launch.gke --name vg-run1 --cluster my-cluster --project my-proj \
      --zone us-west4-a --accelerator_type v5litepod-16 --topology 4x4 \
      --image us-docker.pkg.dev/my-proj/vg/videogen:latest \
      --config configs/shapes/transformer.py --workdir gs://my-bucket/vg/run1 \
      --dry_run
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import re
import sys
from typing import Any, Sequence

import yaml

from launch import common

# TPU type prefix -> (GKE node label value, cores per chip in the type name).
TPU_ACCELERATORS = {
  'v4': ('tpu-v4-podslice', 2),
  'v5p': ('tpu-v5p-slice', 2),
  'v5litepod': ('tpu-v5-lite-podslice', 1),
  'v6e': ('tpu-v6e-slice', 1),
}
COORDINATOR_PORT = 12345


@dataclasses.dataclass(frozen=True)
class TpuSlice:
  """One TPU slice as GKE sees it.

  Attributes:
    accelerator_label: value of `cloud.google.com/gke-tpu-accelerator`.
    topology: chip topology (`cloud.google.com/gke-tpu-topology`), e.g. 4x4.
    chips: chips in the slice.
    hosts: TPU VMs (pods) in the slice.
    chips_per_host: `google.com/tpu` resource of each pod.
  """

  accelerator_label: str
  topology: str
  chips: int
  hosts: int
  chips_per_host: int


def tpu_slice(accelerator_type: str, topology: str) -> TpuSlice:
  """Parses `v5litepod-16` + `4x4` into GKE labels and host counts.

  Raises:
    ValueError: for an unknown type or a topology of the wrong size.
  """
  match = re.fullmatch(r'(v4|v5p|v5litepod|v6e)-(\d+)', accelerator_type)
  if not match:
    raise ValueError(
      f'Unknown TPU type {accelerator_type!r}; expected one of '
      f'{sorted(TPU_ACCELERATORS)} followed by -N (e.g. v5litepod-16).'
    )
  label, cores_per_chip = TPU_ACCELERATORS[match.group(1)]
  chips = int(match.group(2)) // cores_per_chip
  if not re.fullmatch(r'\d+(x\d+)+', topology or ''):
    raise ValueError(f'--topology (e.g. 2x2x4, 4x4) is required for TPU, got {topology!r}.')
  topology_chips = math.prod(int(d) for d in topology.split('x'))
  if topology_chips != chips:
    raise ValueError(
      f'{accelerator_type} has {chips} chips but topology {topology} has {topology_chips}.'
    )
  # Single-host v5e/v6e machines hold up to 8 chips; every other host has 4.
  if match.group(1) in ('v5litepod', 'v6e') and chips <= 8:
    chips_per_host = chips
  else:
    chips_per_host = min(chips, 4)
  return TpuSlice(label, topology, chips, chips // chips_per_host, chips_per_host)


def build_parser() -> argparse.ArgumentParser:
  parser = common.make_parser('Train videogen on GKE (JobSet or XPK).')
  parser.add_argument('--project', help='Google Cloud project (for get-credentials/xpk).')
  parser.add_argument('--zone', help='Cluster zone or region.')
  parser.add_argument('--cluster', help='GKE cluster; fetches kubectl credentials first.')
  parser.add_argument(
    '--accelerator_type',
    required=True,
    help='TPU type (v4-N, v5litepod-N, v5p-N, v6e-N) or GKE GPU label '
    '(nvidia-h100-80gb, nvidia-a100-80gb, nvidia-l4, ...).',
  )
  parser.add_argument('--topology', help='TPU topology, e.g. 4x4 (v5e/v6e) or 2x2x4 (v4/v5p).')
  parser.add_argument('--num_slices', type=int, default=1, help='TPU slices (multislice).')
  parser.add_argument('--num_nodes', type=int, default=1, help='GPU nodes.')
  parser.add_argument('--gpus_per_node', type=int, default=8, help='GPUs per node.')
  parser.add_argument('--spot', action='store_true', help='Schedule on Spot nodes.')
  parser.add_argument('--image', required=True, help='Container image with videogen installed.')
  parser.add_argument('--namespace', default='default', help='Kubernetes namespace.')
  parser.add_argument(
    '--max_restarts',
    type=int,
    default=3,
    help='JobSet restarts after a failure (training resumes from the '
    'latest checkpoint in the workdir).',
  )
  parser.add_argument('--mode', choices=('jobset', 'xpk'), default='jobset')
  parser.add_argument('--output', help='Also write the manifest to this file.')
  return parser


def _container(
  args: argparse.Namespace,
  script: str,
  resources: dict[str, Any],
  env: list[dict[str, Any]],
) -> dict[str, Any]:
  container = {
    'name': 'videogen',
    'image': args.image,
    'command': ['bash', '-c', script],
    'resources': {'limits': resources},
  }
  if env:
    container['env'] = env
  return container


def _jobset(
  args: argparse.Namespace,
  replicated_job: dict[str, Any],
  annotations: dict[str, str],
  spec: dict[str, Any] | None = None,
) -> dict[str, Any]:
  metadata: dict[str, Any] = {'name': args.name, 'namespace': args.namespace}
  if annotations:
    metadata['annotations'] = annotations
  return {
    'apiVersion': 'jobset.x-k8s.io/v1alpha2',
    'kind': 'JobSet',
    'metadata': metadata,
    'spec': {
      **(spec or {}),
      'failurePolicy': {'maxRestarts': args.max_restarts},
      'replicatedJobs': [replicated_job],
    },
  }


def _job_template(pods: int, pod_spec: dict[str, Any]) -> dict[str, Any]:
  return {
    'spec': {
      'parallelism': pods,
      'completions': pods,
      'completionMode': 'Indexed',
      'backoffLimit': 0,
      'template': {'spec': {'restartPolicy': 'Never', **pod_spec}},
    }
  }


def tpu_manifest(args: argparse.Namespace, train: common.TrainCommand) -> dict[str, Any]:
  """JobSet with one replicated Job per TPU slice, one pod per TPU host."""
  tpu = tpu_slice(args.accelerator_type, args.topology)
  node_selector = {
    'cloud.google.com/gke-tpu-accelerator': tpu.accelerator_label,
    'cloud.google.com/gke-tpu-topology': tpu.topology,
  }
  if args.spot:
    node_selector['cloud.google.com/gke-spot'] = 'true'
  container = _container(args, train.shell(), {'google.com/tpu': tpu.chips_per_host}, [])
  container['ports'] = [{'containerPort': 8471}, {'containerPort': 8080}]
  pod_spec = {
    'hostNetwork': True,
    'dnsPolicy': 'ClusterFirstWithHostNet',
    'nodeSelector': node_selector,
    'containers': [container],
  }
  replicated = {
    'name': 'slice',
    'replicas': args.num_slices,
    'template': _job_template(tpu.hosts, pod_spec),
  }
  # One slice per node pool, so slices never share (or split) a pool.
  annotations = {'alpha.jobset.sigs.k8s.io/exclusive-topology': 'cloud.google.com/gke-nodepool'}
  return _jobset(args, replicated, annotations)


def gpu_manifest(args: argparse.Namespace, train: common.TrainCommand) -> dict[str, Any]:
  """JobSet with one Indexed Job of GPU pods; pod 0 is the JAX coordinator."""
  # Pod hostnames are <jobset>-<replicated job>-<job index>-<pod index>.<subdomain>.
  coordinator = f'{args.name}-workers-0-0.{args.name}:{COORDINATOR_PORT}'
  distributed = [
    '--coordinator_address',
    coordinator,
    '--num_processes',
    str(args.num_nodes),
  ]
  # Kubernetes numbers the pods of an Indexed Job 0..N-1 in JOB_COMPLETION_INDEX.
  script = train.shell(distributed) + ' --process_id "${JOB_COMPLETION_INDEX}"'
  node_selector = {'cloud.google.com/gke-accelerator': args.accelerator_type}
  if args.spot:
    node_selector['cloud.google.com/gke-spot'] = 'true'
  container = _container(args, script, {'nvidia.com/gpu': args.gpus_per_node}, [])
  container['ports'] = [{'containerPort': COORDINATOR_PORT}]
  pod_spec = {
    'nodeSelector': node_selector,
    'containers': [container],
    'tolerations': [{'key': 'nvidia.com/gpu', 'operator': 'Exists', 'effect': 'NoSchedule'}],
  }
  replicated = {
    'name': 'workers',
    'replicas': 1,
    'template': _job_template(args.num_nodes, pod_spec),
  }
  # The headless service gives pod 0 the DNS name used as coordinator.
  return _jobset(args, replicated, {}, {'network': {'enableDNSHostnames': True}})


def manifest(args: argparse.Namespace, train: common.TrainCommand) -> dict[str, Any]:
  if args.accelerator_type.startswith('nvidia-'):
    return gpu_manifest(args, train)
  return tpu_manifest(args, train)


def xpk_command(args: argparse.Namespace, train: common.TrainCommand) -> list[str]:
  """`xpk workload create` running the same training command on TPU slices.

  Spot capacity is a property of the XPK cluster's node pools
  (`xpk cluster create --spot`), so it is not a flag here.
  """
  command = [
    'xpk',
    'workload',
    'create',
    f'--cluster={args.cluster}',
    f'--workload={args.name}',
    f'--tpu-type={args.accelerator_type}',
    f'--num-slices={args.num_slices}',
    f'--docker-image={args.image}',
    f'--command={train.shell()}',
    f'--max-restarts={args.max_restarts}',
  ]
  if args.project:
    command.append(f'--project={args.project}')
  if args.zone:
    command.append(f'--zone={args.zone}')
  return command


def main(argv: Sequence[str] | None = None) -> int:
  parser = build_parser()
  args, train = common.parse_args(parser, argv)
  if not common.is_shared_path(args.workdir):
    parser.error(
      '--workdir must be shared storage (gs://...) on GKE: pods have no '
      'common disk and restart on new nodes.'
    )
  executor = common.Executor(dry_run=args.dry_run)
  if args.mode == 'xpk':
    if not args.cluster:
      parser.error('--mode=xpk needs --cluster.')
    if args.accelerator_type.startswith('nvidia-'):
      parser.error('--mode=xpk here covers TPU slices; use --mode=jobset for GPUs.')
    executor.note('XPK builds the JobSet itself')
    executor.run(xpk_command(args, train))
    return 0
  try:
    document = yaml.safe_dump(manifest(args, train), sort_keys=False, width=2**16)
  except ValueError as e:
    parser.error(str(e))
  if args.output:
    common.Executor(dry_run=False).show_file(args.output, document)
  if args.cluster:
    location = [f'--zone={args.zone}'] if args.zone else []
    project = [f'--project={args.project}'] if args.project else []
    executor.run(
      [
        'gcloud',
        'container',
        'clusters',
        'get-credentials',
        args.cluster,
        *location,
        *project,
      ]
    )
  executor.note(
    f'apply JobSet {args.name}; follow with: kubectl logs -f -n '
    f'{args.namespace} -l jobset.sigs.k8s.io/jobset-name={args.name}'
  )
  executor.run(['kubectl', 'apply', '-f', '-'], stdin_text=document)
  return 0


if __name__ == '__main__':
  sys.exit(main())
