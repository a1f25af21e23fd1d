"""The kernel database: the kernels a config's steps run, each measured alone, per machine.

  flax-bench kernels measure --config=X [--config.FIELD=V ...] [--db=PATH]
  flax-bench kernels list [--kind=K] [--db=PATH]
  flax-bench kernels export --format=csv|json [--db=PATH]

`measure` compiles every case's step (nothing runs), reads the kernels XLA made of
it, and times alone each one this machine has no undisturbed measurement of
(bench/run/kernels.py), recording each as it finishes: a killed run keeps what it
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

import csv
import io
import json
import os
import signal
import sys

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


def measure(argv):
  """`kernels measure`: the config's arguments as bench.main parses them, and --db."""
  arguments = cli.parser('bench.kernels measure', 'measure alone the kernels of a '
                         "config's steps")
  arguments.add_argument('--db', help=_DB_HELP)
  args = cli.parse(arguments, argv)
  logs.configure(args.verbosity)
  # pylint: disable=import-outside-toplevel  (seconds of imports, once the arguments are good)
  from bench.core import interrupt
  from bench.run import kernels
  db = kernel_store.path(args.db)
  kept = f'by {{}}; the kernels measured so far are kept in {db}'
  try:
    with kernel_store.connect(db) as store, interrupt.handlers():
      results = kernels.measure_config(
          args.config, store, on_start=lambda s: print(_session_line(s, db), flush=True),
          on_case=lambda r: print(_case_line(r), flush=True))
  except UserError as e:
    fail(e)
  except interrupt.Interrupted as e:
    cli.interrupted(e.signum, kept.format(signal.Signals(e.signum).name))
  except KeyboardInterrupt:  # Ctrl-C before the handlers were set (the imports)
    cli.interrupted(signal.SIGINT, kept.format('SIGINT'))
  print(f'{sum(r["new"] for r in results)} kernels measured now, of '
        f'{len({k["key"] for r in results for k in r["kernels"]})} distinct in '
        f'{len(results)} cases')
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


def _parser():
  parser = ArgumentParser(prog='bench.kernels', description=__doc__.split('\n')[0])
  commands = parser.add_subparsers(dest='command', required=True)
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
    args.db = kernel_store.path(args.db)
    if not os.path.exists(args.db):
      raise UserError(f'{args.db}: no kernel database here yet; `flax-bench kernels measure '
                      '--config=NAME` makes one')
    with kernel_store.connect(args.db) as store:
      return COMMANDS[args.command](store, args)
  except UserError as e:
    fail(e)


if __name__ == '__main__':
  sys.exit(main())
