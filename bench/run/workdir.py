"""A run's workdir: whether a rerun may continue it, and starting it over.

WORKDIR/run.json records the suite's name and every case's config. Rerunning
the same command continues the run: cases whose records are in report.json
with status ok or diverged are kept as they are, failed ones run again, and a
training case resumes from its latest checkpoint. A rerun with another config
is refused (its results would mix with the old ones) unless `restart` deletes
the old outputs first. Only the files and folders a run writes (OUTPUTS) are
ever deleted: a workdir may hold other things of the user's, and the temporary
files of atomic writes a killed run left there (bench/core/fileio.py `sweep`).
"""

import json
import os
import shutil
import tempfile

from bench.core import fileio
from bench.core import parallel
from bench.core.errors import UserError, first_line
from bench.core.fileio import atomic_write_text
from bench.results import schema as report_lib

MANIFEST = 'run.json'
OUTPUTS = (MANIFEST, 'report.json', 'report.md', 'report.csv', 'training_curves.png',
           'scaling.png', 'proxies.png', 'roofline.png', 'profile.png', 'checkpoints', 'weights',
           'metrics', 'feature_cache', 'profiles')
KEPT_STATUSES = ('ok', 'diverged')
_FIX = ('rerun with the same config to continue it, pass --restart to delete its outputs and '
        'start over, or use another --workdir')


def prepare(workdir):
  """Creates `workdir` if needed and proves it writable, or raises UserError."""
  try:
    os.makedirs(workdir, exist_ok=True)
    with tempfile.TemporaryFile(dir=workdir):
      pass
  except OSError as e:
    raise UserError(f'cannot write to workdir {workdir!r} ({e.strerror or e}); pass '
                    '--workdir=DIR with a directory you can create and write') from None


def manifest(suite):
  """What run.json records of `suite` (configs as JSON reads them back)."""
  return {'suite': suite.name,
          'cases': {name: json.loads(json.dumps(case.to_dict())) for name, case in suite.cases}}


def _difference(old, new):
  """The first difference between two manifests, in words."""
  if old['suite'] != new['suite']:
    return f'suite {old["suite"]!r} there, {new["suite"]!r} now'
  if list(old['cases']) != list(new['cases']):
    return f'cases {", ".join(old["cases"])} there, {", ".join(new["cases"])} now'
  for name, config in new['cases'].items():
    before = old['cases'][name]
    for field in sorted(set(config) | set(before)):
      if config.get(field) != before.get(field):
        return f'case {name!r}: {field} was {before.get(field)!r}, now {config.get(field)!r}'
  return 'none'


def _manifest(path):
  """The run.json at `path`, or a UserError naming it and the fix."""
  try:
    with open(path, encoding='utf-8') as f:
      old = json.load(f)
  except (OSError, ValueError) as e:  # UnicodeDecodeError is a ValueError
    old = first_line(e)
  if not (isinstance(old, dict) and isinstance(old.get('cases'), dict) and 'suite' in old):
    raise UserError(f'{path} is damaged ({old if isinstance(old, str) else "not a run record"}), '
                    'so whether its run had this config is unknown; pass --restart to delete '
                    'that run\'s outputs and start over, or use another --workdir')
  return old


def _sweep(workdir):
  """The stale temporary files of atomic writes in `workdir` and the folders a run
  writes, removed."""
  folders = [workdir] + [root for name in OUTPUTS if os.path.isdir(os.path.join(workdir, name))
                         for root, _, _ in os.walk(os.path.join(workdir, name))]
  for folder in folders:
    fileio.sweep(folder)


def resume(workdir, run, restart):
  """The records to keep from an earlier run of manifest `run` in `workdir`, by case
  name (after writing run.json). UserError for an earlier run of another config,
  unless `restart`, which deletes every earlier output first.

  Several processes share the workdir: each decides the same from the same files,
  and only the first one deletes or writes."""
  found = [name for name in OUTPUTS if os.path.lexists(os.path.join(workdir, name))]
  if restart:
    for name in found if parallel.is_primary() else ():
      path = os.path.join(workdir, name)
      if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
      else:
        os.unlink(path)
    parallel.barrier('restart')
    found = []
  if parallel.is_primary():  # before any process writes: no write of this run is under way
    _sweep(workdir)
  path = os.path.join(workdir, MANIFEST)
  kept = {}
  if os.path.exists(path):
    old = _manifest(path)
    if old != run:
      raise UserError(f'workdir {workdir} holds a run of another config ({_difference(old, run)}); '
                      f'{_FIX}')
    report_path = os.path.join(workdir, 'report.json')
    if os.path.exists(report_path):
      try:
        report = report_lib.load(report_path)
      except ValueError as e:
        raise UserError(f'{report_path} cannot be continued ({e}); {_FIX}') from None
      kept = {case['name']: case for case in report['cases'] if case['status'] in KEPT_STATUSES}
  elif found:
    raise UserError(f'workdir {workdir} holds outputs of a run without {MANIFEST} '
                    f'({", ".join(found)}), so whether it had this config is unknown; {_FIX}')
  parallel.barrier('read the workdir')  # before the first process rewrites it
  if parallel.is_primary():
    atomic_write_text(path, json.dumps(run, indent=1) + '\n')
  return kept
