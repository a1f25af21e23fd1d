"""What the epoch loop (bench/train/training.py) drives, and the trainer of a case's
images; bench/train/feature_cache.py makes the other kind, over cached features."""

import dataclasses
from typing import Callable, Optional

from bench.workload import build


@dataclasses.dataclass
class Trainer:
  """What the epoch loop drives: `step(state, batch) -> (state, metrics)` compiled,
  its state (restored from a checkpoint, or new) and endless batches from the
  state's step on, `evaluate(state)` -> {'loss', 'accuracy', 'num_examples'} (None
  without an eval split), and `variables(state)` -> the full model's {'params',
  'batch_stats'} (a cached-feature trainer holds only the head); what building it
  measured (build.Built) and, over cached features, the seconds and bytes of the cache."""
  step: Callable
  state: object
  batches: object
  evaluate: Optional[Callable]
  variables: Callable
  built: build.Built
  feature_cache_s: Optional[float] = None
  feature_cache_bytes: Optional[int] = None


def image_trainer(case, mesh, data, steps_per_epoch, resume, epoch=None,
                  on_built=lambda built: None):
  """A Trainer over the case's images (or synthetic batches); `on_built` as build.build's."""
  step, state, batches, _, built = build.build(case, mesh, data, steps_per_epoch, resume, epoch,
                                               on_built)
  evaluate = build.evaluator(case, data) if case.eval_split else None
  return Trainer(step, state, batches, evaluate,
                 lambda s: {'params': s.params, 'batch_stats': s.batch_stats}, built)
