"""A case's model, state, batches and compiled step; and what building and timing measured.

Shared by the timed benchmarks (bench/run/runner.py) and training runs
(bench/train/training.py), so that a training epoch is measured exactly as a single
timed step is. What is measured comes back as values (Built, Timed, Metrics), which
bench/results/case_record.py `assemble` turns into the report's blocks.
"""

import dataclasses
import itertools
import math
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax

from bench.core import parallel
from bench.measure import costs
from bench.measure import peaks
from bench.measure import timer
from bench.workload import optimizers
from bench.workload import pretrained
from bench.workload import steps
from bench.workload import transfer
from input_pipeline import options
from input_pipeline import synthetic
import models

TRAINING = ('train_step', 'compile', 'train')


@dataclasses.dataclass(frozen=True)
class Compiled:
  """What compiling a step measured (`compile_into`): its lowering and compile times
  and cache use (timer.compile_timed), the costs (costs.xla_costs and costs.collectives)
  and memory analysis (costs.compiled_memory) of one device's program, the device and
  its datasheet peak in `dtype` (peaks.datasheet: FLOP/s or None, and why), and the
  step's model FLOPs over the global batch and its input normalisation's FLOPs."""
  lower_s: float
  compile_s: float
  cache: str
  costs: dict
  memory: dict
  device_kind: str
  dtype: str
  peak: tuple
  model_flops: float
  normalize_flops: int


@dataclasses.dataclass(frozen=True)
class Built:
  """What building a case measured: its parameters (costs.param_counts), one forward
  pass's activation bytes on one device's share of the batch, its timed step's
  compilation (None until compiled) and a compile case's forward program's costs (like
  Compiled.costs)."""
  params: dict
  activation_bytes: Optional[int] = None
  step: Optional[Compiled] = None
  forward_costs: Optional[dict] = None


@dataclasses.dataclass(frozen=True)
class Timed:
  """What a timed loop measured (`timed`): its step times and data waits summarised
  (timer.summarize, timer.summarize_waits), its wall time and the sum of its samples,
  the steps run before the clock started and timed, the global batch of a full step,
  and the examples all its timed steps saw."""
  step_time: dict
  data_wait: dict
  total_s: float
  samples_s: float
  warmup_steps: int
  timed_steps: int
  batch_size: int
  examples: int


@dataclasses.dataclass(frozen=True)
class Metrics:
  """A loss and accuracy (None where not finite); an evaluation's also its split, the
  examples evaluated and its wall time."""
  loss: Optional[float]
  accuracy: Optional[float]
  split: Optional[str] = None
  num_examples: Optional[int] = None
  wall_s: Optional[float] = None


def per_device_batch(case, mesh):
  """The examples of a global batch each device sees (parallel.check refuses a remainder)."""
  return case.batch_size // mesh.size


def model_of(case):
  # pool_impl reaches the models that have non-overlapping max pools to run either way.
  pooling = {'pool_impl': case.pool_impl} if 'pool_impl' in models.kwarg_names(case.model) else {}
  return models.create(case.model, num_classes=case.num_classes, dtype=jnp.dtype(case.dtype),
                       **{**pooling, **case.model_kwargs})


def total_steps(case, steps_per_epoch=None):
  """Optimizer steps the case runs (what a cosine schedule decays over)."""
  if case.benchmark == 'train':
    return case.epochs * steps_per_epoch
  return case.warmup_steps + case.timed_steps


def finite(value):
  value = float(value)
  return value if math.isfinite(value) else None


def program_costs(compiled):
  """Cost analysis and collectives of one device's program."""
  return {**costs.xla_costs(compiled), **costs.collectives(compiled)}


def batches(case, mesh, rng, data, start=0, epoch=None):
  """The endless iterator of device batches the timed steps read, from batch `start`
  on (a resumed training run continues where its checkpoint stopped); a training
  run's `epoch` (pipeline.Input.epoch) ends each pass over the data in a smaller batch."""
  if data is None or case.benchmark == 'compile':  # compiling needs only their shape
    num_batches = 1 if data else case.num_batches
    return itertools.islice(itertools.cycle(synthetic.make_batches(
        rng, num_batches=num_batches, batch_size=case.batch_size,
        image_shape=tuple(case.image_shape), num_classes=case.num_classes,
        sharding=parallel.batch_sharding(mesh),
        layout=lambda x: parallel.layout(case, mesh.size, x), uint8=case.device_normalize)),
        start % num_batches, None)
  return data.stream(case.train_split, training=case.benchmark in ('train_step', 'input', 'train'),
                     start=start, epoch=epoch)


def check_weights(case):
  """Reads the weights `case.init_from` names and matches them against the case's
  model, without building it: a UserError for any problem (bench/workload/pretrained.py),
  before the run writes anything."""
  if case.init_from:
    pretrained.check(case.init_from,
                     pretrained.variable_shapes(model_of(case), tuple(case.image_shape)))


def initial_state(case, mesh, model, tx, frozen, resume=None):
  """The case's TrainState, replicated over `mesh`: initialised, then loaded from
  `case.init_from` when it names weights.

  `resume(target)`, given the state's shapes and shardings (jax.eval_shape: nothing
  is allocated), returns a restored state or None; a restored state replaces both.
  """
  replicated = parallel.replicated(mesh)
  state_rng = jax.random.split(jax.random.key(case.seed))[0]
  init = steps.train_state_init(model, tx, tuple(case.image_shape), replicated, frozen)
  if resume is not None:
    target = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=replicated),
                          jax.eval_shape(init, state_rng))
    restored = resume(target)
    if restored is not None:
      return restored
  state = steps.run_once(init, state_rng)
  if case.init_from:
    variables = pretrained.load(case.init_from, jax.device_get(
        {'params': state.params, 'batch_stats': state.batch_stats}))
    state = steps.with_variables(state, tx, variables, replicated, frozen)
  return state


def count_params(state, frozen):
  """What trains, and what does not (frozen layers, statistics): costs.param_counts."""
  trainable, fixed = transfer.split(state.params, frozen)
  return costs.param_counts(trainable, (fixed, state.batch_stats))


def model_flops(case, mesh, fn, state, first):
  """Analytic FLOPs of one step over the global batch (costs.model_flops); a pmap
  step is traced for one device's share and counted on every device."""
  if parallel.axis_name(case):
    share = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape[1:], x.dtype), first)
    return mesh.size * costs.model_flops(fn, state, share,
                                         axis_env=[(parallel.AXIS, mesh.size)])
  return costs.model_flops(fn, state, first)


def compile_into(case, mesh, fn, state, first, donate, out_axes=None):
  """`fn` compiled with the case's strategy (bench/core/parallel.py) for the shapes of
  `state` and `first` (`state` donated or not): (the executable, its Compiled)."""
  compiled, lower_s, compile_s, cache = timer.compile_timed(
      parallel.function(case, mesh, fn, donate, out_axes), state, first)
  kind = mesh.devices.flat[0].device_kind
  images = first['image']
  normalize = (math.prod(images.shape) * options.NORMALIZE_FLOPS[case.normalization]
               if images.dtype == jnp.uint8 else 0)
  return compiled, Compiled(
      lower_s, compile_s, cache, program_costs(compiled), costs.compiled_memory(compiled), kind,
      case.dtype, peaks.datasheet(kind, case.dtype), model_flops(case, mesh, fn, state, first),
      normalize)


def batch_like(case, mesh, batch, examples):
  """A batch like `batch` (its layout, dtypes and sharding) that holds `examples`
  examples over all devices: `batch` itself when it does, else zeros. Real global
  arrays, not ShapeDtypeStructs: a pmap over several processes lowers only those."""
  def like(x):
    if parallel.axis_name(case):  # [devices, examples per device, ...]
      shape = (x.shape[0], examples // mesh.size, *x.shape[2:])
    else:
      shape = (examples, *x.shape[1:])
    if shape == x.shape:
      return x
    zeros = np.broadcast_to(np.zeros((), x.dtype), shape)  # a view: nothing allocated
    return jax.make_array_from_callback(shape, x.sharding, lambda index: zeros[index])
  return jax.tree.map(like, batch)


def with_last_batch(case, mesh, step, fn, state, full, epoch, donate):
  """`step` (compiled for `full`, a full batch), and for a training `epoch` that ends
  in a smaller batch a second program compiled for that batch (now: no compilation
  inside the timed steps), each batch run by the program of its shape."""
  rest = (epoch or (0, 0))[1]
  if not rest:
    return step
  last, *_ = timer.compile_timed(parallel.function(case, mesh, fn, donate), state,
                                 batch_like(case, mesh, full, rest * jax.process_count()))
  shape = jax.tree.leaves(full)[0].shape
  return lambda state, batch: (step if jax.tree.leaves(batch)[0].shape == shape else last)(
      state, batch)


def build(case, mesh, data=None, steps_per_epoch=None, resume=None, epoch=None,
          on_built=lambda built: None):
  """Model, state, batches and the compiled timed function of `case`, and what
  building them measured.

  Returns (step, state, batches, compiled, built) where
  `step(state, batch) -> (state, out)` calls the compiled function exactly once
  and `batches` is an endless iterator of device batches (from `data`, the
  case's pipeline.Input, or synthetic), `compiled` the executable `step`
  calls (its HLO names the ops of a profile) and `built` its Built (with the
  forward program's costs for a compile case). A training case's layers are frozen as
  its `transfer` mode says; `steps_per_epoch` sizes a train case's schedule.
  `resume` may restore the state (see `initial_state`); the batches then start
  after the state's last step. A training run's `epoch` (pipeline.Input.epoch)
  ending in a smaller batch compiles a second program for it (`with_last_batch`).
  `on_built(built)` hears the Built of the parameters and activations before the step
  compiles, so that a case whose compile fails (out of memory) still reports them.
  """
  model = model_of(case)
  training = case.benchmark in TRAINING
  frozen = transfer.frozen_layers(case, model, tuple(case.image_shape)) if training else frozenset()
  axis_name = parallel.axis_name(case)
  out_axes = None  # what a pmap step returns is averaged over the devices ...
  if training:
    tx = optimizers.create(case, total_steps(case, steps_per_epoch))
    fn = steps.make_train_step(model, tx, frozen, case.loss, axis_name, case.normalization)
  else:
    # Only a train step reads optimizer state: eval and forward cases do not hold
    # one in device memory (Adam's moments would double a large model's footprint).
    tx = optax.identity()
    if case.benchmark == 'eval_step':
      fn = steps.make_eval_step(model, case.loss, axis_name, case.normalization)
    else:  # ... but logits stay per device
      fn, out_axes = steps.make_forward(model, case.normalization), 0
  state = initial_state(case, mesh, model, tx, frozen, resume)
  params = count_params(state, frozen)
  variables = {'params': state.params, 'batch_stats': state.batch_stats}
  activations = costs.activation_bytes(
      model, {k: v for k, v in variables.items() if v},
      jax.ShapeDtypeStruct((per_device_batch(case, mesh), *case.image_shape), jnp.float32))
  built = Built(params, activations)
  on_built(built)
  # The data key is the second of the pair, as it always was for synthetic batches.
  batch_iter = batches(case, mesh, jax.random.split(jax.random.key(case.seed))[1], data,
                       start=int(state.step), epoch=epoch)
  # Compiled for the shapes of a full batch, from the first batch, which is then timed
  # first: no batch is lost. (A training run resumed just before an epoch's last
  # batch starts with that smaller batch.)
  first = next(batch_iter)
  batch_iter = itertools.chain([first], batch_iter)
  full = batch_like(case, mesh, first, case.batch_size)

  compiled, compilation = compile_into(case, mesh, fn, state, full, training, out_axes)
  forward_costs = None
  if case.benchmark == 'compile':
    forward, *_ = timer.compile_timed(
        parallel.function(case, mesh, steps.make_forward(model, case.normalization), False, 0),
        state, full)
    forward_costs = program_costs(forward)
  # A donating step returns the new state; the others leave it as it is.
  step = compiled if training else (lambda s, b: (s, compiled(s, b)))
  step = with_last_batch(case, mesh, step, fn, state, full, epoch, training)
  return (step, state, batch_iter, compiled,
          dataclasses.replace(built, step=compilation, forward_costs=forward_costs))


def evaluator(case, data, model=None):
  """`evaluate(state)` -> exact {'loss', 'accuracy', 'num_examples'} of `model` (the
  case's by default) over case.eval_split, compiled once."""
  eval_sums = jax.jit(steps.make_eval_sums(model or model_of(case), case.loss,
                                           case.normalization))

  def evaluate(state):
    batches, num_examples = data.evaluation(case.eval_split)
    return exact_metrics(eval_sums, state, batches, num_examples, case.eval_split)
  return evaluate


def exact_metrics(eval_sums, state, batches, num_examples, split):
  """steps.evaluate, checked to have counted exactly the split's `num_examples`."""
  metrics = steps.evaluate(eval_sums, state, batches)
  if metrics['num_examples'] != num_examples:
    raise RuntimeError(f'evaluated {metrics["num_examples"]} examples of {split!r}, '
                       f'which has {num_examples}')
  return metrics


def timed(case, samples, waits, total_s, warmup_steps, timed_steps, examples=None):
  """The Timed of a loop's timer samples and data waits (timer.time_steps) and wall
  time; `examples`: how many the samples' steps saw (default: a full batch each)."""
  return Timed(timer.summarize(samples), timer.summarize_waits(waits, samples), total_s,
               sum(samples), warmup_steps, timed_steps, case.batch_size,
               examples or case.batch_size * len(samples))
