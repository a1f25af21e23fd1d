"""Command line: python -m bench.main --config=configs/quickstart.py --workdir=DIR.

Thin on purpose: flags in, one call to bench.run.runner.run_suite. Everything else
lives in importable modules that tests and notebooks call directly. A mistake
the user can fix ends with one line on stderr and exit status 2.

The log shows the suite's own lines and every library's warnings (bench/core/logs.py);
`--verbosity=1` (or 0) brings back the libraries' start-up and progress messages.
"""

import os
import re
import sys

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from bench.core import distributed
from bench.core import logs
from bench.core.errors import UserError, fail
import configs

# Only what parsing the flags and reading the config need is imported above: a
# mistake in either, and --help, answer in well under a second. jax, flax and the
# rest come with bench.runner, imported once the flags are good (main below).

CONFIG = config_flags.DEFINE_config_file(
    'config', None, 'Benchmark config file (configs/*.py). Override any field with '
    '--config.FIELD=VALUE, one case\'s field with --config.cases.CASE.FIELD=VALUE.',
    lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None,
                               'Directory for report.json, report.md and report.csv. A rerun '
                               'on the same workdir continues the run there.')
_HISTORY = flags.DEFINE_string(
    'history', None, 'The results history a finished run is recorded in (flax-bench history): '
    'default $FLAX_BENCH_HISTORY or ~/.cache/flax-bench/history.db; "off" records nothing.')
_RESTART = flags.DEFINE_bool('restart', False,
                             'Delete the outputs of an earlier run in --workdir and start over.')
# Multi-host runs (bench/core/distributed.py): one process per host (or per GPU), all with the
# same flags but --process_id, sharing --workdir.
_DISTRIBUTED = flags.DEFINE_enum(
    'distributed', 'auto', ['auto', 'on', 'off'],
    'Start jax.distributed: auto = when a coordinator address is given or a Slurm/Open MPI '
    'launch of several processes is detected; on = always (jax detects the cluster); off.')
_COORDINATOR = flags.DEFINE_string(
    'coordinator_address', None, 'host:port of process 0\'s coordinator service (default: '
    f'${distributed.ENV["coordinator_address"]}).')
_NUM_PROCESSES = flags.DEFINE_integer(
    'num_processes', None, f'Number of processes (default: ${distributed.ENV["num_processes"]}).')
_PROCESS_ID = flags.DEFINE_integer(
    'process_id', None, f'This process\'s index, 0 to num_processes - 1 (default: '
    f'${distributed.ENV["process_id"]}).')


def _config_arg(argv):
  """(index in argv, file) of the --config flag absl keeps (the last one), without
  config_flags' ':argument' suffix; (None, None) without one."""
  found = None, None
  for i, arg in enumerate(argv):
    if arg.startswith('--config='):
      found = i, arg.split('=', 1)[1].split(':', 1)[0]
    elif arg == '--config' and i + 1 < len(argv):
      found = i + 1, argv[i + 1].split(':', 1)[0]
  return found


def _config_path(argv):
  """The file named by --config (without config_flags' ':argument' suffix), or None."""
  return _config_arg(argv)[1]


def _resolve_config(argv):
  """`argv` with --config naming the file it resolves to (configs.resolve: a local file,
  else a shipped config), or one line and exit 2 when it names neither."""
  index, path = _config_arg(argv)
  if path is None:
    return argv
  found = configs.resolve(path)
  if found is None:
    fail(f'config file {path!r} does not exist here and is not a shipped config; pass a path '
         f'or one of: {", ".join(configs.shipped())} (--config=quickstart)')
  if found == path:
    return argv
  prefix = '--config=' if argv[index].startswith('--config=') else ''
  argv = list(argv)
  argv[index] = prefix + found + argv[index][len(prefix) + len(path):]  # keeps ':argument'
  return argv


def parse_flags(argv):
  """absl flag parsing, with every parsing problem turned into one line and exit 2."""
  argv = _resolve_config(argv)
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    if 'Traceback (most recent call last)' in str(e):
      raise  # the config file itself raised: a bug, whose traceback the message carries
    fail(str(e).splitlines()[0])
  except (KeyError, AttributeError) as e:
    # config_flags raises these for an override of a field the config does not have.
    # The message quotes the field first, with escapes: "'\\'batch_sise\\'\\nDid you mean...".
    found = re.search(r'([A-Za-z_][A-Za-z0-9_]*)', str(e))
    field = found.group(1) if found else str(e)
    hint = re.search(r'Did you mean "([^"]+)"', str(e))
    override = next((a for a in argv if a.startswith('--config.') and field in a), '--config')
    if '.model_kwargs.' in override:
      # A config's model_kwargs has only the keys it sets; new ones come as a whole dict.
      fail(f'{override}: model_kwargs has no key {field!r} to override; give all of them at '
           f'once: --config.model_kwargs="{{\'{field}\': ...}}"')
    fail(f'unknown config field {field!r} in {override}'
          + (f'; did you mean {hint.group(1)!r}?' if hint else
             '; the fields a config has are documented in WORKSPACE.md'))


def main(argv):
  if len(argv) > 1:
    fail(f'unexpected arguments {" ".join(argv[1:])}; use --config=FILE --workdir=DIR')
  if CONFIG.value is None:
    fail('missing --config; pass --config=configs/quickstart.py or another file in configs/')
  if not _WORKDIR.value:
    fail('missing --workdir; pass --workdir=DIR, where the report will be written')
  logs.configure()
  # pylint: disable=import-outside-toplevel  (seconds of imports: see the top)
  from bench.measure import compile_cache
  from bench.core import interrupt
  from bench.core import parallel
  from bench.run import history
  from bench.run import runner
  try:
    distributed.initialize(_DISTRIBUTED.value, _COORDINATOR.value, _NUM_PROCESSES.value,
                           _PROCESS_ID.value)
    # One process records: the one that writes the report.
    recording = history.check(_HISTORY.value) if parallel.is_primary() else None
    # Before anything compiles: jax sets the cache up at the first compilation.
    compile_cache.configure(CONFIG.value.get('compile_cache', compile_cache.AUTO),
                            _WORKDIR.value)
    report = runner.run_suite(CONFIG.value, _WORKDIR.value,
                              config_file=configs.resolve(_config_path(sys.argv)),
                              restart=_RESTART.value)
    if recording and report['suite']['status'] == 'complete':
      history.record_finished(recording, report, source=os.path.abspath(
          os.path.join(_WORKDIR.value, 'report.json')))
  except UserError as e:
    fail(e)
  except interrupt.Interrupted as e:
    # Not a failure of the program: the shell's code for "ended by this signal".
    print(f'interrupted: {e}', file=sys.stderr)
    sys.exit(128 + e.signum)


if __name__ == '__main__':
  app.run(main, flags_parser=parse_flags)
