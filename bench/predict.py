"""Predicts a config's step times from a compile, without running a step.

  python -m bench.predict --config=configs/X.py [--fit=REPORT.json] [--config.FIELD=V ...]
  flax-bench predict --config=model_zoo --fit=workdirs/pvr/report.json

Every case of the config (but input-pipeline ones) is compiled, not run, and its
ops costed (bench/run/predict.py): with --fit, by the cost model fitted on that
profiled report (a run of a config with --config.profile=True, ideally on this
machine), with the 10th-90th percentile of its leave-one-family-out errors as
the interval; without, at the device's measured peaks (a roofline: the least the
step can take). Prints per case the predicted step time, examples/s and the
memory XLA assigns the step's buffers (per device); with a --fit report whose
step peaks were measured (bench/measure/host_memory.py), also the peak a run of
it holds, fitted on those buffers, with its interval. Exit status 2, with one
line, for a bad flag, config or report.
"""

import signal
import sys

from bench import main as cli
from bench.core import logs
from bench.core.errors import UserError, fail


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
  args = cli.parse(arguments, sys.argv[1:] if argv is None else argv)
  logs.configure(args.verbosity)
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
