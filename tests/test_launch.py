"""The launchers print (--dry_run) or run the right gcloud/kubectl/sbatch commands."""

import os
import pathlib
import shlex
import subprocess
import sys
import textwrap

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[1]
CONFIG = 'configs/shapes/transformer.py'
WORKDIR = 'gs://my-bucket/videogen/run1'
TRAIN = f'videogen train --config {CONFIG} --workdir {WORKDIR}'


def _launch(module, *args, env=None, check=True):
  result = subprocess.run(
    [sys.executable, '-m', f'launch.{module}', *args],
    cwd=ROOT,
    env=env,
    capture_output=True,
    text=True,
  )
  if check:
    assert result.returncode == 0, result.stderr
  return result


def _commands(stdout):
  """Printed command lines (not comments, not file bodies) as argv lists."""
  return [
    shlex.split(line)
    for line in stdout.splitlines()
    if line.startswith(('gcloud ', 'kubectl ', 'sbatch ', 'tar ', 'mkdir ', 'xpk '))
  ]


def _tpu_args(*extra):
  return [
    '--name',
    'vg-test',
    '--project',
    'my-proj',
    '--zone',
    'us-central2-b',
    '--accelerator_type',
    'v4-32',
    '--config',
    CONFIG,
    '--workdir',
    WORKDIR,
    '--repo',
    'https://github.com/me/videogen.git',
    '--branch',
    'dev',
    *extra,
  ]


def _ssh_command(argv):
  [command] = [a[len('--command=') :] for a in argv if a.startswith('--command=')]
  return command


def test_tpu_vm_on_demand_lifecycle():
  out = _launch(
    'tpu_vm',
    *_tpu_args('--action=create,install,train,logs,delete', '--dry_run', '--config.batch_size=64'),
  ).stdout
  commands = _commands(out)
  create, install, train, logs, delete = commands
  assert create[:6] == ['gcloud', 'compute', 'tpus', 'tpu-vm', 'create', 'vg-test']
  assert {
    '--accelerator-type=v4-32',
    '--version=tpu-ubuntu2204-base',
    '--project=my-proj',
    '--zone=us-central2-b',
  } <= set(create)
  assert '--spot' not in create
  for ssh in (install, train):
    assert ssh[:6] == ['gcloud', 'compute', 'tpus', 'tpu-vm', 'ssh', 'vg-test']
    assert '--worker=all' in ssh
  assert 'git clone --depth 1 --branch dev https://github.com/me/videogen.git' in (
    _ssh_command(install)
  )
  assert 'jax[tpu]' in _ssh_command(install)
  assert f'{TRAIN} --config.batch_size=64' in _ssh_command(train)
  assert '--worker=0' in logs and 'tail' in _ssh_command(logs)
  assert delete[:6] == ['gcloud', 'compute', 'tpus', 'tpu-vm', 'delete', 'vg-test']


def test_tpu_vm_spot_multislice_uses_queued_resources():
  out = _launch(
    'tpu_vm',
    *_tpu_args('--spot', '--num_slices=2', '--action=create,train,delete', '--dry_run'),
  ).stdout
  create, describe, train, delete = _commands(out)
  assert create[:6] == [
    'gcloud',
    'compute',
    'tpus',
    'queued-resources',
    'create',
    'vg-test',
  ]
  assert {
    '--spot',
    '--node-count=2',
    '--node-prefix=vg-test',
    '--runtime-version=tpu-ubuntu2204-base',
  } <= set(create)
  assert describe[4] == 'describe'
  assert train[3:5] == ['queued-resources', 'ssh']
  assert {'--node=all', '--worker=all'} <= set(train)
  assert TRAIN in _ssh_command(train)
  assert delete[3:5] == ['queued-resources', 'delete'] and '--force' in delete


def test_tpu_vm_copied_tree_is_sent_to_every_slice():
  args = _tpu_args('--num_slices=2', '--action=install', '--dry_run')
  args[args.index('--repo') : args.index('--repo') + 2] = ['--source_dir', '.']
  commands = _commands(_launch('tpu_vm', *args).stdout)
  assert commands[0][0] == 'tar' and '--exclude=.venv' in commands[0]
  scp_targets = [c[6] for c in commands if c[4] == 'scp']
  assert scp_targets == [
    'vg-test-0:~/videogen-src.tar.gz',
    'vg-test-1:~/videogen-src.tar.gz',
  ]


def test_tpu_vm_rejects_malformed_override():
  result = _launch('tpu_vm', *_tpu_args('--dry_run', '--config.batch_size', '64'), check=False)
  assert result.returncode != 0
  assert 'key=value' in result.stderr


def _manifest(stdout):
  body = stdout.split('kubectl apply -f -\n', 1)[1].split('# (end of stdin)')[0]
  return yaml.safe_load(body)


def test_gke_tpu_jobset():
  out = _launch(
    'gke',
    '--name',
    'vg-gke',
    '--cluster',
    'c1',
    '--project',
    'my-proj',
    '--zone',
    'us-west4-a',
    '--accelerator_type',
    'v5litepod-16',
    '--topology',
    '4x4',
    '--num_slices',
    '2',
    '--spot',
    '--image',
    'img:1',
    '--config',
    CONFIG,
    '--workdir',
    WORKDIR,
    '--dry_run',
    '--config.batch_size=32',
  ).stdout
  commands = _commands(out)
  assert commands[0][:4] == ['gcloud', 'container', 'clusters', 'get-credentials']
  assert commands[1] == ['kubectl', 'apply', '-f', '-']
  jobset = _manifest(out)
  assert jobset['kind'] == 'JobSet' and jobset['metadata']['name'] == 'vg-gke'
  [replicated] = jobset['spec']['replicatedJobs']
  assert replicated['replicas'] == 2
  job = replicated['template']['spec']
  assert job['parallelism'] == job['completions'] == 4  # 16 chips, 4 per host.
  pod = job['template']['spec']
  assert pod['nodeSelector'] == {
    'cloud.google.com/gke-tpu-accelerator': 'tpu-v5-lite-podslice',
    'cloud.google.com/gke-tpu-topology': '4x4',
    'cloud.google.com/gke-spot': 'true',
  }
  [container] = pod['containers']
  assert container['image'] == 'img:1'
  assert container['resources']['limits'] == {'google.com/tpu': 4}
  assert container['command'][:2] == ['bash', '-c']
  assert container['command'][2] == f'{TRAIN} --config.batch_size=32'


def test_gke_gpu_jobset_passes_coordinator():
  out = _launch(
    'gke',
    '--name',
    'vg-gpu',
    '--accelerator_type',
    'nvidia-h100-80gb',
    '--num_nodes',
    '4',
    '--gpus_per_node',
    '8',
    '--image',
    'img:1',
    '--config',
    CONFIG,
    '--workdir',
    WORKDIR,
    '--dry_run',
  ).stdout
  jobset = _manifest(out)
  job = jobset['spec']['replicatedJobs'][0]['template']['spec']
  assert job['parallelism'] == 4 and job['completionMode'] == 'Indexed'
  container = job['template']['spec']['containers'][0]
  assert container['resources']['limits'] == {'nvidia.com/gpu': 8}
  script = container['command'][2]
  assert script.startswith(TRAIN)
  assert '--coordinator_address vg-gpu-workers-0-0.vg-gpu:' in script
  assert '--num_processes 4' in script
  assert '--process_id "${JOB_COMPLETION_INDEX}"' in script


def test_gke_xpk_and_bad_inputs():
  base = ['--name', 'vg', '--image', 'img:1', '--config', CONFIG, '--dry_run']
  out = _launch(
    'gke',
    *base,
    '--mode',
    'xpk',
    '--cluster',
    'c1',
    '--accelerator_type',
    'v5p-16',
    '--num_slices',
    '2',
    '--workdir',
    WORKDIR,
  ).stdout
  [xpk] = _commands(out)
  assert xpk[:3] == ['xpk', 'workload', 'create']
  assert {'--tpu-type=v5p-16', '--num-slices=2', '--docker-image=img:1'} <= set(xpk)
  assert f'--command={TRAIN}' in xpk
  wrong_topology = _launch(
    'gke',
    *base,
    '--accelerator_type',
    'v4-16',
    '--topology',
    '2x2x4',
    '--workdir',
    WORKDIR,
    check=False,
  )
  assert wrong_topology.returncode != 0 and 'has 8 chips' in wrong_topology.stderr
  local = _launch(
    'gke',
    *base,
    '--accelerator_type',
    'v4-16',
    '--topology',
    '2x2x2',
    '--workdir',
    '/tmp/run',
    check=False,
  )
  assert local.returncode != 0 and 'shared storage' in local.stderr


def test_slurm_script():
  out = _launch(
    'slurm',
    '--name',
    'vg-slurm',
    '--nodes',
    '2',
    '--gpus_per_node',
    '4',
    '--partition',
    'gpu',
    '--venv',
    '/shared/venv',
    '--source_dir',
    '/shared/videogen',
    '--config',
    CONFIG,
    '--workdir',
    WORKDIR,
    '--dry_run',
    '--config.batch_size=16',
  ).stdout
  script = out.split('----\n', 1)[1].split('# ---- end')[0]
  assert script.startswith('#!/bin/bash\n')
  for directive in (
    '--nodes=2',
    '--ntasks-per-node=4',
    '--gpus-per-node=4',
    '--partition=gpu',
    '--job-name=vg-slurm',
  ):
    assert f'#SBATCH {directive}\n' in script
  assert 'source /shared/venv/bin/activate' in script
  assert f'srun --kill-on-bad-exit=1 {TRAIN} --config.batch_size=16\n' in script
  assert _commands(out)[-1] == ['sbatch', 'slurm_logs/vg-slurm.sbatch']


def test_commands_really_run_without_dry_run(tmp_path):
  """Without --dry_run the same commands go to subprocess (fake binaries here)."""
  bin_dir = tmp_path / 'bin'
  bin_dir.mkdir()
  log = tmp_path / 'calls.log'
  fake = textwrap.dedent(f"""\
      #!/bin/sh
      echo "$(basename "$0") $*" >> {log}
      case "$*" in *describe*) echo ACTIVE;; esac
      case "$(basename "$0")" in kubectl) cat > {tmp_path}/stdin.yaml;; esac
      """)
  for name in ('gcloud', 'kubectl', 'sbatch'):
    (bin_dir / name).write_text(fake)
    (bin_dir / name).chmod(0o755)
  env = {**os.environ, 'PATH': f'{bin_dir}{os.pathsep}{os.environ["PATH"]}'}
  _launch('tpu_vm', *_tpu_args('--spot', '--action=create,train'), env=env)
  _launch(
    'gke',
    '--name',
    'vg',
    '--accelerator_type',
    'v4-8',
    '--topology',
    '2x2x1',
    '--image',
    'i',
    '--config',
    CONFIG,
    '--workdir',
    WORKDIR,
    env=env,
  )
  _launch(
    'slurm',
    '--name',
    'vg',
    '--log_dir',
    str(tmp_path / 'logs'),
    '--config',
    CONFIG,
    '--workdir',
    WORKDIR,
    env=env,
  )
  calls = log.read_text().splitlines()
  assert calls[0].startswith('gcloud compute tpus queued-resources create vg-test')
  assert calls[1].startswith('gcloud compute tpus queued-resources describe vg-test')
  assert calls[2].startswith('gcloud compute tpus queued-resources ssh vg-test')
  assert TRAIN in calls[2]
  assert calls[3] == 'kubectl apply -f -'
  assert yaml.safe_load((tmp_path / 'stdin.yaml').read_text())['kind'] == 'JobSet'
  assert calls[4] == f'sbatch {tmp_path}/logs/vg.sbatch'
  assert TRAIN in (tmp_path / 'logs' / 'vg.sbatch').read_text()


@pytest.mark.parametrize('module', ['tpu_vm', 'gke', 'slurm'])
def test_help(module):
  assert '--config.key=value' in _launch(module, '--help').stdout
