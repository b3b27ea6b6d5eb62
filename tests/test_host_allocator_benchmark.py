"""benchmarks/host_allocator.py: its cases' environments, ratios and table (no timing)."""

import importlib.util
import pathlib

from videogen.parallel import host_memory

_PATH = pathlib.Path(__file__).resolve().parent.parent / 'benchmarks' / 'host_allocator.py'


def _load():
  spec = importlib.util.spec_from_file_location('host_allocator', _PATH)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def test_each_allocator_is_chosen_by_the_environment_the_command_keeps():
  bench = _load()
  for name in ('glibc', 'kept', 'kept_one_arena'):
    env = bench.allocator_env(name)
    # The command must keep these settings, not restart with its own.
    assert host_memory.chooses_allocator(env)
  assert bench.allocator_env('kept_one_arena')['MALLOC_ARENA_MAX'] == '1'
  tcmalloc = bench.allocator_env('tcmalloc')
  assert tcmalloc == ({'LD_PRELOAD': host_memory.find_tcmalloc()} if tcmalloc else None)


def test_ratios_are_against_the_same_configs_glibc_case_and_skips_are_listed():
  bench = _load()
  figures = {'steps_per_s': 2.0, 'wall_s': 100.0, 'page_faults': 4e6, 'peak_rss_gib': 2.0}
  cases = [
    {
      'config': 'transformer',
      'allocator': 'glibc',
      'status': 'ok',
      'system_cpu_s': 70.0,
      **figures,
    },
    {
      'config': 'transformer',
      'allocator': 'tcmalloc',
      'status': 'ok',
      'system_cpu_s': 3.0,
      **{**figures, 'steps_per_s': 3.0, 'page_faults': 1e6},
    },
    {
      'config': 'multitask',
      'allocator': 'tcmalloc',
      'status': 'skipped',
      'reason': 'not installed',
    },
  ]
  cases = bench.with_ratios(cases)
  assert cases[1]['vs_glibc']['steps_per_s'] == 1.5
  assert cases[1]['vs_glibc']['page_faults'] == 0.25
  assert 'vs_glibc' not in cases[2]
  table = bench.markdown(cases, {'cpus': 2, 'platform': 'Linux', 'glibc': 'glibc 2.36'})
  assert (
    '| transformer | tcmalloc | 3.00 (1.50) | 100 | 3.0 | 1.00 M (0.25) | 2.00 (1.00) |' in table
  )
  assert '| multitask | tcmalloc | skipped: not installed |' in table
