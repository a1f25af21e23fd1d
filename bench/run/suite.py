"""A config describes a suite of cases; this module expands and validates it.

A case is the base config (every field but the suite's: SUITE_FIELDS) with
the case's own fields laid over it. A command-line override changes the base,
so it reaches every case that does not set that field itself; a single case is
overridden through its path (`--config.cases.NAME.FIELD=...`).

Validation happens before anything is created on disk, and every problem is a
UserError naming the field and what would be accepted.
"""

import collections

from absl import logging
import jax
import ml_collections

from bench.core import parallel
from bench.core.errors import UserError
from bench.measure import timer
from bench.results import schema as report
from bench.train import training
from bench.workload import optimizers
from bench.workload import pretrained
from bench.workload import steps
from bench.workload import transfer
from input_pipeline import options
import models

# 'compile' lowers and compiles the train step and the forward pass without running
# them: parameters, XLA costs and memory of models too slow to time here. 'input'
# times the input pipeline alone, without a model: examples/s delivered to the devices.
# 'train' is a whole training run: epochs with an exact evaluation after each
# (bench/train/training.py).
BENCHMARKS = ('train_step', 'eval_step', 'forward', 'compile', 'input', 'train')
# Benchmarks whose timed step can be profiled (bench/profile/trace.py).
PROFILED = ('train_step', 'eval_step', 'forward')
DTYPES = ('float32', 'bfloat16', 'float16')
# Fields of the suite itself, not of a case.
SUITE_FIELDS = ('name', 'notes', 'cases', 'select', 'ratios', 'scaling', 'compile_cache')


def _int_at_least(minimum):
  def check(value):
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
      return f'must be an integer >= {minimum}'
    return None
  return check


def _one_of(choices):
  """`choices` is a sequence, or a function returning one when the set can grow (models)."""
  def check(value):
    allowed = choices() if callable(choices) else choices
    if value not in allowed:
      return f'must be one of {", ".join(allowed)}'
    return None
  return check


def _positive_number(value):
  if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
    return 'must be a number > 0'
  return None


def _non_negative_number(value):
  if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
    return 'must be a number >= 0'
  return None


def _image_shape(value):
  if (not isinstance(value, (tuple, list)) or len(value) != 3
      or any(isinstance(d, bool) or not isinstance(d, int) or d < 1 for d in value)):
    return 'must be three positive integers (height, width, channels)'
  return None


def _text(value):
  return None if isinstance(value, str) else 'must be a string'


def _init_from(value):
  if not isinstance(value, str):
    return 'must be a string'
  if value:
    # Its form only: the file is checked with the data (runner.check_cases), so that a
    # missing file and a missing dataset are reported together.
    pretrained.parse(value, exists=False)
  return None


def _boolean(value):
  return None if isinstance(value, bool) else 'must be True or False'


def _dataset(value):
  options.parse_dataset(value)  # a UserError naming the known datasets
  return None


def _mapping(value):
  return None if isinstance(value, (dict, ml_collections.ConfigDict)) else 'must be a mapping'


# Every case field and its check; a field not listed here is unknown.
CASE_FIELDS = {
    'model': _one_of(models.names),
    'model_kwargs': _mapping,
    'pool_impl': _one_of(models.POOL_IMPLS),
    'dataset': _dataset,
    'data_dir': _text,
    'download': _boolean,
    'train_split': _text,
    'eval_split': _text,
    'image_shape': _image_shape,
    'num_classes': _int_at_least(0),
    'batch_size': _int_at_least(1),
    'parallel': _one_of(parallel.STRATEGIES),
    'num_devices': _int_at_least(0),
    'resize': _one_of(options.RESIZE_MODES),
    'augment': _one_of(options.AUGMENTATIONS),
    'normalization': _one_of(('auto',) + options.NORMALIZATIONS),
    'shuffle_buffer': _int_at_least(1),
    'prefetch': _int_at_least(1),
    'data_threads': _int_at_least(0),
    'device_normalize': _boolean,
    'dtype': _one_of(DTYPES),
    'optimizer': _one_of(tuple(optimizers.OPTIMIZERS)),
    'learning_rate': _positive_number,
    'momentum': _non_negative_number,
    'nesterov': _boolean,
    'weight_decay': _non_negative_number,
    'schedule': _one_of(optimizers.SCHEDULES),
    'lr_warmup_steps': _int_at_least(0),
    'lr_step_every': _int_at_least(1),
    'lr_step_factor': _positive_number,
    'grad_clip_norm': _non_negative_number,
    'loss': _one_of(tuple(steps.LOSSES)),
    'transfer': _one_of(transfer.MODES),
    'finetune_blocks': _int_at_least(0),
    'finetune_from': _text,
    'cache_features': _one_of(training.CACHE_MODES),
    'epochs': _int_at_least(1),
    'steps_per_epoch': _int_at_least(0),
    'drop_remainder': _boolean,
    'early_stop_metric': _one_of(('',) + training.MONITORED),
    'early_stop_mode': _one_of(('auto', 'min', 'max')),
    'early_stop_patience': _int_at_least(0),
    'early_stop_min_delta': _non_negative_number,
    'restore_best': _boolean,
    'checkpoint': _boolean,
    'checkpoint_every_steps': _int_at_least(0),
    'checkpoint_every_epochs': _int_at_least(0),
    'checkpoint_keep': _int_at_least(1),
    'checkpoint_async': _boolean,
    'benchmark': _one_of(BENCHMARKS),
    'warmup_steps': _int_at_least(1),
    'timed_steps': _int_at_least(1),
    'sync': _one_of(timer.SYNC_MODES),
    'profile': _boolean,
    'profile_steps': _int_at_least(1),
    'num_batches': _int_at_least(1),
    'seed': _int_at_least(0),
    'init_from': _init_from,
    'description': _text,
}


def _plain(value):
  return value.to_dict() if isinstance(value, ml_collections.ConfigDict) else value


# scaling: [(case name, the config case it scales, mode, devices)] of a scaling study.
Suite = collections.namedtuple('Suite', 'name notes cases ratios scaling')


def expand(config):
  """The validated Suite of `config`: its name, the selected [(case name, case ConfigDict)],
  the (numerator, denominator) case pairs of `config.ratios` among them, and the
  runs of a scaling study.

  A config without `cases` is a suite of one case named after `config.name`.
  With `scaling.modes`, each case becomes one run per mode and device count,
  named CASE.weakN / CASE.strongN (and these are the names `select` and `ratios`
  use).
  """
  unknown = sorted(set(config.keys()) - set(CASE_FIELDS) - set(SUITE_FIELDS))
  if unknown:
    raise UserError(f'unknown config field {unknown[0]!r}; known fields: '
                    f'{", ".join(sorted(CASE_FIELDS) + list(SUITE_FIELDS))}')
  missing = sorted(set(CASE_FIELDS) - set(config.keys()) - {'description'})
  if missing:
    raise UserError(f'config field {missing[0]!r} is missing; start from configs/base.py '
                    'get_config(), which sets every field')
  base = {k: _plain(v) for k, v in config.items() if k not in SUITE_FIELDS}
  overrides = config.get('cases') or {}
  if not overrides:
    overrides = {config.get('name', 'default'): {}}

  modes, counts, chosen = _scaling(config.get('scaling'))
  cases, scaling = [], []
  for name, fields in overrides.items():
    fields = _plain(fields) or {}
    for field in fields:
      if field not in CASE_FIELDS:
        raise UserError(f'case {name!r} sets unknown field {field!r}; '
                        f'case fields: {", ".join(sorted(CASE_FIELDS))}')
    runs = [(name, fields)]
    if modes:
      batch = {**base, **fields}['batch_size']
      runs = []
      for mode in modes:
        for n in counts:
          if mode == 'strong' and batch % n and not chosen:
            # The default counts end with all devices (6, say), which a power-of-two
            # batch may not divide; counts the user chose are checked as given.
            logging.warning('case %s: strong scaling skips %d devices (batch_size %d does not '
                            'split over them)', name, n, batch)
            continue
          # Weak scaling keeps the case's batch per device, strong its global batch.
          runs.append((f'{name}.{mode}{n}', {**fields, 'num_devices': n,
                                            'batch_size': batch * n if mode == 'weak' else batch}))
          scaling.append((f'{name}.{mode}{n}', name, mode, n))
    for run, run_fields in runs:
      case = ml_collections.ConfigDict({**base, **run_fields})
      validate_case(run, case)
      case.normalization = _normalization(case)
      cases.append((run, case))

  names = [name for name, _ in cases]
  selected = [s for s in (config.get('select') or '').split(',') if s]
  for name in selected:
    if name not in names:
      raise UserError(f'--config.select names case {name!r}, which the config does not '
                      f'define; cases: {", ".join(names)}')
  if selected:
    cases = [(name, case) for name, case in cases if name in selected]

  ratios = []
  for pair in config.get('ratios') or ():
    if (not isinstance(pair, (tuple, list)) or len(pair) != 2
        or any(name not in names for name in pair)):
      raise UserError(f'config.ratios entry {pair!r} must be a pair of case names '
                      f'from: {", ".join(names)}')
    if all(name in selected for name in pair) or not selected:
      ratios.append(tuple(pair))
  return Suite(config.get('name', 'default'), config.get('notes', ''), cases, ratios, scaling)


def _scaling(spec):
  """(modes, device counts, whether the config chose the counts) of a config's
  `scaling` field; no modes: no study. The counts default to 1, 2, 4, ... devices
  per process, and all of them."""
  spec = _plain(spec) or {}
  unknown = sorted(set(spec) - {'modes', 'device_counts'})
  if unknown:
    raise UserError(f'config field scaling has unknown key {unknown[0]!r}; it takes modes '
                    "(weak, strong) and device_counts, e.g. scaling.modes=('weak', 'strong')")
  modes = tuple(spec.get('modes') or ())
  for mode in modes:
    if mode not in report.SCALING_MODES:
      raise UserError(f'scaling.modes entry {mode!r} must be one of '
                      f'{", ".join(report.SCALING_MODES)}')
  counts = tuple(spec.get('device_counts') or ())
  chosen = bool(counts)
  if len(set(counts)) != len(counts):
    raise UserError(f'scaling.device_counts {counts} repeats a count; give each once')
  if not counts:
    local, processes = jax.local_device_count(), jax.process_count()
    counts = tuple(processes * 2 ** k for k in range(local.bit_length()))  # 2**k <= local
    counts += (jax.device_count(),) if counts[-1] != jax.device_count() else ()
  for n in counts:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
      raise UserError(f'scaling.device_counts entry {n!r} must be an integer >= 1')
  return modes, counts, chosen


def validate_case(name, case):
  """Raises UserError for the first invalid field of case `name`."""
  for field, check in CASE_FIELDS.items():
    if field not in case:
      continue
    problem = check(case[field])
    if problem:
      raise UserError(f'case {name!r}: config field {field!r} = {case[field]!r} {problem}')
  allowed = models.kwarg_names(case.model)
  for key in case.model_kwargs:
    if key not in allowed:
      raise UserError(f'case {name!r}: model {case.model!r} has no kwarg {key!r} in '
                      f'model_kwargs; it accepts: {", ".join(allowed)}')
  problem = models.kwarg_problem(case.model, _plain(case.model_kwargs))
  if problem:
    raise UserError(f'case {name!r}: model_kwargs of {case.model!r}: {problem}')
  if case.model_kwargs.get('include_top', True) is False and case.benchmark != 'forward':
    raise UserError(f'case {name!r}: include_top=False makes {case.model!r} return features, '
                    f'not logits, so benchmark {case.benchmark!r} has no loss; use '
                    "benchmark='forward' or give the model a top")
  if case.profile and case.benchmark not in PROFILED:
    raise UserError(f'case {name!r}: profile=True traces extra timed steps, and benchmark '
                    f'{case.benchmark!r} has none; profile a {", ".join(PROFILED)} case, or '
                    'set profile=False')
  _validate_data(name, case)
  _validate_training(name, case)
  problem = parallel.check(case.num_devices, case.batch_size)
  if problem:
    raise UserError(f'case {name!r}: {problem}')


def _normalization(case):
  """The case's normalization, 'auto' resolved to the model's."""
  if case.normalization == 'auto':
    return models.normalization(case.model)
  return case.normalization


def _validate_training(name, case):
  """The training fields that depend on each other."""
  if case.transfer == 'finetune' and bool(case.finetune_blocks) == bool(case.finetune_from):
    raise UserError(f"case {name!r}: transfer 'finetune' needs exactly one of finetune_blocks "
                    '(train the last N blocks) or finetune_from (train from this layer on); got '
                    f'finetune_blocks={case.finetune_blocks}, '
                    f'finetune_from={case.finetune_from!r}')
  if case.cache_features != 'none':
    if case.benchmark != 'train' or case.transfer != 'feature_extract':
      raise UserError(f'case {name!r}: cache_features={case.cache_features!r} needs '
                      "benchmark='train' and transfer='feature_extract' (only a frozen backbone's "
                      'features can be computed once)')
    if case.augment != 'none' or case.dataset == 'synthetic':
      raise UserError(f'case {name!r}: cache_features={case.cache_features!r} needs a real '
                      "dataset and augment='none': augmented images give new features every "
                      'epoch')
  if case.benchmark != 'train':
    return
  if case.dataset == 'synthetic' and not case.steps_per_epoch:
    raise UserError(f"case {name!r}: benchmark 'train' on synthetic data needs "
                    'steps_per_epoch >= 1 (synthetic data has no epoch of its own)')
  if case.restore_best and not (case.checkpoint and case.early_stop_metric):
    raise UserError(f'case {name!r}: restore_best needs checkpoint=True and an '
                    'early_stop_metric: the best epoch is the early-stopping one, reloaded from '
                    'its checkpoint')
  if case.early_stop_metric.startswith('eval_') and not case.eval_split:
    raise UserError(f'case {name!r}: early_stop_metric={case.early_stop_metric!r} needs an '
                    "eval_split to evaluate on, e.g. --config.eval_split='train[85%:]'")


def _validate_data(name, case):
  """The dataset fields that depend on each other (the data itself is checked when opened)."""
  if case.dataset == 'synthetic':
    if case.num_classes < 1:
      raise UserError(f'case {name!r}: synthetic data needs num_classes >= 1 (0 means "the '
                      "dataset's\", and synthetic data has none)")
    if case.eval_split:
      raise UserError(f'case {name!r}: eval_split={case.eval_split!r} needs a real dataset; '
                      "synthetic data has no splits: set --config.dataset or eval_split=''")
    if case.benchmark == 'input':
      raise UserError(f"case {name!r}: benchmark 'input' times an input pipeline, and "
                      'synthetic batches have none; set --config.dataset to a real dataset')
    return
  channels = case.image_shape[2]
  if channels not in (1, 3):
    raise UserError(f'case {name!r}: image_shape {tuple(case.image_shape)} has {channels} '
                    'channels; images decode to 1 (grayscale) or 3 (RGB)')
  normalization = _normalization(case)
  if channels != 3 and normalization in options.RGB_ONLY:
    raise UserError(f'case {name!r}: normalization {normalization!r} is defined for RGB '
                    f'images; with {channels} channel set normalization to tf or unit')
