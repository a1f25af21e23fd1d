"""Command line: python -m bench.main --config=configs/quickstart.py --workdir=DIR.

Thin on purpose: flags in, one call to bench.run.runner.run_suite. Everything else
lives in importable modules that tests and notebooks call directly. A mistake
the user can fix ends with one line on stderr and exit status 2.

Exit status: 0 when every case ran (ok, or a training run that diverged); 1 when
a case failed (its error is in the report, whose suite.status is then `failed`, and
the run is recorded in the history as failed): the run finished and wrote its
report, yet a nightly job or CI must see it, as bench.compare's 1 says the results
are not good; 2 for a user error, nothing written; 128 + N for signal N. A bug's
traceback is 1 too: report.json's suite.status tells the two apart.

The log shows the suite's own lines and every library's warnings (bench/core/logs.py);
`--verbosity=1` (or 0) brings back the libraries' start-up and progress messages.
`--help` lists the arguments; `parser` and `parse` give bench.predict and
bench.overhead the same --config, overrides and --verbosity.
"""

import argparse
import contextlib
import os
import signal
import sys

from bench.core import distributed
from bench.core import logs
from bench.core.errors import ArgumentParser, UserError, fail
import configs

# Only what parsing the arguments and reading the config need is imported above: a
# mistake in either, and --help, answer in well under a second. jax, flax and the
# rest come with bench.runner, imported once the arguments are good (main below).

_OVERRIDES = """config overrides (after --config's file is read, in the order given):
  --config.FIELD=VALUE             FIELD for every case that does not set it itself (a
                                   case's own field takes precedence); an override that no
                                   case reads is an error
  --config.cases.CASE.FIELD=VALUE  one case's FIELD
  VALUE is typed as the field it replaces: strings as given, True/False, numbers, and
  Python literals for tuples, lists and dicts (model_kwargs is replaced whole:
  --config.model_kwargs="{'alpha': 0.5}"). Every field, with its default: configs/base.py."""


def parser(prog, description):
  """An ArgumentParser with --config (a shipped config's name or a file: configs.resolve)
  and --verbosity; `parse` reads the --config.FIELD=VALUE overrides besides."""
  result = ArgumentParser(prog=prog, description=description, epilog=_OVERRIDES,
                          formatter_class=argparse.RawDescriptionHelpFormatter)
  result.add_argument('--config', metavar='NAME_OR_FILE',
                      help='a shipped config (quickstart, model_zoo, ...) or a config file; '
                      'a local file of that path wins')
  logs.add_verbosity(result)
  return result


def parse(arguments, argv):
  """The arguments `argv` gives `arguments` (a `parser`), with `config` the loaded
  ConfigDict (its overrides applied: configs.load) and `config_file` its file; every
  mistake one line and exit 2."""
  rest, overrides = configs.split(argv)
  args = arguments.parse_args(rest)
  if args.config is None:
    fail('missing --config; pass --config=configs/quickstart.py or another file in configs/')
  try:
    args.config_file, args.config = configs.load(args.config, overrides)
  except UserError as e:
    fail(e)
  return args


def interrupted(signum, message):
  """Ends the program for a signal: its line, and the shell's code for "ended by this
  signal", 128 + its number (not a failure of the program)."""
  print(f'interrupted: {message}', file=sys.stderr)
  sys.exit(128 + signum)


@contextlib.contextmanager
def _signals_recorded():
  """SIGINT and SIGTERM during the block are recorded (the list it yields) and raise
  KeyboardInterrupt: the imports stop at once, and a library that swallows the
  exception while it imports (a bare `except:` around an optional import) cannot make
  the run go on as if nothing was asked. The previous handlers are restored after."""
  received = []

  def record(signum, frame):
    del frame
    received.append(signum)
    raise KeyboardInterrupt

  previous = {s: signal.signal(s, record) for s in (signal.SIGINT, signal.SIGTERM)}
  try:
    yield received
  finally:
    for s, handler in previous.items():
      signal.signal(s, handler)


def _arguments(argv):
  arguments = parser('bench.main', __doc__.split('\n', 1)[0])
  arguments.add_argument('--workdir', help='directory for report.json, report.md and '
                         'report.csv; a rerun on the same workdir continues the run there')
  arguments.add_argument('--history', help='the results history a finished run is recorded '
                         'in (flax-bench history): default $FLAX_BENCH_HISTORY or '
                         '~/.cache/flax-bench/history.db; "off" records nothing')
  arguments.add_argument('--kernels', help='the kernel database whose predictors predict '
                         "each case's step from its kernels (report.md, \"What predicts step "
                         'time"), where it has kernels sampled on this machine: default '
                         '$FLAX_BENCH_KERNELS or ~/.cache/flax-bench/kernels.db; "off" '
                         'predicts nothing')
  arguments.add_argument('--restart', action='store_true', help='delete the outputs of an '
                         'earlier run in --workdir and start over')
  # Multi-host runs (bench/core/distributed.py): one process per host (or per GPU), all with
  # the same arguments but --process_id, sharing --workdir.
  arguments.add_argument('--distributed', choices=('auto', 'on', 'off'), default='auto',
                         help='start jax.distributed: auto = when a coordinator address is '
                         'given or a Slurm/Open MPI launch of several processes is detected; '
                         'on = always (jax detects the cluster); off')
  arguments.add_argument('--coordinator_address', metavar='HOST:PORT',
                         help="process 0's coordinator service (default: "
                         f'${distributed.ENV["coordinator_address"]})')
  arguments.add_argument('--num_processes', type=int, help='number of processes (default: '
                         f'${distributed.ENV["num_processes"]})')
  arguments.add_argument('--process_id', type=int, help="this process's index, 0 to "
                         f'num_processes - 1 (default: ${distributed.ENV["process_id"]})')
  args = parse(arguments, argv)
  if not args.workdir:
    fail('missing --workdir; pass --workdir=DIR, where the report will be written')
  return args


def main(argv=None):
  """`python -m bench.main ARGS`: runs the config's suite; exit 0, 1 when a case failed,
  2 for a user error, 128 + N for signal N (module docstring)."""
  args = _arguments(sys.argv[1:] if argv is None else argv)
  logs.configure(args.verbosity)
  with _signals_recorded() as received:
    try:
      # pylint: disable=import-outside-toplevel  (seconds of imports: see the top)
      from bench.core import interrupt
      from bench.core import parallel
      from bench.run import history
      from bench.run import runner
    except KeyboardInterrupt:
      pass  # recorded: said below
  if received:  # before run_suite's handlers are set: nothing written
    name = signal.Signals(received[0]).name
    interrupted(received[0], f'by {name} before the run started; nothing was written')
  try:
    distributed.initialize(args.distributed, args.coordinator_address, args.num_processes,
                           args.process_id)
    # One process records: the one that writes the report.
    recording = history.check(args.history) if parallel.is_primary() else None
    report = runner.run_suite(args.config, args.workdir, config_file=args.config_file,
                              restart=args.restart, kernel_db=args.kernels)
    if recording and report['suite']['status'] in ('complete', 'failed'):
      history.record_finished(recording, report, source=os.path.abspath(
          os.path.join(args.workdir, 'report.json')))
    failed = [case['name'] for case in report['cases'] if case['status'] == 'failed']
    if failed:
      print(f'failed: {len(failed)} of {len(report["cases"])} cases ({", ".join(failed)}); '
            f'their errors are in {os.path.join(args.workdir, "report.md")}', file=sys.stderr)
      return 1
  except UserError as e:
    fail(e)
  except interrupt.Interrupted as e:
    interrupted(e.signum, e)


if __name__ == '__main__':
  sys.exit(main())
