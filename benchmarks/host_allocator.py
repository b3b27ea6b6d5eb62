"""Training speed on the CPU under each C allocator `videogen` can start with.

  python benchmarks/host_allocator.py --quickstart runs/qs [--configs tokenizer,transformer,multitask]
      [--allocators glibc,kept,kept_one_arena,tcmalloc] [--out DIR]

Each case is one `videogen train` process, run one after another on an otherwise
idle machine (the figures are only as good as that):

  tokenizer    `configs/shapes/tokenizer.py:size=tiny`, 600 steps;
  transformer  `configs/shapes/transformer.py:size=tiny`, 300 steps;
  multitask    `configs/shapes/multitask.py`, 100 steps, warm-started;

all on the quickstart run's data, tokenizer and transformer (`--quickstart`, a
`videogen quickstart --workdir` directory). The allocators:

  glibc           glibc's own defaults (`GLIBC_TUNABLES=` set empty, so the command
                  keeps them);
  kept            glibc with `host_memory.GLIBC_SETTINGS` (where an accelerator may run);
  kept_one_arena  glibc with `host_memory.CPU_ONLY_GLIBC_SETTINGS` (a CPU-only machine
                  without tcmalloc: `videogen`'s choice there);
  tcmalloc        `LD_PRELOAD` of the system's tcmalloc (`videogen`'s choice where it
                  is installed); skipped, and recorded so, where it is not.

Per case: steps/s (the median of the logged intervals after the first, which holds
the compilation), wall-clock seconds of the whole command, kernel (system) CPU
seconds, page faults and peak resident memory of the process (`os.wait4`). The
reference is `glibc`, measured in the same run: each figure is also given as a ratio
to it. Writes `host_allocator.json` and `host_allocator.md` to `--out` (default
`benchmarks/results/`) and prints the table.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import statistics
import subprocess
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from videogen.parallel import host_memory  # noqa: E402

CONFIGS = {
  'tokenizer': (['--config', 'configs/shapes/tokenizer.py:size=tiny'], 600, 100),
  'transformer': (['--config', 'configs/shapes/transformer.py:size=tiny'], 300, 50),
  'multitask': (['--config', 'configs/shapes/multitask.py'], 100, 25),
}
ALLOCATORS = ('glibc', 'kept', 'kept_one_arena', 'tcmalloc')


def allocator_env(name: str) -> dict[str, str] | None:
  """The environment additions of allocator `name`, or None where it is missing."""
  if name == 'glibc':
    return {'GLIBC_TUNABLES': ''}
  if name == 'kept':
    return dict(host_memory.GLIBC_SETTINGS)
  if name == 'kept_one_arena':
    return dict(host_memory.CPU_ONLY_GLIBC_SETTINGS)
  library = host_memory.find_tcmalloc()
  return {'LD_PRELOAD': library} if library else None


def config_args(name: str, quickstart: pathlib.Path) -> tuple[list[str], int]:
  args, steps, log_every = CONFIGS[name]
  args = [*args, f'--config.num_train_steps={steps}', f'--config.log_every_steps={log_every}']
  args.append(f'--config.data.data_dir={quickstart / "data"}')
  if name != 'tokenizer':
    args.append(f'--config.tokenizer.checkpoint={quickstart / "tokenizer"}')
  if name == 'multitask':
    args.append(f'--config.init_from={quickstart / "transformer"}')
  return args, steps


def run_case(config: str, allocator: str, quickstart: pathlib.Path, tmp: pathlib.Path) -> dict:
  """One `videogen train` process under `allocator`; its speed and memory figures."""
  extra = allocator_env(allocator)
  if extra is None:
    return {
      'config': config,
      'allocator': allocator,
      'status': 'skipped',
      'reason': 'not installed',
    }
  args, steps = config_args(config, quickstart)
  workdir = tmp / f'{config}_{allocator}'
  clean = {k: v for k, v in os.environ.items() if not host_memory.chooses_allocator({k: v})}
  env = {**clean, **extra}
  command = [sys.executable, '-m', 'videogen', 'train', *args, f'--workdir={workdir}']
  log = tmp / f'{config}_{allocator}.log'
  start = time.perf_counter()
  with log.open('w') as stderr:
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=stderr, stderr=stderr)
    # os.wait4, not process.wait: the child's own resource use (page faults, peak memory).
    _, status, usage = os.wait4(process.pid, 0)
  wall = time.perf_counter() - start
  exit_code = os.waitstatus_to_exitcode(status)
  if exit_code != 0:
    last = log.read_text().strip().splitlines()[-1:] or [f'exit {exit_code}']
    return {'config': config, 'allocator': allocator, 'status': 'error', 'error': last[0]}
  logged = [json.loads(line) for line in (workdir / 'metrics.jsonl').read_text().splitlines()]
  rates = [row['steps_per_s'] for row in logged if 'steps_per_s' in row][1:]
  return {
    'config': config,
    'allocator': allocator,
    'status': 'ok',
    'env': extra,
    'steps': steps,
    'steps_per_s': statistics.median(rates),
    'wall_s': wall,
    'system_cpu_s': usage.ru_stime,
    'user_cpu_s': usage.ru_utime,
    'page_faults': usage.ru_minflt + usage.ru_majflt,
    'peak_rss_gib': usage.ru_maxrss / 2**20,
  }


def with_ratios(cases: list[dict]) -> list[dict]:
  """Adds `vs_glibc` ratios against the same config's `glibc` case."""
  reference = {c['config']: c for c in cases if c['allocator'] == 'glibc' and c['status'] == 'ok'}
  for case in cases:
    base = reference.get(case['config'])
    if case['status'] == 'ok' and base:
      case['vs_glibc'] = {
        'steps_per_s': case['steps_per_s'] / base['steps_per_s'],
        'wall_s': case['wall_s'] / base['wall_s'],
        'page_faults': case['page_faults'] / base['page_faults'],
        'peak_rss_gib': case['peak_rss_gib'] / base['peak_rss_gib'],
      }
  return cases


def markdown(cases: list[dict], machine: dict) -> str:
  lines = [
    f'Host allocator, `python benchmarks/host_allocator.py`: {machine["cpus"]} CPUs, '
    f"{machine['platform']}, {machine['glibc']}. Ratios are against glibc's defaults "
    'in the same run.',
    '',
    '| config | allocator | steps/s (× glibc) | wall s | kernel CPU s | page faults (× glibc) '
    '| peak RSS GiB (× glibc) |',
    '|---|---|---:|---:|---:|---:|---:|',
  ]
  for c in cases:
    if c['status'] != 'ok':
      lines.append(
        f'| {c["config"]} | {c["allocator"]} | {c["status"]}: '
        f'{c.get("reason") or c.get("error")} | | | | |'
      )
      continue
    r = c.get('vs_glibc', {})
    lines.append(
      f'| {c["config"]} | {c["allocator"]} | {c["steps_per_s"]:.2f} ({r.get("steps_per_s", 1):.2f}) '
      f'| {c["wall_s"]:.0f} | {c["system_cpu_s"]:.1f} | {c["page_faults"] / 1e6:.2f} M '
      f'({r.get("page_faults", 1):.2f}) | {c["peak_rss_gib"]:.2f} ({r.get("peak_rss_gib", 1):.2f}) |'
    )
  return '\n'.join(lines) + '\n'


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--quickstart', type=pathlib.Path, required=True)
  parser.add_argument('--configs', default=','.join(CONFIGS))
  parser.add_argument('--allocators', default=','.join(ALLOCATORS))
  parser.add_argument('--out', type=pathlib.Path, default=REPO / 'benchmarks' / 'results')
  args = parser.parse_args()
  configs = [c for c in args.configs.split(',') if c]
  allocators = [a for a in args.allocators.split(',') if a]
  unknown = sorted(set(configs) - set(CONFIGS)) + sorted(set(allocators) - set(ALLOCATORS))
  if unknown:
    parser.error(
      f'unknown {unknown}; configs {",".join(CONFIGS)}, allocators {",".join(ALLOCATORS)}'
    )
  if not host_memory.is_glibc():
    parser.error('the allocators compared here are glibc settings; this C library is not glibc')
  machine = {
    'platform': platform.platform(),
    'cpus': os.cpu_count(),
    'glibc': os.confstr('CS_GNU_LIBC_VERSION'),
    'load_average': os.getloadavg(),
  }
  cases = []
  with tempfile.TemporaryDirectory(prefix='host_allocator_') as tmp:
    for config in configs:
      for allocator in allocators:
        case = run_case(config, allocator, args.quickstart.resolve(), pathlib.Path(tmp))
        print(json.dumps(case), flush=True)
        cases.append(case)
  cases = with_ratios(cases)
  args.out.mkdir(parents=True, exist_ok=True)
  (args.out / 'host_allocator.json').write_text(
    json.dumps({'machine': machine, 'cases': cases}, indent=2) + '\n'
  )
  table = markdown(cases, machine)
  (args.out / 'host_allocator.md').write_text(table)
  print(table)


if __name__ == '__main__':
  main()
