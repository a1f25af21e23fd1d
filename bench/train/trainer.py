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
  'batch_stats'} (a cached-feature trainer holds only the head)."""
  step: Callable
  state: object
  batches: object
  evaluate: Optional[Callable]
  variables: Callable


def image_trainer(case, mesh, record, data, steps_per_epoch, resume, epoch=None):
  """A Trainer over the case's images (or synthetic batches)."""
  step, state, batches, _ = build.build(case, mesh, record, data, steps_per_epoch, resume, epoch)
  evaluate = build.evaluator(case, data) if case.eval_split else None
  return Trainer(step, state, batches, evaluate,
                 lambda s: {'params': s.params, 'batch_stats': s.batch_stats})
