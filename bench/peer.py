"""Times each case's train step in Keras: the same model (its Keras twin), batch and
optimizer, in a fresh process without JAX per case.

  python -m bench.peer --config=configs/X.py [--warmup_steps=5] [--timed_steps=20]
                       [--out=FILE.json] [--config.FIELD=V ...]
  flax-bench peer --config=quickstart

For every case of the config with a step: its spec (bench/run/peer.py: the model's
fields as this harness builds it) goes to `python -m bench.keras_peer`, which
builds the twin (bench/workload/keras_twin.py: the seed MLP, CNN and CIFAR nets,
and keras.applications' ResNet-50/101/152, MobileNetV2 and Xception with the
flax top) and times `train_on_batch` on one synthetic batch. A line per case as
it ends (or why it has no twin), then the table: Keras's median step, its spread,
examples/s. Compare with a run of the same config (`flax-bench run`) in the same
quiet window: the two are not interleaved here.

Exit status 0; 1 when a case's Keras process failed; 2, with one line, for a bad
flag or config.
"""

import json
import sys

from bench import main as cli
from bench.core import logs
from bench.core.errors import UserError, fail


def _line(row):
  from bench.results import formatting  # pylint: disable=import-outside-toplevel
  if row['why'] or row.get('error'):
    said = f'no Keras twin: {row["why"]}' if row['why'] else f'failed: {row["error"]}'
    print(f'{row["name"]}: {said}', flush=True)
    return
  step = row['step_time_s']
  print(f'{row["name"]}: Keras {formatting.fmt(step["median"], 1e3)} ms a step (IQR/median '
        f'{formatting.fmt(step["iqr_over_median"])}, {step["n"]} steps; jit_compile '
        f'{row["jit_compile"]}, {row["params"]:,} parameters)', flush=True)


def _table(rows):
  from bench.results import formatting  # pylint: disable=import-outside-toplevel
  timed = [r for r in rows if 'step_time_s' in r]
  return formatting.table(
      ('case', 'model', 'batch', 'Keras ms', 'IQR/median', 'examples/s', 'parameters',
       'jit_compile'),
      [[r['name'], r['model'], r['batch_size'], formatting.fmt(r['step_time_s']['median'], 1e3),
        formatting.fmt(r['step_time_s']['iqr_over_median']),
        formatting.fmt(r['batch_size'] / r['step_time_s']['median']), f'{r["params"]:,}',
        r['jit_compile']] for r in timed])


def main(argv=None):
  """`python -m bench.peer ARGS`: a line per case, then the table."""
  arguments = cli.parser('bench.peer', __doc__.split('\n', 1)[0])
  arguments.add_argument('--warmup_steps', type=int, default=5,
                         help='untimed Keras steps first (the first traces and compiles)')
  arguments.add_argument('--timed_steps', type=int, default=20, help='Keras steps timed')
  arguments.add_argument('--out', metavar='FILE.json', help='also write the rows as JSON')
  args = cli.parse(arguments, sys.argv[1:] if argv is None else argv)
  logs.configure(args.verbosity)
  if args.warmup_steps < 1 or args.timed_steps < 2:
    fail(f'--warmup_steps={args.warmup_steps} --timed_steps={args.timed_steps}: give at least '
         '1 warm-up step (the first compiles) and 2 timed ones')
  from bench.run import peer  # pylint: disable=import-outside-toplevel  (jax)
  try:
    rows = peer.peer(args.config, args.warmup_steps, args.timed_steps, _line)
  except UserError as e:
    fail(e)
  sys.stdout.write('\nKeras (TensorFlow backend) train steps, each case in a fresh process, '
                   'one synthetic batch, median over the timed steps:\n\n'
                   + '\n'.join(_table(rows)) + '\n')
  if args.out:
    from bench.core import fileio  # pylint: disable=import-outside-toplevel
    fileio.atomic_write_text(args.out, json.dumps(rows, indent=1) + '\n')
  return 1 if any(r.get('error') for r in rows) else 0


if __name__ == '__main__':
  sys.exit(main())
