"""A report's three files: report.json, report.md and report.csv, each atomic."""

import csv
import io
import json
import os

from bench.core.fileio import atomic_write_text
from bench.results import markdown
from bench.results import schema


def write(workdir, report, sections=()):
  """Writes report.md (with `sections`, markdown lines, at its end), report.csv and,
  last, report.json: each complete or not at all."""
  schema.validate(report)
  # Render everything before touching the disk: a rendering error writes nothing.
  texts = {
      'report.md': markdown.to_markdown(report, sections),
      'report.csv': to_csv(report),
      # allow_nan=False: a NaN or inf would make the file invalid JSON for strict readers.
      'report.json': json.dumps(report, indent=1, allow_nan=False) + '\n',
  }
  for name, text in texts.items():
    atomic_write_text(os.path.join(workdir, name), text)


def _csv_columns():
  columns = [key for key in schema.CASE_SCALARS if key != 'config']
  columns[2:2] = ['model', 'batch_size', 'dtype']
  for block, keys in schema.CASE_BLOCKS.items():
    columns += [f'{block}.{key}' for key in keys
                if key not in ('samples', 'history', 'saves', 'device_peak_bytes_per_device',
                               *schema.PROFILE_ROWS, 'phases')]
  return columns


# The run's identity, first in every row: CSVs of many runs concatenated stay readable.
CSV_IDENTITY = ('suite', 'harness_version', 'git_commit', 'device_kind', 'jax_version')


def _identity(report):
  env = report['environment']
  return [report['suite']['name'], env['versions'].get('flax_bench'), env['git_commit'],
          env['device_kind'], env['versions'].get('jax')]


def _csv_value(value):
  """'' for null; a whole float (XLA's counts, bytes) as an integer."""
  if value is None:
    return ''
  if isinstance(value, float) and value.is_integer():
    return int(value)
  return value


def to_csv(report):
  out = io.StringIO()
  writer = csv.writer(out, lineterminator='\n')
  columns = _csv_columns()
  writer.writerow([*CSV_IDENTITY, *columns])
  identity = _identity(report)
  for case in report['cases']:
    row = list(identity)
    for column in columns:
      if '.' in column:
        block, key = column.split('.')
        value = case[block][key]
      elif column in case:
        value = case[column]
      else:
        value = case['config'].get(column)
      row.append(value)
    writer.writerow([_csv_value(value) for value in row])
  return out.getvalue()
