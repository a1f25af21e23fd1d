"""The kernel database (bench/results/kernel_store.py) and `flax-bench kernels`
(bench/kernels.py over bench/run/kernels.py and predict.py): what a measurement keeps, machines
apart, damaged and foreign files refused untouched, a disturbed session marked and
its kernels taken again, and a config's kernels measured end to end at tiny size."""

import csv
import io
import json
import os
import random
import re
import sqlite3

import pytest

import configs
from bench.core import machine
from bench.core.errors import UserError
from bench.measure import environment
from bench.measure import kernel_bench
from bench.measure import kernels as kernels_lib
from bench.results import history
from bench.results import kernel_store
from bench.run import predict
from tests.conftest import call_cli

_ENVIRONMENT = {'machine_id': 'a' * 32, 'cpu_model': 'test cpu', 'cpu_signature': 'family 25',
                'cpu_count': 2, 'memory_bytes': 8 << 30, 'backend': 'cpu', 'device_kind': 'cpu',
                'device_count': 1, 'process_count': 1, 'xla_flags': None,
                'versions': {'jax': '0.10.2', 'jaxlib': '0.10.2'}}
_A = machine.identity(_ENVIRONMENT)
_B = machine.identity({**_ENVIRONMENT, 'machine_id': 'b' * 32})
_PEAKS = {'matmul_flops_per_s': {'float32': 1e11}, 'copy_bytes_per_s': 2e10}
_SUMMARY = {'median': 2e-6, 'iqr': 1e-7, 'n': 3, 'samples': [1.9e-6, 2e-6, 2.1e-6]}
# quickstart's MLP train step at batch 4: about 60 kernels.
_TINY = ('--config=quickstart', '--config.select=mlp_b32', '--config.cases.mlp_b32.batch_size=4')


@pytest.fixture(autouse=True)
def _quick_timing(monkeypatch):
  """What is measured here is recorded, not judged: a kernel's loop is timed in calls
  of 0.2 ms, 3 at the least (the defaults, 1 ms and 10, make these tests minutes)."""
  monkeypatch.setattr(kernel_bench, 'TARGET_CALL_S', 2e-4)
  monkeypatch.setattr(kernel_bench, 'MIN_SAMPLES', 3)


def _kernel(n):
  """The one kernel of an [8, 16] x [16, n] matmul program."""
  kernel, = kernels_lib.kernels(f'''HloModule m

ENTRY %main (a: f32[8,16], b: f32[16,{n}]) -> f32[8,{n}] {{
  %a = f32[8,16] parameter(0)
  %b = f32[16,{n}] parameter(1)
  ROOT %dot = f32[8,{n}] dot(%a, %b), lhs_contracting_dims={{1}}, rhs_contracting_dims={{0}}
}}
''')
  return kernel


def _same(kernel):
  return kernel_bench.Check(True, '', (('dot', kernel.key),))


def _add(store, identity, kernel, peaks=_PEAKS, disturbed='', source='sample'):
  return store.add(identity, kernel, _SUMMARY, _same(kernel), 1e-5, peaks, source, disturbed)


def test_a_kernel_and_its_measurement_round_trip(tmp_path):
  db = str(tmp_path / 'k.db')
  kernel, other = _kernel(4), _kernel(8)
  with kernel_store.connect(db) as store:
    _add(store, _A, kernel, source='config:quickstart')
    store.add(_A, other, None, kernel_bench.Check(False, 'does not compile alone: x', ()), 1e-5,
              _PEAKS, 'sample', '')
  with kernel_store.connect(db) as store:  # read back by a connection of its own
    key = machine.key(_A)
    row, unmeasurable = sorted(store.rows(key), key=lambda r: r['key'] != kernel.key)
    assert row == {
        'key': kernel.key, 'kind': 'dot', 'signature': kernel.signature, 'module': kernel.module,
        'flops': 2 * 8 * 16 * 4, 'bytes': kernel.bytes, 'ops': ['dot'],
        'parameters': ['f32[8,16]', 'f32[16,4]'], 'result': 'f32[8,4]', 'machine_key': key,
        'source': 'config:quickstart', 'taken_at': row['taken_at'], 'median_s': 2e-6,
        'iqr_s': 1e-7, 'n': 3, 'samples': [1.9e-6, 2e-6, 2.1e-6], 'probe_s': 1e-5,
        'matmul_flops_per_s': 1e11, 'copy_bytes_per_s': 2e10, 'disturbed': False,
        'same': True, 'why': '', 'ran': [['dot', kernel.key]]}
    # Not measurable alone is recorded too, and counts as measured: not tried again.
    assert (unmeasurable['median_s'], unmeasurable['samples'], unmeasurable['same'],
            unmeasurable['why']) == (None, None, False, 'does not compile alone: x')
    assert set(store.measured(key)) == {kernel.key, other.key}
    assert store.rows(key, source='config:quickstart') == [row]
    assert store.rows(key, kind='convolution') == []
    assert store.machines() == [{'key': key, **_A, 'kernels': 2, 'measured': 2}]
    assert kernel_store.summary(store.rows(key)) == [('dot', 2, 1, 2e-6, 1)]


def test_two_machines_are_kept_apart(tmp_path):
  with kernel_store.connect(str(tmp_path / 'k.db')) as store:
    _add(store, _A, _kernel(4), peaks={'matmul_flops_per_s': {'float32': 1e13},
                                        'copy_bytes_per_s': 1e12})
    _add(store, _B, _kernel(8))
    assert [r['key'] for r in store.rows(machine.key(_A))] == [_kernel(4).key]
    assert list(store.measured(machine.key(_B))) == [_kernel(8).key]
    assert [(m['machine_id'], m['kernels']) for m in store.machines()] == [('a' * 32, 1),
                                                                           ('b' * 32, 1)]
    # B is judged against its own peaks, not A's hundred times faster ones.
    assert store.disturbed(machine.key(_B), _PEAKS) == ''
    assert store.conn.execute('SELECT count(*) FROM kernels').fetchone()[0] == 2


def _damage(path, page):
  with open(path, 'r+b') as f:
    f.seek(page * 4096)
    f.write(random.Random(0).randbytes(4096))


def test_a_damaged_or_foreign_file_is_refused_and_left_alone(tmp_path):
  db = str(tmp_path / 'k.db')
  with kernel_store.connect(db) as store:
    _add(store, _A, _kernel(4))
  _damage(db, 2)  # a table's page, past the header and the schema
  before = open(db, 'rb').read()
  result = call_cli('list', f'--db={db}', module='bench.kernels')
  assert (result.returncode, result.stdout) == (2, '')
  assert re.fullmatch(f'error: {re.escape(db)}: is damaged \\(SQLite finds: [^\n]+\\); to keep '
                      f'what is readable: sqlite3 {re.escape(db)} .recover \\| sqlite3 NEW.db; '
                      'name another file with --db=PATH \\(this one is left as it is\\)\n',
                      result.stderr)
  assert open(db, 'rb').read() == before and os.listdir(tmp_path) == ['k.db']
  _damage(db, 0)
  with pytest.raises(UserError, match='is not an SQLite database, or is a damaged one: not a '
                     'flax-bench kernel database'):
    kernel_store.connect(db)
  foreign = str(tmp_path / 'other.db')
  sqlite3.connect(foreign).execute('CREATE TABLE t (x)').connection.commit()
  history.connect(str(tmp_path / 'history.db')).close()  # ours, but not a kernel database
  for path in (foreign, str(tmp_path / 'history.db')):
    before = open(path, 'rb').read()
    with pytest.raises(UserError, match='is an SQLite database of another program, not a '
                       'flax-bench kernel database'):
      kernel_store.connect(path)
    assert open(path, 'rb').read() == before
  missing = call_cli('export', f'--db={tmp_path / "none.db"}', module='bench.kernels')
  assert (missing.returncode, missing.stderr) == (2, (
      f'error: {tmp_path / "none.db"}: no kernel database here yet; `flax-bench kernels sample` '
      'makes one (about 15 minutes), on this machine\n'))
  # The tests' environment turns the default off ($FLAX_BENCH_KERNELS=off): a command
  # that needs a database says so.
  off = call_cli('list', module='bench.kernels')
  assert (off.returncode, off.stderr) == (2, 'error: the kernel database is off '
                                          '($FLAX_BENCH_KERNELS=off); name one with --db=PATH\n')


def test_a_disturbed_measurement_does_not_count(tmp_path):
  key = machine.key(_A)
  with kernel_store.connect(str(tmp_path / 'k.db')) as store:
    assert store.disturbed(key, _PEAKS) == ''  # nothing recorded yet
    _add(store, _A, _kernel(4))
    half = {'matmul_flops_per_s': {'float32': 0.5e11}, 'copy_bytes_per_s': 0.8 * 2e10}
    # 0.8x is within machine.PEAK_NOISE (1 / 1.35 = 0.74x), 0.5x beyond it.
    assert store.disturbed(key, half) == 'matmul peak 0.50x of the best this machine recorded'
    _add(store, _A, _kernel(8), peaks=half, disturbed=store.disturbed(key, half))
    assert list(store.measured(key)) == [_kernel(4).key]
    assert {r['key']: r['disturbed'] for r in store.rows(key, kind='dot')} == {
        _kernel(4).key: False, _kernel(8).key: True}
    _add(store, _A, _kernel(8))  # taken again, undisturbed: that one counts
    assert sorted(store.measured(key)) == sorted([_kernel(4).key, _kernel(8).key])
    assert [r['disturbed'] for r in store.rows(key)] == [False, False]


def test_a_disturbed_session_is_marked_and_retaken(tmp_path):
  """A planted best a million times this machine's peaks: the session is disturbed,
  every kernel it takes marked; without it, the next session takes them all again."""
  _, config = configs.load('quickstart', list(_TINY[1:]))
  here = machine.identity(environment.collect())
  starts = []
  with kernel_store.connect(str(tmp_path / 'k.db')) as store:
    planted = _add(store, here, _kernel(4), peaks={'matmul_flops_per_s': {'float32': 1e18},
                                                   'copy_bytes_per_s': 1e18})
    first, = predict.measure_config(config, store, on_start=starts.append, min_time_s=0.002)
    key = starts[0].machine_key
    assert starts[0].disturbed.startswith('matmul peak 0.00x of the best')
    assert first['new'] == first['distinct'] > 10
    taken = store.rows(key, source='config:quickstart')
    assert len(taken) == first['distinct'] and all(r['disturbed'] for r in taken)
    assert list(store.measured(key)) == [_kernel(4).key]
    store.conn.execute('DELETE FROM measurements WHERE id = ?', (planted,))
    second, = predict.measure_config(config, store, on_start=starts.append, min_time_s=0.002)
    assert starts[1].disturbed == '' and second['new'] == first['distinct']
    assert len(store.measured(key)) == first['distinct']
    assert not any(r['disturbed'] for r in store.rows(key))


_CASE = re.compile(r'mlp_b32: (\d+) kernels, (\d+) distinct, (\d+) measured now, kernel sum '
                   r'([\d.]+) ms, 0 not measurable alone, \d+ not the same alone \([\d.]+ s\)$')


def test_kernels_measure_list_and_export(tmp_path):
  db = str(tmp_path / 'k.db')
  first = call_cli('measure', *_TINY, f'--db={db}', module='bench.kernels')
  assert first.returncode == 0, first.stderr
  # A new file's first session is never disturbed: it has no best to fall short of.
  session, case, total = first.stdout.splitlines()
  assert session.startswith('machine ') and session.endswith(f'; into {db}')
  count, distinct, new, kernel_sum = _CASE.match(case).groups()
  assert new == distinct and int(count) >= int(distinct) > 10
  assert total == f'{distinct} kernels measured now, of {distinct} distinct in 1 cases'
  # A second run measures nothing (even disturbed: the first's measurements count), and
  # sums the same medians read back.
  second = call_cli('measure', *_TINY, f'--db={db}', module='bench.kernels')
  case, = [line for line in second.stdout.splitlines() if line.startswith('mlp_b32: ')]
  assert _CASE.match(case).groups() == (count, distinct, '0', kernel_sum)
  listed = call_cli('list', f'--db={db}', module='bench.kernels').stdout.splitlines()
  table = [line.split(' | ') for line in listed if line.startswith('| ') and '---' not in line]
  assert table[0][:2] == ['| kind', 'kernels']
  assert sum(int(row[1]) for row in table[1:]) == int(distinct)
  exported = call_cli('export', f'--db={db}', module='bench.kernels')
  rows = list(csv.reader(io.StringIO(exported.stdout)))
  assert rows[0] == ['key', 'kind', 'module', 'flops', 'bytes', 'ops', 'parameters', 'result',
                     'machine_key', 'source', 'taken_at', 'median_s', 'iqr_s', 'n', 'samples',
                     'probe_s', 'matmul_flops_per_s', 'copy_bytes_per_s', 'disturbed', 'same',
                     'why', 'ran']
  assert len(rows) == int(distinct) + 1
  as_json = json.loads(call_cli('export', '--format=json', f'--db={db}',
                                module='bench.kernels').stdout)
  assert len(as_json) == int(distinct) and len(as_json[0]['samples']) == as_json[0]['n']


def test_a_killed_run_keeps_what_it_measured(tmp_path, monkeypatch):
  """Interrupted at its sixth kernel, a run has recorded five; the next one measures
  only the rest."""
  _, config = configs.load('quickstart', list(_TINY[1:]))
  measure, calls = kernel_bench.measure, []

  def killed_at_the_sixth(*args, **kwargs):
    calls.append(1)
    if len(calls) == 6:
      raise KeyboardInterrupt
    return measure(*args, **kwargs)

  with kernel_store.connect(str(tmp_path / 'k.db')) as store:
    monkeypatch.setattr(kernel_bench, 'measure', killed_at_the_sixth)
    with pytest.raises(KeyboardInterrupt):
      predict.measure_config(config, store, min_time_s=0.002)
    monkeypatch.setattr(kernel_bench, 'measure', measure)
    (found,) = store.machines()
    assert found['measured'] == 5
    rest, = predict.measure_config(config, store, min_time_s=0.002)
    assert rest['new'] == rest['distinct'] - 5
    assert len(store.measured(found['key'])) == rest['distinct']
