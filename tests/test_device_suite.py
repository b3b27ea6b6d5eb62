"""The GPU device suite's dry run on CPU, so that the prepared H200 run cannot rot."""

import importlib.util
import json
import os
import subprocess
import sys

import pytest

from tests.helpers import REPO

SECTIONS = (
  'env',
  'attention',
  'sharding',
  'transformer_train',
  'decode',
  'tokenizer_speed',
  'tokenizer_train',
)


def _strict_json(path):
  def no_constants(name):
    raise ValueError(f'{path} holds {name}, which is not JSON')

  return json.loads(path.read_text(), parse_constant=no_constants)


def _load_suite_module():
  spec = importlib.util.spec_from_file_location(
    'device_suite', REPO / 'benchmarks' / 'device_suite.py'
  )
  module = importlib.util.module_from_spec(spec)
  sys.modules['device_suite'] = module  # Its dataclasses look their module up.
  spec.loader.exec_module(module)
  return module


def test_dry_run_writes_every_section(tmp_path):
  env = dict(os.environ, PYTHON=sys.executable)
  env.pop('OUT', None)
  process = subprocess.run(
    [str(REPO / 'benchmarks' / 'device_suite.sh'), '--dry_run', '--out', str(tmp_path)],
    env=env,
    capture_output=True,
    text=True,
    timeout=600,
  )
  assert process.returncode == 0, process.stderr[-3000:]
  result = _strict_json(tmp_path / 'device_suite.json')
  assert result['schema'] == 'videogen.device_suite/1'
  assert result['dry_run'] is True
  assert result['env']['platform'] == 'cpu'
  assert result['env']['bf16_matmul_flops'] > 0
  assert result['env']['copy_bytes_per_second'] > 0
  assert tuple(result['sections']) == SECTIONS
  for name, record in result['sections'].items():
    assert record['status'] == 'ok', (name, record)
    assert record['rows'], name
    for row in record['rows']:
      assert row['status'] in ('ok', 'skipped'), (name, row)
      if row['status'] == 'skipped':
        assert row['reason'], (name, row)

  attention = result['sections']['attention']['rows']
  assert {(r['backend'], r['status']) for r in attention} >= {
    ('xla', 'ok'),
    ('pallas', 'ok'),
    ('cudnn', 'skipped'),
  }
  pallas = next(r for r in attention if r['backend'] == 'pallas' and r['status'] == 'ok')
  assert pallas['error_vs_xla'] < 3e-2  # bf16 inputs.
  assert pallas['grad_error_vs_xla'] < 3e-2

  cpu_meshes = [r for r in result['sections']['sharding']['rows'] if r['status'] == 'ok']
  assert len(cpu_meshes) >= 2
  for row in cpu_meshes:
    assert row['max_relative_difference_vs_one_cpu'] < 1e-5, row

  train = {r['backend']: r for r in result['sections']['transformer_train']['rows']}
  assert train['xla']['status'] == 'ok'
  assert train['xla']['tokens_per_second'] > 0 and train['xla']['peak_bytes'] > 0
  assert train['xla']['mfu_vs_peak'] is None  # No published peak for a CPU.
  assert train['xla']['mfu_vs_bf16_matmul'] > 0
  assert train['cudnn']['status'] == train['pallas']['status'] == 'skipped'

  decode = result['sections']['decode']['rows'][0]
  assert decode['tokens_per_second'] > 0 and 0 < decode['fraction_of_bound']

  speed = result['sections']['tokenizer_speed']['rows'][0]
  assert speed['encode_frames_per_s'] > 0 and speed['train_clips_per_s'] > 0

  curve = result['sections']['tokenizer_train']['rows']
  assert len(curve) >= 2 and curve[-1]['step'] >= 1
  assert all(row['psnr'] > 0 for row in curve)

  table = (tmp_path / 'device_suite.md').read_text()
  for name in SECTIONS:
    assert f'## {name}: ok' in table
  assert '| variant | backend |' in table


def test_a_failing_case_or_section_is_recorded_and_the_rest_kept(tmp_path):
  suite_module = _load_suite_module()
  suite = suite_module.Suite(tmp_path, suite_module.DRY_RUN, budget_s=60.0, dry_run=True)

  def cases(record):
    suite.case(record, {'backend': 'a'}, lambda: {'value': 1.0})
    suite.case(record, {'backend': 'b'}, lambda: 1 / 0)
    suite.case(record, {'backend': 'c'}, lambda: {'value': 3.0}, skip='needs a GPU')

  def broken(record):
    raise RuntimeError('out of memory\nsecond line')

  suite.section('cases', cases)
  suite.section('broken', broken)
  result = _strict_json(tmp_path / 'device_suite.json')
  rows = result['sections']['cases']['rows']
  assert [r['status'] for r in rows] == ['ok', 'error', 'skipped']
  assert rows[0]['value'] == 1.0
  assert rows[1]['error'].startswith('ZeroDivisionError')
  assert rows[2]['reason'] == 'needs a GPU'
  assert result['sections']['cases']['status'] == 'ok'
  assert result['sections']['broken'] == {
    'status': 'error',
    'seconds': pytest.approx(0.0, abs=1.0),
    'rows': [],
    'notes': '',
    'error': 'RuntimeError: out of memory',
  }
  assert '## broken: error' in (tmp_path / 'device_suite.md').read_text()


def test_spent_budget_skips_cases_but_a_dry_run_runs_one_per_section(tmp_path):
  suite_module = _load_suite_module()

  def two_cases(suite):
    def cases(record):
      suite.case(record, {'n': 1}, lambda: {'value': 1})
      suite.case(record, {'n': 2}, lambda: {'value': 2})

    return cases

  spent = {'n': 1, 'status': 'skipped', 'reason': 'time budget spent'}
  suite = suite_module.Suite(tmp_path / 'real', suite_module.DRY_RUN, budget_s=0.0, dry_run=False)
  suite.section('late', two_cases(suite))
  rows = _strict_json(tmp_path / 'real' / 'device_suite.json')['sections']['late']['rows']
  assert rows == [spent, {**spent, 'n': 2}]
  # A dry run checks that each section works: on a host that spent the budget, a section
  # still runs its cases until one of them ran.
  suite = suite_module.Suite(tmp_path / 'dry', suite_module.DRY_RUN, budget_s=0.0, dry_run=True)
  suite.section('late', two_cases(suite))
  rows = _strict_json(tmp_path / 'dry' / 'device_suite.json')['sections']['late']['rows']
  assert [(r['n'], r['status']) for r in rows] == [(1, 'ok'), (2, 'skipped')]
