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

import sys

from absl import app
from absl import flags

from bench import main as cli
from bench.core import logs
from bench.core.errors import UserError

_FIT = flags.DEFINE_string('fit', None, 'A report.json with profiled cases (a run with '
                           '--config.profile=True) to fit the cost model on.')


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


def main(argv):
  if len(argv) > 1:
    cli.fail(f'unexpected arguments {" ".join(argv[1:])}; flags are --config and --fit')
  if cli.CONFIG.value is None:
    cli.fail('missing --config; pass --config=configs/quickstart.py')
  logs.configure()
  # pylint: disable=import-outside-toplevel  (seconds of imports, once the flags are good)
  from bench.results import schema
  from bench.run import predict
  try:
    fitted = predict.model_from(schema.read(_FIT.value)) if _FIT.value else None
  except UserError as e:
    cli.fail(f'--fit={_FIT.value}: {e}')
  try:
    rows = predict.predict(cli.CONFIG.value, fitted)
  except UserError as e:
    cli.fail(e)
  how = (f'the cost model fitted on {_FIT.value}; interval: the 10th-90th percentile of its '
         'leave-one-family-out errors' if fitted else
         "each op at this device's measured float32 matmul peak and copy bandwidth")
  peak = ('; peak: a * XLA buffers + b fitted on its measured step peaks, the same interval'
          if fitted and fitted['memory'] else '')
  sys.stdout.write(f'Predicted step times ({how}{peak}), per device, from a compile: no step '
                   'ran.\n\n' + '\n'.join(_table(rows, fitted is not None)) + '\n')


if __name__ == '__main__':
  app.run(main, flags_parser=cli.parse_flags)
