"""Predicts a config's step times from a compile, without running a step.

  python -m bench.predict --config=configs/X.py [--kernels=predict|measure] [--db=PATH]
                          [--memory=REPORT.json] [--out=FILE.json] [--config.FIELD=V ...]
  flax-bench predict --config=param_vs_runtime --out=pvr.json

Every case of the config (but input-pipeline ones) is compiled, not run
(bench/run/predict.py), and its step is the sum of its kernels (the instructions
XLA compiled it into, bench/measure/kernels.py), each predicted by its kind's
predictor learned from randomly sampled kernels only (`flax-bench kernels sample`
fills the kernel database; bench/run/kernels.py), plus what a step pays beyond
its kernels, probed on this machine. The interval is the kernels' held-out
10th-90th percentile errors added up. A line is printed per case as it compiles,
then the table: predicted ms, interval, examples/s and the memory XLA assigns the
step's buffers (per device); with --memory, a report whose step peaks were
measured (bench/measure/host_memory.py), also the peak a run holds, a * buffers + b
fitted on that report, with its interval, flagged (*) where the case's buffers are
outside the sizes that fit saw. --kernels=measure adds each case's kernel sum:
its kernels measured alone (kept in the database) instead of predicted, the check
of additivity. --out=FILE.json writes the rows for scripts.

Exit status 2, with one line, for a bad flag, config, report or database.
"""

import json
import sys

from bench import kernels as kernels_cli
from bench import main as cli
from bench.core import logs
from bench.core.errors import UserError, fail


_KERNEL_MODES = ('predict', 'measure')


def _table(rows):
  from bench.results import formatting  # pylint: disable=import-outside-toplevel

  def span(low, high, scale):
    return f'{formatting.fmt(low, scale)}-{formatting.fmt(high, scale)}'

  measured = any(r['kernel_sum_s'] is not None for r in rows)
  peaks = any(r['peak_bytes'] for r in rows)
  return formatting.table(
      ('case', 'model', 'batch', 'devices', 'kernels', 'predicted ms', 'interval ms',
       *(('kernel sum ms',) if measured else ()), 'examples/s', 'XLA buffers MB',
       *(('peak MB', 'interval MB') if peaks else ()), 'compile s'),
      [[r['name'], r['model'], r['batch_size'], r['devices'], r['kernels'],
        formatting.fmt(r['predicted_s'], 1e3), span(r['low_s'], r['high_s'], 1e3),
        *((formatting.fmt(r['kernel_sum_s'], 1e3),) if measured else ()),
        formatting.fmt(r['examples_per_s']), formatting.fmt(r['memory_bytes'], 1e-6),
        *((formatting.fmt(r['peak_bytes'], 1e-6) + ('*' if r['peak_outside'] else ''),
           span(r['peak_low_bytes'], r['peak_high_bytes'], 1e-6)) if peaks else ()),
        formatting.fmt(r['compile_s'])] for r in rows])


def _line(row):
  from bench.results import formatting  # pylint: disable=import-outside-toplevel
  extra = (f', kernel sum {formatting.fmt(row["kernel_sum_s"], 1e3)} ms'
           if row['kernel_sum_s'] is not None else '')
  print(f'{row["name"]}: {row["kernels"]} kernels, predicted '
        f'{formatting.fmt(row["predicted_s"], 1e3)} ms ({formatting.fmt(row["low_s"], 1e3)}-'
        f'{formatting.fmt(row["high_s"], 1e3)}){extra}, compile '
        f'{formatting.fmt(row["compile_s"])} s', flush=True)


def _memory(report_path):
  """The memory fit of --memory, or None; a user error ends the program."""
  if not report_path:
    return None
  # pylint: disable=import-outside-toplevel  (seconds of imports, once the arguments are good)
  from bench.results import schema
  from bench.run import predict
  try:
    return predict.memory_fit(schema.read(report_path))
  except UserError as e:
    fail(f'--memory={report_path}: {e}')


def main(argv=None):
  """`python -m bench.predict ARGS`: a line per case, then the table; exit 0, 2 for a
  user error, 128 + N for signal N (Ctrl-C: 130)."""
  arguments = cli.parser('bench.predict', __doc__.split('\n', 1)[0])
  arguments.add_argument('--kernels', choices=_KERNEL_MODES, default='predict',
                         help='predict each case from its kernels (default), and also sum '
                         'them measured alone (measure)')
  arguments.add_argument('--db', help='the kernel database (default $FLAX_BENCH_KERNELS or '
                         '~/.cache/flax-bench/kernels.db)')
  arguments.add_argument('--memory', metavar='REPORT.json', help='a report whose step peaks '
                         'were measured: the peak a run holds is fitted on it')
  arguments.add_argument('--out', metavar='FILE.json', help='also write the rows as JSON')
  args = cli.parse(arguments, sys.argv[1:] if argv is None else argv)
  logs.configure(args.verbosity)
  from bench.results import kernel_store  # pylint: disable=import-outside-toplevel
  try:
    db = kernel_store.existing(args.db)
  except UserError as e:
    fail(e)
  memory = _memory(args.memory)
  from bench.run import predict  # pylint: disable=import-outside-toplevel
  measure = args.kernels == 'measure'
  rows = kernels_cli.interruptible(
      db, lambda store: predict.predict(args.config, store, measure, _line, memory),
      'the kernels measured so far are kept in {db}' if measure else 'nothing was written')
  peak = ('; peak: a * XLA buffers + b fitted on the step peaks of ' + args.memory
          + ', interval the 10th-90th percentile of its leave-one-family-out errors, * where '
          'the buffers are outside the sizes it was fitted on' if memory else '')
  sys.stdout.write('\nPredicted step times, per device, from a compile: each kernel by its '
                   "kind's predictor learned from sampled kernels only (" + db + '), plus what '
                   "a step pays beyond its kernels; interval: the kernels' held-out 10th-90th "
                   f'percentile errors added up{peak}.\n\n' + '\n'.join(_table(rows)) + '\n')
  if args.out:
    from bench.core import fileio  # pylint: disable=import-outside-toplevel
    fileio.atomic_write_text(args.out, json.dumps(rows, indent=1) + '\n')
  return 0


if __name__ == '__main__':
  sys.exit(main())
