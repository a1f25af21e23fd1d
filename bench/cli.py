"""The `flax-bench` command: one entry point for every tool, `python -m bench.*` kept.

  flax-bench run --config=quickstart --workdir=DIR     (python -m bench.main)
  flax-bench compare BASE.json NEW.json               (python -m bench.compare)
  flax-bench SUBCOMMAND --help                        that tool's own flags

Each subcommand is its module's `main(argv)`, as `python -m` runs it (same
arguments, same exit statuses); `flax-bench --help` lists them, the shipped
configs and the models, importing nothing heavier than the model registry.
"""

import importlib
import os
import sys
import textwrap

import configs

# Subcommand -> (module, what it does).
SUBCOMMANDS = {
    'run': ('bench.main', 'run a config: time, cost and report its cases'),
    'compare': ('bench.compare', 'diff two reports: deterministic figures exactly, timings '
                'machine-aware'),
    'ab': ('bench.ab', 'timing A/B of two git revisions, interleaved on this machine'),
    'analysis': ('bench.analysis', 'does parameter count predict step time? (a report)'),
    'predict': ('bench.predict', "step times from a compile: each case's kernels predicted "
                'by predictors learned from sampled kernels'),
    'history': ('bench.history', 'the results history: runs by commit and machine, trends, '
                'where a figure moved'),
    'peer': ('bench.peer', "each case's train step against its Keras twin's (the same "
             'model, batch and optimizer), interleaved in fresh processes'),
    'kernels': ('bench.kernels', 'the kernel database: random kernels sampled for the '
                "predictors, a config's kernels measured alone, listed, exported"),
    'visualize': ('bench.visualize', 'what a trained model sees: predictions, saliency'),
    'convert-keras': ('bench.convert_keras', 'Keras .h5 weights to an orbax checkpoint'),
    'overhead': ('bench.overhead', "the harness's own overhead against a bare loop"),
    'gpu-check': ('bench.gpu_check', 'ResNet-50 throughput, MFU and scaling on a GPU machine'),
}


def usage():
  """The text of `flax-bench --help`."""
  import models  # pylint: disable=import-outside-toplevel  (only for the list)
  width = max(map(len, SUBCOMMANDS))
  lines = ['usage: flax-bench SUBCOMMAND [flags]   (flax-bench SUBCOMMAND --help for its '
           'flags)', '', 'subcommands:']
  lines += [f'  {name:<{width}}  {text}' for name, (_, text) in SUBCOMMANDS.items()]
  listed = lambda names: textwrap.fill(', '.join(names), 88, initial_indent='  ',
                                       subsequent_indent='  ')
  lines += ['', 'configs (--config=NAME; a local file of that path wins):',
            listed(configs.shipped()), '', 'models (--config.model=NAME):',
            listed(models.names()), '',
            f'Every config field, with its default: {os.path.join(configs.DIRECTORY, "base.py")}',
            'What each field means: docs/configuration.md; the workdir and the report schema: '
            'docs/report.md (in the repository).']
  return '\n'.join(lines) + '\n'


def main(argv=None):
  argv = sys.argv[1:] if argv is None else argv
  if not argv or argv[0] in ('-h', '--help', 'help'):
    sys.stdout.write(usage())
    return 0
  if argv[0] not in SUBCOMMANDS:
    print(f'error: unknown subcommand {argv[0]!r}; one of: {", ".join(SUBCOMMANDS)} '
          '(flax-bench --help)', file=sys.stderr)
    return 2
  # Every command line is a main(argv) without global state: the module's own entry point.
  return importlib.import_module(SUBCOMMANDS[argv[0]][0]).main(argv[1:]) or 0


if __name__ == '__main__':
  sys.exit(main())
