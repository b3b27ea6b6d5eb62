"""The device suite's bookkeeping: sections and cases under a time budget, JSON and markdown.

`benchmarks/device_suite.py` documents the JSON schema; this module keeps it
current on disk after every case, so a run cut short keeps what it measured.
"""

from __future__ import annotations

import json
import pathlib
import sys
import time
import traceback

import jax

SCHEMA = 'videogen.device_suite/1'


class Suite:
  """Runs sections against a time budget and keeps the JSON/markdown current."""

  def __init__(self, out: pathlib.Path, sizes, budget_s: float, dry_run: bool):
    self.out, self.sizes, self.dry_run = out, sizes, dry_run
    self.start = time.monotonic()
    self.end = self.start + budget_s
    self.on_gpu = jax.default_backend() == 'gpu'
    self.result = {
      'schema': SCHEMA,
      'dry_run': dry_run,
      'command': ' '.join(['benchmarks/device_suite.sh', *sys.argv[1:]]),
      'budget_s': budget_s,
      'wall_s': 0.0,
      'env': {},
      'sections': {},
    }
    self.section_end = self.end

  def left(self) -> float:
    return min(self.section_end, self.end) - time.monotonic()

  def write(self) -> None:
    self.result['wall_s'] = round(time.monotonic() - self.start, 1)
    self.out.mkdir(parents=True, exist_ok=True)
    (self.out / 'device_suite.json').write_text(json.dumps(self.result, indent=2) + '\n')
    (self.out / 'device_suite.md').write_text(markdown(self.result))

  def section(self, name: str, fn, share: float | None = None, notes: str = '') -> None:
    record = {'status': 'ok', 'seconds': 0.0, 'rows': [], 'notes': notes}
    self.result['sections'][name] = record
    started = time.monotonic()
    self.section_end = started + share if share is not None else self.end
    print(f'== {name} ({self.left():.0f} s left for it)', flush=True)
    try:
      fn(record)
    except Exception as error:  # noqa: BLE001 - recorded, the other sections go on.
      record['status'] = 'error'
      record['error'] = _describe(error)
      traceback.print_exc()
    if record['status'] == 'ok' and record['rows']:
      if all(row['status'] != 'ok' for row in record['rows']):
        record['status'] = (
          'skipped' if all(r['status'] == 'skipped' for r in record['rows']) else 'error'
        )
    record['seconds'] = round(time.monotonic() - started, 1)
    self.section_end = self.end
    self.write()

  def case(self, record: dict, fields: dict, fn, skip: str = '', force: bool = False) -> None:
    """Runs `fn() -> dict` as one row of `record`; failures and skips become rows too.

    A case starts only while the section's share of the budget lasts, unless `force`,
    or in a dry run until the section has a row that ran: a dry run checks that every
    section works, and a loaded host can spend its whole budget before the last one.
    """
    row = dict(fields)
    if self.dry_run and not any(r['status'] == 'ok' for r in record['rows']):
      force = True
    if skip:
      row.update(status='skipped', reason=skip)
    elif self.left() <= 0 and not force:
      row.update(status='skipped', reason='time budget spent')
    else:
      started = time.monotonic()
      try:
        row.update(fn())
        row['status'] = 'ok'
      except Exception as error:  # noqa: BLE001 - one failing case loses no other figure.
        row.update(status='error', error=_describe(error))
        traceback.print_exc()
      row['case_seconds'] = round(time.monotonic() - started, 1)
    print(f'  {row}', flush=True)
    record['rows'].append(row)
    self.write()


def _describe(error: BaseException) -> str:
  return f'{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ""}'[:500]


def markdown(result: dict) -> str:
  """The sections as markdown tables (every row's keys, in first-seen order)."""
  env = result.get('env', {})
  lines = [
    f'# videogen device suite ({"dry run, " if result["dry_run"] else ""}'
    f'{env.get("device_kind", "?")}, jax {env.get("jax_version", "?")})',
    '',
    f'Command: `{result["command"]}`; wall {result["wall_s"]} s of a {result["budget_s"]} s budget.',
    f'Peak reference: {env.get("chip_peak_bf16_flops")} FLOP/s ({env.get("chip_peak_source")}).',
  ]
  for name, record in result['sections'].items():
    lines += ['', f'## {name}: {record["status"]} ({record["seconds"]} s)', '']
    if record.get('notes'):
      lines += [record['notes'], '']
    if record.get('error'):
      lines += [f'Error: `{record["error"]}`', '']
    extras = {
      k: v for k, v in record.items() if k not in ('status', 'seconds', 'rows', 'notes', 'error')
    }
    if extras:
      lines += [', '.join(f'{k}: {_cell(v)}' for k, v in extras.items()), '']
    columns = []
    for row in record['rows']:
      columns += [key for key in row if key not in columns]
    if columns:
      lines.append('| ' + ' | '.join(columns) + ' |')
      lines.append('|' + '---|' * len(columns))
      for row in record['rows']:
        lines.append('| ' + ' | '.join(_cell(row.get(key)) for key in columns) + ' |')
  return '\n'.join(lines) + '\n'


def _cell(value) -> str:
  if value is None:
    return ''
  if isinstance(value, float):
    return f'{value:.4g}'
  if isinstance(value, list):
    return ', '.join(_cell(v) for v in value)
  return str(value).replace('|', '/').replace('\n', ' ')
