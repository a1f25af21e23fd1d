"""Predicts a config's step times from a compile, without running a step.

  python -m bench.predict --config=configs/X.py [--fit=REPORT.json] [--config.FIELD=V ...]
  flax-bench predict --config=model_zoo --fit=workdirs/pvr/report.json
  flax-bench predict --config=param_vs_runtime --kernels=predict [--out=FILE.json]

Every case of the config (but input-pipeline ones) is compiled, not run, and its
ops costed (bench/run/predict.py): with --fit, by the cost model fitted on that
profiled report (a run of a config with --config.profile=True, ideally on this
machine), with the 10th-90th percentile of its leave-one-family-out errors as
the interval; without, at the device's measured peaks (a roofline: the least the
step can take). Prints per case the predicted step time, examples/s and the
memory XLA assigns the step's buffers (per device); with a --fit report whose
step peaks were measured (bench/measure/host_memory.py), also the peak a run of
it holds, fitted on those buffers, with its interval.

With --kernels=predict, each case's step is the sum of its kernels (the
instructions XLA compiled it into, bench/measure/kernels.py), each predicted by
its kind's predictor learned from randomly sampled kernels only (`flax-bench
kernels sample` fills the kernel database; bench/run/kernels.py), plus the call
overhead of a step; the interval is the kernels' held-out errors added up. A line
is printed per case as it compiles. --kernels=measure adds each case's kernel
sum: its kernels measured alone (kept in the database) instead of predicted, the
check of additivity. --out=FILE.json writes the rows for scripts.

Exit status 2, with one line, for a bad flag, config or report.
"""

import json
import os
import signal
import sys

from bench import main as cli
from bench.core import logs
from bench.core.errors import UserError, fail


_KERNEL_MODES = ('predict', 'measure')


def _kernel_table(rows):
  from bench.results import formatting  # pylint: disable=import-outside-toplevel
  measured = any(r['kernel_sum_s'] is not None for r in rows)
  return formatting.table(
      ('case', 'model', 'batch', 'devices', 'kernels', 'predicted ms', 'interval ms',
       *(('kernel sum ms',) if measured else ()), 'examples/s', 'XLA buffers MB', 'compile s'),
      [[r['name'], r['model'], r['batch_size'], r['devices'], r['kernels'],
        formatting.fmt(r['predicted_s'], 1e3),
        f'{formatting.fmt(r["low_s"], 1e3)}-{formatting.fmt(r["high_s"], 1e3)}',
        *((formatting.fmt(r['kernel_sum_s'], 1e3),) if measured else ()),
        formatting.fmt(r['examples_per_s']), formatting.fmt(r['memory_bytes'], 1e-6),
        formatting.fmt(r['compile_s'])] for r in rows])


def _table(rows, fitted):
  from bench.results import formatting  # pylint: disable=import-outside-toplevel

  def span(low, high, scale):
    return f'{formatting.fmt(low, scale)}-{formatting.fmt(high, scale)}' if low else 'n/a'

  peaks = any(r['peak_bytes'] for r in rows)
  columns = ('case', 'model', 'batch', 'devices', 'predicted ms',
             'interval ms' if fitted else 'bound', 'examples/s', 'XLA buffers MB',
             *(('peak MB', 'interval MB') if peaks else ()), 'compile s')
  return formatting.table(columns, [
      [r['name'], r['model'], r['batch_size'], r['devices'], formatting.fmt(r['predicted_s'], 1e3),
       span(r['low_s'], r['high_s'], 1e3) if fitted else 'roofline: at least',
       formatting.fmt(r['examples_per_s']), formatting.fmt(r['memory_bytes'], 1e-6),
       *((formatting.fmt(r['peak_bytes'], 1e-6),
          span(r['peak_low_bytes'], r['peak_high_bytes'], 1e-6)) if peaks else ()),
       formatting.fmt(r['compile_s'])] for r in rows])


def main(argv=None):
  """`python -m bench.predict ARGS`: prints the table; exit 0, 2 for a user error, 128 + N
  for signal N (Ctrl-C: 130)."""
  arguments = cli.parser('bench.predict', __doc__.split('\n', 1)[0])
  arguments.add_argument('--fit', metavar='REPORT.json', help='a report.json with profiled '
                         'cases (a run with --config.profile=True) to fit the cost model on')
  arguments.add_argument('--kernels', choices=_KERNEL_MODES,
                         help='predict each case from its kernels by the predictors learned '
                         'from the kernel database (predict), and also sum them measured '
                         'alone (measure)')
  arguments.add_argument('--db', help='the kernel database (default $FLAX_BENCH_KERNELS or '
                         '~/.cache/flax-bench/kernels.db)')
  arguments.add_argument('--out', metavar='FILE.json', help='also write the rows as JSON')
  args = cli.parse(arguments, sys.argv[1:] if argv is None else argv)
  logs.configure(args.verbosity)
  if args.kernels and args.fit:
    fail('--kernels and --fit are two predictors; give one')
  if args.kernels:
    return _by_kernels(args)
  try:
    rows, fitted = _predict(args)
  except KeyboardInterrupt:  # Ctrl-C before the handlers were set (the imports)
    cli.interrupted(signal.SIGINT, 'by SIGINT; nothing was written')
  how = (f'the cost model fitted on {args.fit}; interval: the 10th-90th percentile of its '
         'leave-one-family-out errors' if fitted else
         "each op at this device's measured float32 matmul peak and copy bandwidth")
  peak = ('; peak: a * XLA buffers + b fitted on its measured step peaks, the same interval'
          if fitted and fitted['memory'] else '')
  sys.stdout.write(f'Predicted step times ({how}{peak}), per device, from a compile: no step '
                   'ran.\n\n' + '\n'.join(_table(rows, fitted is not None)) + '\n')
  _write(args.out, rows)
  return 0


def _write(out, rows):
  if out:
    from bench.core import fileio  # pylint: disable=import-outside-toplevel
    fileio.atomic_write_text(out, json.dumps(rows, indent=1) + '\n')


def _by_kernels(args):
  """`--kernels`: a line per case as it compiles, then the table."""
  # pylint: disable=import-outside-toplevel  (seconds of imports, once the arguments are good)
  from bench.core import interrupt
  from bench.results import formatting
  from bench.results import kernel_store
  from bench.run import kernels

  def line(row):
    extra = (f', kernel sum {formatting.fmt(row["kernel_sum_s"], 1e3)} ms'
             if row['kernel_sum_s'] is not None else '')
    print(f'{row["name"]}: {row["kernels"]} kernels, predicted '
          f'{formatting.fmt(row["predicted_s"], 1e3)} ms ({formatting.fmt(row["low_s"], 1e3)}-'
          f'{formatting.fmt(row["high_s"], 1e3)}){extra}, compile '
          f'{formatting.fmt(row["compile_s"])} s', flush=True)

  db = kernel_store.path(args.db)
  if not os.path.exists(db):
    fail(f'{db}: no kernel database here yet; `flax-bench kernels sample` makes one (about '
         '10 minutes), on this machine')
  try:
    with kernel_store.connect(db) as store, interrupt.handlers():
      rows = kernels.predict_config(args.config, store, args.kernels == 'measure', line)
  except UserError as e:
    fail(e)
  except interrupt.Interrupted as e:
    cli.interrupted(e.signum, f'by {signal.Signals(e.signum).name}; nothing was written')
  except KeyboardInterrupt:
    cli.interrupted(signal.SIGINT, 'by SIGINT; nothing was written')
  sys.stdout.write('\nPredicted step times, per device, from a compile: each kernel by its '
                   "kind's predictor learned from sampled kernels only (" + db + '), plus a '
                   "call's overhead; interval: the kernels' held-out 10th-90th percentile "
                   'errors added up.\n\n' + '\n'.join(_kernel_table(rows)) + '\n')
  _write(args.out, rows)
  return 0


def _predict(args):
  """(rows, the fitted model or None); a user error or a signal ends the program."""
  # pylint: disable=import-outside-toplevel  (seconds of imports, once the arguments are good)
  from bench.core import interrupt
  from bench.results import schema
  from bench.run import predict
  try:
    fitted = predict.model_from(schema.read(args.fit)) if args.fit else None
  except UserError as e:
    fail(f'--fit={args.fit}: {e}')
  try:
    with interrupt.handlers():
      return predict.predict(args.config, fitted), fitted
  except UserError as e:
    fail(e)
  except interrupt.Interrupted as e:
    cli.interrupted(e.signum, f'by {signal.Signals(e.signum).name}; nothing was written')


if __name__ == '__main__':
  sys.exit(main())
