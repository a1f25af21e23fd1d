"""Is JAX faster than Keras for this model on this machine? Each case's train step in
both, interleaved in rounds of fresh processes, as the A/B runs its two sides.

  python -m bench.peer --config=configs/X.py --workdir=DIR [--rounds=6] [--seed=N]
                       [--out=FILE.json] [--config.FIELD=V ...]
  flax-bench peer --config=quickstart --workdir=workdirs/peer

Each round runs our side (the config's cases that have a Keras twin, in one fresh
`bench.main` process, its report kept in DIR/runs/, its log in DIR/logs/) and the
Keras side (each such case in a fresh process without JAX: bench/keras_peer.py
builds the twin, bench/workload/keras_twin.py: the seed MLP, CNN and CIFAR nets,
and keras.applications' ResNet-50/101/152, MobileNetV2 and Xception under the
case's top, with our exact parameter counts, and times `train_on_batch` on one
synthetic batch with the case's optimizer and its warm-up and timed step counts),
in ABBA/BAAB order. Per case: both medians, ours/Keras as the Hodges-Lehmann
estimate over the rounds' log ratios with its exact signed-rank 95% interval
(fewer than 6 rounds cannot bound it), and a sentence where the ratio is outside
0.8-1.25. A case without a twin says why (bench/workload/twins.py: among them a case
reading a dataset, whose input pipeline our step would time and the twin's not).

Exit status 0; 1 when a side failed; 2, with one line, for a bad flag, config, or
a config without any case that has a twin.
"""

import json
import sys

from bench import main as cli
from bench.core import logs
from bench.core.errors import UserError, fail


def _table(rows):
  from bench.results import formatting  # pylint: disable=import-outside-toplevel
  timed = [r for r in rows if not r['why']]

  def interval(r):
    return f'{r["ci_low"]:.3f}-{r["ci_high"]:.3f}' if r['ci_low'] is not None else 'unbounded'
  return formatting.table(
      ('case', 'model', 'batch', 'ours ms', 'Keras ms', 'ours/Keras', '95% interval',
       'IQR/median ours, Keras', 'rounds', 'parameters'),
      [[r['name'], r['model'], r['batch_size'], formatting.fmt(r['ours_s'], 1e3),
        formatting.fmt(r['keras_s'], 1e3), f'{r["ratio"]:.3f}', interval(r),
        f'{formatting.fmt(r["ours_iqr_over_median"])}, '
        f'{formatting.fmt(r["keras_iqr_over_median"])}', r['rounds'], f'{r["params"]:,}']
       for r in timed])


def _sentences(rows):
  """A sentence for each case whose ratio is outside 0.8-1.25."""
  out = []
  for r in rows:
    if r['why'] or 0.8 <= r['ratio'] <= 1.25:
      continue
    said = (f'our step takes {r["ratio"]:.2f}x Keras\'s' if r['ratio'] > 1 else
            f'Keras\'s step takes {1 / r["ratio"]:.2f}x ours')
    out.append(f'- {r["name"]}: {said}'
               + ('' if r['ci_low'] is None else
                  f' (interval {r["ci_low"]:.3f}-{r["ci_high"]:.3f} ours/Keras)') + '.')
  return out


def main(argv=None):
  """`python -m bench.peer ARGS`: a line per round, then the table."""
  arguments = cli.parser('bench.peer', __doc__.split('\n', 1)[0])
  arguments.add_argument('--workdir', required=True,
                         help='where our side\'s reports and logs go (DIR/runs, DIR/logs)')
  arguments.add_argument('--rounds', type=int, default=6,
                         help='rounds, each side once a round (even: ABBA/BAAB pairs)')
  arguments.add_argument('--seed', type=int, default=0, help='draws the order of the sides')
  arguments.add_argument('--out', metavar='FILE.json', help='also write the rows as JSON')
  rest = sys.argv[1:] if argv is None else argv
  args = cli.parse(arguments, rest)
  logs.configure(args.verbosity)
  if args.rounds < 2 or args.rounds % 2:
    fail(f'--rounds={args.rounds}: give an even number of rounds, at least 2 (the sides run '
         'in ABBA/BAAB pairs)')
  import configs  # pylint: disable=import-outside-toplevel
  from bench.run import ab, peer  # pylint: disable=import-outside-toplevel  (jax)
  overrides = configs.split(rest)[1]
  try:
    rows, status = ab.settled(lambda: peer.peer(args.config_file, args.config, overrides,
                                                args.rounds, args.workdir, args.seed, print),
                              f'what our side ran so far is in {args.workdir}/runs')
  except UserError as e:
    fail(e)
  if status is not None:
    return status
  for row in rows:
    if row['why']:
      print(f'{row["name"]}: no Keras twin: {row["why"]}')
  sys.stdout.write('\nOur train step (JAX/XLA) against its Keras twin (TensorFlow backend), '
                   'interleaved rounds of fresh processes; medians over the rounds of each '
                   "round's median step:\n\n" + '\n'.join(_table(rows) + ['', *_sentences(rows)])
                   + '\n')
  if args.out:
    from bench.core import fileio  # pylint: disable=import-outside-toplevel
    fileio.atomic_write_text(args.out, json.dumps(rows, indent=1) + '\n')
  return 0


if __name__ == '__main__':
  sys.exit(main())
