"""The kernel database: the kernels a config's steps run, each measured alone, per machine.

  flax-bench kernels sample [--budget=MINUTES] [--seed=N] [--db=PATH]
  flax-bench kernels measure --config=X [--config.FIELD=V ...] [--db=PATH]
  flax-bench kernels list [--kind=K] [--db=PATH]
  flax-bench kernels export --format=csv|json [--db=PATH]

`sample` fills the database the kernel predictors learn from (and only from):
random programs of every kernel kind compiled, their kernels of that kind timed
alone, for --budget minutes; the kinds whose predictor's held-out error is largest
are sampled most once each kind has a few, and a rerun goes on with new programs.
It ends with each kind's held-out errors. `measure` compiles every case's step
(nothing runs), reads the kernels XLA made of it, and times alone each one this machine has no undisturbed measurement of
(bench/run/predict.py), recording each as it finishes: a killed run keeps what it
measured, and a rerun measures only what is missing. It prints a line per case:
its kernels, how many distinct, how many measured now, and its kernel sum (the sum
of each kernel's median alone x its executions per step). A session whose peaks
are far below the best this machine recorded is disturbed: it says so, and its
kernels are taken again by the next measure run. `list` tables every machine's
kernels by kind; `export` writes each kernel's measurement that counts (its latest
undisturbed one, else its latest, marked disturbed) as CSV or JSON on stdout.

--db defaults to $FLAX_BENCH_KERNELS, else ~/.cache/flax-bench/kernels.db
(bench/results/kernel_store.py says why there). Exit status 2, with one line on
stderr, for a bad flag or config, or a file that is not a kernel database.
"""

import argparse
import csv
import io
import json
import signal
import sys
import time

from bench import main as cli
from bench.core import logs
from bench.core.errors import ArgumentParser, UserError, fail
from bench.results import formatting
from bench.results import kernel_store

_DB_HELP = ('the kernel database (default $FLAX_BENCH_KERNELS or '
            '~/.cache/flax-bench/kernels.db)')
# `export`'s columns: the measurement that counts of each kernel, per machine (the
# signature left out: the module is the kernel, the key its signature's hash).
EXPORT_COLUMNS = tuple(f for f in kernel_store.ROW_FIELDS if f != 'signature')


def _session_line(session, db):
  matmul = session.peaks['matmul_flops_per_s']['float32']
  line = (f'machine {session.machine_key[:8]}: float32 matmul {formatting.fmt(matmul, 1e-9)} '
          f'GFLOP/s, copy {formatting.fmt(session.peaks["copy_bytes_per_s"], 1e-9)} GB/s, '
          f'call overhead {formatting.fmt(session.probe_s, 1e6)} us; into {db}')
  if session.disturbed:
    line += (f'\nwarning: this machine is disturbed ({session.disturbed}): what is measured '
             'now is marked so, and measured again by the next measure run')
  return line


def _case_line(result):
  return (f'{result["name"]}: {len(result["kernels"])} kernels, {result["distinct"]} distinct, '
          f'{result["new"]} measured now, kernel sum '
          f'{formatting.fmt(result["kernel_sum_s"], 1e3)} ms, {result["unmeasurable"]} not '
          f'measurable alone, {result["not_same"]} not the same alone '
          f'({formatting.fmt(result["seconds"])} s)')


def interruptible(db, work, kept='the kernels measured so far are kept in {db}'):
  """`work(store)` on the kernel database `db` under the signal handlers: a user error
  one line, a signal its line, ending with what `kept` says (of `db`)."""
  # pylint: disable=import-outside-toplevel  (seconds of imports, once the arguments are good)
  from bench.core import interrupt
  kept = 'by {}; ' + kept.format(db=db)
  try:
    with kernel_store.connect(db) as store, interrupt.handlers():
      return work(store)
  except UserError as e:
    fail(e)
  except interrupt.Interrupted as e:
    cli.interrupted(e.signum, kept.format(signal.Signals(e.signum).name))
  except KeyboardInterrupt:  # Ctrl-C before the handlers were set (the imports)
    cli.interrupted(signal.SIGINT, kept.format('SIGINT'))


def measure(argv):
  """`kernels measure`: the config's arguments as bench.main parses them, and --db."""
  arguments = cli.parser('bench.kernels measure', 'measure alone the kernels of a '
                         "config's steps")
  arguments.add_argument('--db', help=_DB_HELP)
  args = cli.parse(arguments, argv)
  logs.configure(args.verbosity)
  from bench.run import predict  # pylint: disable=import-outside-toplevel
  try:
    db = kernel_store.path(args.db)
  except UserError as e:
    fail(e)
  results = interruptible(db, lambda store: predict.measure_config(
      args.config, store, on_start=lambda s: print(_session_line(s, db), flush=True),
      on_case=lambda r: print(_case_line(r), flush=True)))
  print(f'{sum(r["new"] for r in results)} kernels measured now, of '
        f'{len({k["key"] for r in results for k in r["kernels"]})} distinct in '
        f'{len(results)} cases')
  return 0


def _errors_table(errors):
  """Each kind's predictor and its held-out fold errors (kernel_model.Model.errors)."""
  return formatting.table(
      ('kind', 'kernels', 'distinct', 'predictor', 'median fold error', 'p90',
       'within 1.2x', 'note'),
      [[kind, e['n'], e['signatures'], e['model'], formatting.fmt(e['median']),
        formatting.fmt(e['p90']),
        f'{e["within_1_2"]:.0%}' if e['within_1_2'] is not None else 'n/a', e['note']]
       for kind, e in sorted(errors.items())])


def sample(args):
  """`kernels sample`: random kernels measured for --budget minutes."""
  logs.configure(args.verbosity)
  from bench.run import kernels  # pylint: disable=import-outside-toplevel
  start = time.monotonic()

  def progress(kind, median_s, rows):
    if rows % 25 == 0 and median_s is not None:
      print(f'{rows} kernels sampled on this machine ({formatting.fmt(time.monotonic() - start)}'
            f' s of {args.budget * 60:g})', flush=True)

  result = interruptible(args.db, lambda store: kernels.sample(
      store, args.budget * 60, args.seed,
      on_start=lambda s: print(_session_line(s, args.db), flush=True), on_kernel=progress))
  print(f'{result["new"]} kernels measured now; distinct kernels sampled per kind: '
        + ', '.join(f'{kind} {n}' for kind, n in result['kinds'].items()))
  if result['dropped']:
    print(f'not made by this backend (no draw ran one): {", ".join(result["dropped"])}')
  if result['errors']:
    print('\nHeld-out errors (each kernel predicted by a fit that never saw its signature):\n')
    print('\n'.join(_errors_table(result['errors'])))
  return 0


def list_kernels(store, args):
  lines = []
  for found in store.machines():
    rows = store.rows(found['key'], kind=args.kind)
    lines += [f'## machine {found["key"][:8]} ({found["cpu_model"] or found["device_kind"]}, '
              f'{found["backend"]}, jax {found["jax"]})', '']
    lines += formatting.table(
        ('kind', 'kernels', 'measured', 'median of medians us', 'not the same alone'),
        [[kind, count, measured, formatting.fmt(median, 1e6), other]
         for kind, count, measured, median, other in kernel_store.summary(rows)])
    lines.append('')
  sys.stdout.write('\n'.join(lines) or 'No kernel measured yet: `flax-bench kernels measure '
                   '--config=NAME` measures a config\'s.\n')
  return 0


def export(store, args):
  rows = [{f: r[f] for f in EXPORT_COLUMNS} for found in store.machines()
          for r in store.rows(found['key'])]
  if args.format == 'json':
    sys.stdout.write(json.dumps(rows, indent=1) + '\n')
  else:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, EXPORT_COLUMNS, lineterminator='\n')
    writer.writeheader()
    writer.writerows({k: json.dumps(v) if isinstance(v, list) else v for k, v in r.items()}
                     for r in rows)
    sys.stdout.write(buffer.getvalue())
  return 0


def _minutes(text):
  try:
    value = float(text)
  except ValueError:
    value = -1
  if not value > 0:
    raise argparse.ArgumentTypeError(f'{text!r} is not a number of minutes > 0')
  return value


def _parser():
  parser = ArgumentParser(prog='bench.kernels', description=__doc__.split('\n')[0])
  commands = parser.add_subparsers(dest='command', required=True)
  p = commands.add_parser('sample', help='random kernels of every kind measured alone: what '
                          'the predictors learn from')
  p.add_argument('--budget', type=_minutes, default=kernel_store.SAMPLE_MINUTES,
                 help=f'minutes to sample (default {kernel_store.SAMPLE_MINUTES:g})')
  p.add_argument('--seed', type=int, default=0, help='seed of the random programs (default 0)')
  p.add_argument('--db', help=_DB_HELP)
  logs.add_verbosity(p)
  commands.add_parser('measure', help="measure alone the kernels of a config's steps "
                      '(--config=NAME [--config.FIELD=V ...]; measure --help for its flags)')
  p = commands.add_parser('list', help='the kernels measured, by machine and kind')
  p.add_argument('--kind', help='one kind only (convolution, dot, elementwise, ...)')
  p.add_argument('--db', help=_DB_HELP)
  p = commands.add_parser('export', help='each kernel and its measurement, as CSV or JSON')
  p.add_argument('--format', choices=('csv', 'json'), default='csv')
  p.add_argument('--db', help=_DB_HELP)
  return parser


COMMANDS = {'list': list_kernels, 'export': export}


def main(argv=None):
  argv = sys.argv[1:] if argv is None else argv
  if argv[:1] == ['measure']:  # the config's flags and overrides: bench.main's parser
    return measure(argv[1:])
  args = _parser().parse_args(argv)
  try:
    if args.command == 'sample':
      args.db = kernel_store.path(args.db)
      return sample(args)
    with kernel_store.connect(kernel_store.existing(args.db)) as store:
      return COMMANDS[args.command](store, args)
  except UserError as e:
    fail(e)


if __name__ == '__main__':
  sys.exit(main())
