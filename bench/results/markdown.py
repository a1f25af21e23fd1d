"""report.md: the report's header, then each section's table (bench/results/tables.py)."""

import collections

from bench.results import analysis
from bench.results import memory_model
from bench.results import predictors
from bench.results import significance
from bench.results import tables
from bench.results.formatting import fmt, table, times


def _environment_line(env):
  versions = env['versions']
  commit = env['git_commit'][:10] if env['git_commit'] else 'no git'
  dirty = ' (dirty)' if env['git_dirty'] else ''
  harness = versions.get('flax_bench')
  return (f'flax-bench {harness or "(version unknown)"}, jax {versions["jax"]}, '
          f'flax {versions["flax"]}, optax {versions["optax"]} on '
          f'{env["backend"]} ({env["device_count"]} x {env["device_kind"]} in '
          f'{env["process_count"]} process{"es" if env["process_count"] > 1 else ""}; CPU: '
          f'{env["cpu_model"]}, {env["cpu_count"]} cores); commit {commit}{dirty}; '
          f'{env["hostname"]}, {env["timestamp_utc"]}')


def _unlike(a, b, t):
  """' Not like with like: ...' where cases `a` and `b` differ in what a step processes
  (analysis.work), with the time ratio `t` per example where only the batch differs."""
  work_a, work_b = analysis.work(a), analysis.work(b)
  if work_a == work_b:
    return ''
  names = ('batch', 'input', 'dtype', 'devices')
  differ = '; '.join(f'{name} {_shown(x)} against {_shown(y)}'
                     for name, x, y in zip(names, work_a, work_b) if x != y)
  text = (f' **Not like with like**: {differ}, so these ratios compare different work per '
          'step')
  if work_a[1:] == work_b[1:] and work_a[0] and work_b[0]:
    text += f'; per example, it takes {times(t * work_b[0] / work_a[0])} its time'
  return text + '.'


def _shown(value):
  if isinstance(value, tuple):
    return 'x'.join(map(str, value)) or 'n/a'
  return str(value)


def _verdict(row, by_name):
  p, f, t = row['params'], row['flops'], row['step_time']
  if None in (p, f, t):
    return f'- {row["numerator"]} vs {row["denominator"]}: not comparable (a case failed).'
  direction = ('points the wrong way' if (p - 1) * (t - 1) < 0
               else 'points the right way')
  return (f'- **{row["numerator"]}** has {times(p)} the parameters of '
          f'**{row["denominator"]}**, {times(f)} its XLA FLOPs, and takes {times(t)} its '
          f'time per step. Parameter count {direction}: the parameter ratio ({times(p)}) '
          f'misses the time ratio ({times(t)}) by a factor of {fmt(max(t / p, p / t))}, the '
          f'FLOPs ratio ({times(f)}) by {fmt(max(t / f, f / t))}.'
          + _unlike(by_name[row['numerator']], by_name[row['denominator']], t))


def absent(report):
  """Lines saying which analysis sections a report with timed cases lacks, and what each
  needs; none where it has them all (or no timed case, which they are about)."""
  if not analysis.points(report):
    return []
  lines = [line for line in (analysis.missing(report), predictors.missing(report),
                             memory_model.missing(report)) if line]
  return ['', '## Sections not in this report', ''] + [f'- {line}' for line in lines] if (
      lines) else []


def to_markdown(report, sections=()):
  lines = [f'# Benchmark report: {report["suite"]["name"]}', '',
           _environment_line(report['environment'])]
  if report['suite']['notes']:
    lines += ['', report['suite']['notes']]
  by_benchmark = collections.defaultdict(list)
  for case in report['cases']:
    by_benchmark[case['config'].get('benchmark')].append(case)
  compiled, inputs = by_benchmark.pop('compile', []), by_benchmark.pop('input', [])
  timed = [c for c in report['cases'] if c['config'].get('benchmark') in by_benchmark]
  evaluated = [c for c in report['cases'] if c['eval']['num_examples'] is not None]
  if timed:
    lines += [''] + tables.timed_table(timed)
    lines += ['', 'data wait: share of the timed step time the device idled waiting for its '
              'next batch. compile s "(cached)": read from the compilation cache, not compiled.']
    lines += significance.noise_note(timed)
    measured = [c for c in timed if c['utilization']['model_flops'] is not None
                and c['step_time_s']['median']]
    if measured:
      unknown = sorted({c['utilization']['peak_source'] for c in measured
                        if c['utilization']['peak_flops_per_s'] is None})
      lines += ['', '## Utilisation', '', 'Model FLOPs: the matrix products and convolutions '
                'the step asks for, over the global batch (analytic, from its jaxpr: no '
                'rematerialisation, no elementwise work). XLA FLOPs: what the compiled program '
                'runs on all devices, rematerialisation, elementwise work and the uint8 '
                'normalisation (its share apart) included, but not the multiply-adds that read '
                "padding, which the model FLOPs count: a 'same' convolution's border, and the "
                "zero border a convolution's input gradient reads (a 'full' convolution of the "
                "output's gradient), so a CNN's XLA FLOPs can fall below its model FLOPs. MFU = "
                "model FLOP/s over the devices' "
                'datasheet peak, HFU the same with XLA FLOPs; MFU of measured: against the '
                'matmul peak measured in this run.'
                + (f' No MFU: {"; ".join(unknown)}.' if unknown else ''), '']
      lines += tables.utilization_table(measured, report['environment']['peaks'])
  trained = [c for c in report['cases'] if c['training']['epochs_run'] is not None]
  if trained:
    lines += ['', '## Training', '', 'Per case: losses and accuracy over the epochs run (val = '
              'eval_split, exact), wall time in training steps and in evaluation, the data '
              'wait share of training time, the mean step time from the timer, and the '
              'feature cache build time. Curves: training_curves.png.', '']
    lines += tables.training_table(trained) + ['', 'Per epoch:', '']
    for case in trained:
      lines += tables.curves(case)
    lines += ['', '## Checkpoints', '', 'Saves of each training case: time training was '
              'blocked (copying the state off the devices, and waiting for the previous save) '
              'against the time until the save was on disk; the fingerprint (sha256 prefix) '
              'of the final weights and statistics.', ''] + tables.checkpoint_table(trained)
  if evaluated:
    lines += ['', '## Evaluation', '', 'Exact metrics over every example of the split, '
              'after the timed steps. trained here: what this run trained the weights for '
              '(none: initial or loaded weights); a train_step case is evaluated after its '
              'warm-up and timed steps only, a '
              'timing run rather than a training run, so its accuracy may be at chance (1 / '
              'classes, what guessing scores). 95% interval: the Wilson interval of the '
              'accuracy over this many examples; an accuracy whose interval holds chance is '
              'no evidence of learning. Nor is one below it evidence of anything: an untrained '
              "model that answers one class scores that class's share of the split, which on a "
              'small split can lie well below 1 / classes.', '']
    lines += tables.eval_table(evaluated)
  if inputs:
    lines += ['', '## Input pipeline only', '',
              'Batches delivered to the devices per second, no model.', '']
    lines += tables.input_table(inputs) + significance.noise_note(inputs)
  if compiled:
    lines += ['', '## Compile-only cases', '',
              'XLA cost and memory analyses of the compiled train step (the forward pass '
              'for fwd), at the batch shown; nothing was run.', ''] + tables.compile_table(compiled)
  failed = [case for case in report['cases'] if case['status'] == 'failed']
  if failed:
    lines += ['', '## Failed cases', '']
    lines += [f'- {case["name"]}: {case["error"]}' for case in failed]
  if report['scaling']:
    lines += ['', '## Scaling', '', 'Weak scaling keeps the batch per device, strong scaling '
              'the global batch. Speed-up: examples/s over the same mode on the fewest '
              'devices; efficiency: speed-up over the device ratio. Collective MB: results of '
              'the cross-device collectives in one device\'s compiled step. Plot: '
              'scaling.png.', ''] + tables.scaling_table(report['scaling'])
  profiled = [c for c in report['cases'] if c['profile']['steps'] is not None]
  if profiled:
    lines += tables.profiles(profiled, report['environment']['peaks'])
  if report['ratios']:
    lines += ['', '## Parameters vs FLOPs vs time', '']
    lines += table(('ratio', 'params', 'XLA FLOPs', 'bytes accessed', 'median step time',
                     'epoch time'),
                    [[f'{row["numerator"]} / {row["denominator"]}', times(row['params']),
                      times(row['flops']), times(row['bytes_accessed']),
                      times(row['step_time']), times(row['epoch_time'])]
                     for row in report['ratios']])
    lines.append('')
    by_name = {case['name']: case for case in report['cases']}
    lines += [_verdict(row, by_name) for row in report['ratios']]
  if sections:
    lines += [''] + list(sections)
  lines += absent(report)
  return '\n'.join(lines) + '\n'
