"""A kernel's time predicted from its fields: one learned predictor per kernel kind.

The kernel database holds kernels measured alone (bench/measure/kernel_bench.py),
each with the fields of bench/measure/kernels.py's Kernel. `fit(rows)` learns, per
kind, the seconds one execution takes from features those fields give (`features`:
no model, no run: the same fields a compiled program's kernels have), trying three
predictors and keeping the one with the least held-out error:

  * 'trees': gradient-boosted trees (scikit-learn's GradientBoostingRegressor)
    on log seconds: nn-Meter's per-kernel-type regressor;
  * 'roofline': the kernel's roofline, max(FLOPs / peak FLOP/s, bytes / peak bytes/s),
    divided by a utilisation the same trees predict (on log(seconds / roofline)):
    NeuSight's bounded form, which extrapolates with the kernel's size where the
    trees alone stay flat past the largest kernel they saw;
  * 'loglog': a least-squares line of log seconds on log FLOPs and log bytes over
    the whole kind: the baseline the other two must beat.

Held out means k-fold over distinct signatures (a kernel measured twice is in one
fold), so each error is of a kernel whose configuration the predictor never saw.
The interval of a prediction is the 10th to 90th percentile of the kept
predictor's held-out measured/predicted ratios. A kind with fewer than
MIN_SIGNATURES distinct kernels (or none) is predicted by the roofline over the
machine's median utilisation, with a FALLBACK_SPREAD-wide interval, and says so.

A Model pickles (plain dataclasses and scikit-learn estimators, bound to the
scikit-learn version that fitted them); refitting from the rows is as quick
(about 0.3 s per kind of 100 rows here) and is what a new version needs.
Plain data in, no jax.
"""

import dataclasses
import math
import pathlib

import numpy as np

from bench.measure import hlo

CANDIDATES = ('trees', 'roofline', 'loglog')
FOLDS = 5
# Distinct signatures a kind needs for a learned predictor: fewer leaves folds of
# one or two kernels, whose errors say nothing.
MIN_SIGNATURES = 6
# A fallback's interval: its roofline at the least, this many times its prediction
# at the most (the spread of utilisation across kinds here, 1% to 100%).
FALLBACK_SPREAD = 10.0
# A row measured faster than either bound did not run as timed, and is left out of
# every fit: under RESOLVED_S (a few dozen cycles: an execution of any kernel in a
# loop costs more, and 135 of 803 sampled reductions here came out at the 1e-14 s
# floor of an unresolved call), or more than UNPHYSICAL times faster than its
# roofline at the machine's measured peaks (reductions of 85-500 MB at 0 s: the
# compiler had moved them out of the loop). Kept, they set the peaks the rows
# reach at 400 TFLOP/s and the reductions' held-out 90th percentile at 378x.
RESOLVED_S = 1e-8
UNPHYSICAL = 10.0
# Cache sizes (L1 data, L2, L3 bytes) where the machine does not say (/sys).
DEFAULT_CACHES = (32 * 2**10, 1 * 2**20, 32 * 2**20)
_SYS_CACHE = pathlib.Path('/sys/devices/system/cpu/cpu0/cache')

# Every kernel's features (see `features` for why each).
GENERAL = ('log_flops', 'log_bytes', 'log_intensity', 'log_out_elements', 'log_largest_operand',
           'cache_level', 'fused_ops', 'transcendental_ops', 'operands', 'outputs')
# A kind's own, read from its module's deciding instruction.
OWN = {
    'convolution': ('batch', 'out_spatial', 'in_spatial', 'window', 'in_features', 'out_features',
                    'stride', 'groups', 'lhs_dilate', 'rhs_dilate', 'valid_taps', 'lhs_batch_at',
                    'rhs_output_at', 'out_features_at'),
    'dot': ('m', 'n', 'k', 'batch', 'lhs_k_minor', 'rhs_k_minor'),
    'reduce-window': ('window', 'stride', 'reduced_arrays'),
    'select-and-scatter': ('window', 'stride', 'reduced_arrays'),
    'scatter': ('updates',),
    'reduction': ('reduced_ratio', 'reduces_minor'),
    'transpose': ('rank', 'minor_moves'),
}
_DECIDING = {'reduction': 'reduce'}


def cache_sizes():
  """(L1 data, L2, L3) bytes of this machine's first CPU, DEFAULT_CACHES where unread."""
  sizes = dict(enumerate(DEFAULT_CACHES, start=1))
  for index in sorted(_SYS_CACHE.glob('index*')):
    try:
      level, kind, size = ((index / name).read_text().strip() for name in ('level', 'type', 'size'))
    except OSError:
      continue
    if kind != 'Instruction' and size.endswith('K'):
      sizes[int(level)] = int(size[:-1]) * 2**10
  return tuple(sizes[level] for level in (1, 2, 3))


def _log(x):
  return math.log10(1.0 + x)


def _instruction(module, opcode):
  return next(i for computation in module.computations.values() for i in computation
              if i.opcode == opcode)


def _dims(types, name):
  return hlo.arrays(types[name])[0][1]


def _convolution(module, types):
  conv = _instruction(module, 'convolution')
  lhs_labels, rest = hlo.attribute(conv, 'dim_labels').split('_')
  rhs_labels, out_labels = rest.split('->')
  lhs, rhs = _dims(types, conv.operands[0]), _dims(types, conv.operands[1])
  out = hlo.arrays(conv.type)[0][1]
  spatial = [c for c in out_labels if c.isdigit()]
  window = hlo.window(conv)
  return {'batch': out[out_labels.index('b')],
          'out_spatial': math.prod(out[out_labels.index(d)] for d in spatial),
          'in_spatial': math.prod(lhs[lhs_labels.index(d)] for d in spatial),
          'window': math.prod(rhs[rhs_labels.index(d)] for d in spatial),
          'in_features': rhs[rhs_labels.index('i')], 'out_features': out[out_labels.index('f')],
          'stride': math.prod(w['stride'] for w in window),
          'groups': int(hlo.attribute(conv, 'feature_group_count') or 1),
          'lhs_dilate': math.prod(w['lhs_dilate'] for w in window),
          'rhs_dilate': math.prod(w['rhs_dilate'] for w in window),
          'valid_taps': hlo.flops(module, conv, types) / max(
              2 * math.prod(out) * math.prod(rhs) / max(rhs[rhs_labels.index('o')], 1), 1),
          'lhs_batch_at': lhs_labels.index('b'), 'rhs_output_at': rhs_labels.index('o'),
          'out_features_at': out_labels.index('f')}


def _dot(module, types):
  dot = _instruction(module, 'dot')
  lhs, rhs = _dims(types, dot.operands[0]), _dims(types, dot.operands[1])
  dims = {key: hlo.dims_list(hlo.attribute(dot, key)) for key in (
      'lhs_contracting_dims', 'rhs_contracting_dims', 'lhs_batch_dims', 'rhs_batch_dims')}

  def free(shape, side):
    used = set(dims[f'{side}_contracting_dims']) | set(dims[f'{side}_batch_dims'])
    return math.prod(d for i, d in enumerate(shape) if i not in used)

  return {'m': free(lhs, 'lhs'), 'n': free(rhs, 'rhs'),
          'k': math.prod(lhs[d] for d in dims['lhs_contracting_dims']),
          'batch': math.prod(lhs[d] for d in dims['lhs_batch_dims']),
          'lhs_k_minor': int(len(lhs) - 1 in dims['lhs_contracting_dims']),
          'rhs_k_minor': int(len(rhs) - 1 in dims['rhs_contracting_dims'])}


def _windowed(opcode):
  def read(module, types):
    op = _instruction(module, opcode)
    window = hlo.window(op)
    return {'window': math.prod(w['size'] for w in window),
            'stride': math.prod(w['stride'] for w in window),
            'reduced_arrays': len(hlo.arrays(op.type))}
  return read


def _scatter(module, types):
  return {'updates': hlo.elements(types[_instruction(module, 'scatter').operands[-1]])}


def _reduction(module, types):
  reduce = _instruction(module, 'reduce')
  source = _dims(types, reduce.operands[0])
  reduced = hlo.dims_list(hlo.attribute(reduce, 'dimensions'))
  return {'reduced_ratio': math.prod(source) / max(hlo.elements(reduce.type), 1),
          'reduces_minor': int(len(source) - 1 in reduced)}


def _transpose(module, types):
  op = next((i for c in module.computations.values() for i in c if i.opcode == 'transpose'), None)
  order = hlo.dims_list(hlo.attribute(op, 'dimensions')) if op else []
  rank = len(hlo.arrays(op.type)[0][1]) if op else 0
  return {'rank': rank, 'minor_moves': int(bool(order) and order[-1] != rank - 1)}


_READERS = {'convolution': _convolution, 'dot': _dot, 'reduce-window': _windowed('reduce-window'),
            'select-and-scatter': _windowed('select-and-scatter'), 'scatter': _scatter,
            'reduction': _reduction, 'transpose': _transpose}


def features(fields, caches=DEFAULT_CACHES):
  """{name: value} of a kernel's fields (GENERAL, then OWN[kind]), each saying why:

    log_flops, log_bytes: the work a compute-bound and a memory-bound kernel do;
    log_intensity: FLOPs per byte, which side of the machine's ridge it is on;
    log_out_elements: the result's elements, the iterations of its loop nest (a
      transpose or fill does no FLOPs and still costs per element);
    log_largest_operand, cache_level: the largest array it reads and in which
      cache its whole working set fits (0: L1 ... 3: memory), where bandwidth steps;
    fused_ops, transcendental_ops: work per element the FLOPs miss (an exp or tanh
      counts nothing and costs tens of cycles); operands, outputs: streams read
      and written (an Adam update writes three);
  and a kind's own: a convolution's batch, output and input spatial positions,
  window taps, input features per group, output features, stride, groups, input
  dilation (an input-gradient) and kernel dilation (a kernel-gradient), the share
  of its taps that read an input element rather than padding (a 3x3 window over a
  2x2 input reads 4 of 9: measured here at 3.3 GFLOP/s against tens elsewhere), and
  where its batch, output-feature and kernel-output dimensions sit (its dimension
  labels: a forward pass, an input gradient and a kernel gradient differ there), which
  pick the library's algorithm; a dot's M, N, K, batch and whether each operand's
  contracted dimension is its minor one (a transposed operand reads strided); a
  pooling's window, stride and arrays reduced together (XLA:CPU's max-pool
  gradient reduces a value and four indices); a scatter's updates; a reduction's
  elements reduced per output and whether it reduces the minor dimension; a
  transpose's rank and whether the minor dimension moves."""
  flops, nbytes = float(fields['flops']), float(fields['bytes'])
  operand_bytes = [hlo.nbytes(t) for t in fields['parameters']] or [0]
  working = sum(operand_bytes) + hlo.nbytes(fields['result'])
  ops = list(fields['ops'])
  out = {'log_flops': _log(flops), 'log_bytes': _log(nbytes),
         'log_intensity': math.log10((flops + 1.0) / (nbytes + 1.0)),
         'log_out_elements': _log(hlo.elements(fields['result'])),
         'log_largest_operand': _log(max(operand_bytes)),
         'cache_level': sum(working > c for c in caches),
         'fused_ops': len(ops), 'transcendental_ops': sum(o in hlo.TRANSCENDENTAL_OPS for o in ops),
         'operands': len(fields['parameters']), 'outputs': len(hlo.arrays(fields['result']))}
  if fields['kind'] in _READERS:
    module = hlo.parse(fields['module'])
    out.update(_READERS[fields['kind']](module, hlo.types(module)))
  return out


def _vector(fields, caches):
  return list(features(fields, caches).values())


def roofline(fields, peaks):
  """Seconds of the kernel at the peaks (FLOP/s, bytes/s): the least it can take."""
  return max(float(fields['flops']) / peaks[0], float(fields['bytes']) / peaks[1], 1e-9)


def measured_peaks(rows):
  """(FLOP/s, bytes/s): the best float32 matmul and copy rates the rows' sessions
  probed (bench/measure/peaks.py); estimate_peaks where the rows carry none."""
  flops = [r['matmul_flops_per_s'] for r in rows if r.get('matmul_flops_per_s')]
  copy = [r['copy_bytes_per_s'] for r in rows if r.get('copy_bytes_per_s')]
  return (max(flops), max(copy)) if flops and copy else estimate_peaks(rows)


def resolved(rows, peaks):
  """The rows whose time is a kernel's that ran: at least RESOLVED_S, and no more than
  UNPHYSICAL times faster than its roofline at `peaks`."""
  return [r for r in rows if r['median_s'] >= RESOLVED_S
          and r['median_s'] * UNPHYSICAL >= roofline(r, peaks)]


def estimate_peaks(rows, quantile=95):
  """(FLOP/s, bytes/s) the rows reach: the `quantile` percentile of their achieved
  rates (not the largest, which one mistimed kernel decides)."""
  flop_rates = [r['flops'] / r['median_s'] for r in rows if r['flops'] > 0]
  byte_rates = [r['bytes'] / r['median_s'] for r in rows if r['bytes'] > 0]
  return (float(np.percentile(flop_rates, quantile)) if flop_rates else 1e9,
          float(np.percentile(byte_rates, quantile)) if byte_rates else 1e9)


def _trees():
  # Exact (not histogram) trees: a kind has tens to a few thousand rows, where
  # HistGradientBoostingRegressor gains nothing and its OpenMP threads spin: on
  # this shared 2-core machine at load 6, 0.6 s a fit single-threaded, 3.0 s with
  # its threads; predicting one row 1 ms here against its 8-15 ms.
  # Imported here, as below: scikit-learn (and scipy under it) takes 0.8 s to import,
  # and a run with no kernel database, or a fit kept in one, never fits.
  from sklearn.ensemble import GradientBoostingRegressor  # pylint: disable=import-outside-toplevel
  return GradientBoostingRegressor(n_estimators=150, learning_rate=0.1, max_depth=3,
                                   min_samples_leaf=3, random_state=0)


@dataclasses.dataclass
class _Fitted:
  """One candidate fitted: predict(X, base_log) -> log seconds."""
  candidate: str
  estimator: object

  def predict(self, x, base):
    if self.candidate == 'loglog':
      return np.c_[np.ones(len(x)), x[:, :2]] @ self.estimator
    return self.estimator.predict(x) + (base if self.candidate == 'roofline' else 0.0)


def _fit_candidate(candidate, x, y, base):
  if candidate == 'loglog':  # x's first two columns are log FLOPs and log bytes
    return _Fitted(candidate, np.linalg.lstsq(np.c_[np.ones(len(x)), x[:, :2]], y, rcond=None)[0])
  target = y - base if candidate == 'roofline' else y
  return _Fitted(candidate, _trees().fit(x, target))


def _summary(ratios):
  """n, median and 90th percentile fold error, within-1.2x share of measured/predicted ratios."""
  folds = np.exp(np.abs(np.log(ratios)))
  return {'n': len(ratios), 'median': float(np.median(folds)),
          'p90': float(np.percentile(folds, 90)), 'within_1_2': float(np.mean(folds <= 1.2))}


@dataclasses.dataclass
class KindModel:
  kind: str
  rows: int
  signatures: int
  chosen: str          # a CANDIDATE, or 'fallback'
  fitted: object       # _Fitted, None for a fallback
  interval: tuple      # (10th, 90th percentile) of held-out measured/predicted
  compared: dict       # candidate -> its held-out _summary
  note: str = ''


def _fit_kind(kind, rows, caches, peaks, folds):
  from sklearn.model_selection import GroupKFold  # pylint: disable=import-outside-toplevel
  x = np.array([_vector(r, caches) for r in rows], dtype=float)
  y = np.log([r['median_s'] for r in rows])
  base = np.log([roofline(r, peaks) for r in rows])
  groups = [r['key'] for r in rows]
  splits = list(GroupKFold(n_splits=min(folds, len(set(groups)))).split(x, y, groups))
  held_out, compared = {}, {}
  for candidate in CANDIDATES:
    predicted = np.empty(len(y))
    for train, test in splits:
      fitted = _fit_candidate(candidate, x[train], y[train], base[train])
      predicted[test] = fitted.predict(x[test], base[test])
    held_out[candidate] = np.exp(y - predicted)
    compared[candidate] = _summary(held_out[candidate])
  chosen = min(CANDIDATES, key=lambda c: (compared[c]['median'], compared[c]['p90']))
  ratios = held_out[chosen]
  return KindModel(kind, len(rows), len(set(groups)), chosen,
                   _fit_candidate(chosen, x, y, base),
                   (float(np.percentile(ratios, 10)), float(np.percentile(ratios, 90))), compared)


@dataclasses.dataclass
class Model:
  peaks: tuple         # (FLOP/s, bytes/s) of the rooflines
  caches: tuple        # (L1, L2, L3) bytes the features compare with
  utilisation: float   # median roofline/measured over every row: the fallback's
  kinds: dict          # kind -> KindModel

  def _kind(self, kind):
    if kind in self.kinds:
      return self.kinds[kind]
    return KindModel(kind, 0, 0, 'fallback', None, (1.0, 1.0), {}, 'no rows of this kind')

  def predict(self, fields):
    """(seconds, low, high) of one execution of the kernel of `fields` (a Kernel's
    fields: kind, module, flops, bytes, ops, parameters, result)."""
    return self.predict_all([fields])[0]

  def predict_all(self, kernels):
    """[(seconds, low, high)] of each kernel's fields, each kind's predictor called
    once (a call costs about a millisecond whatever its rows)."""
    out = [None] * len(kernels)
    by_kind = {}
    for i, fields in enumerate(kernels):
      by_kind.setdefault(fields['kind'], []).append(i)
    for kind, where in by_kind.items():
      model = self._kind(kind)
      bounds = np.array([roofline(kernels[i], self.peaks) for i in where])
      if model.fitted is None:
        seconds = bounds / self.utilisation
        low, high = np.minimum(bounds, seconds), seconds * FALLBACK_SPREAD
      else:
        x = np.array([_vector(kernels[i], self.caches) for i in where], dtype=float)
        seconds = np.exp(model.fitted.predict(x, np.log(bounds)))
        low, high = seconds * model.interval[0], seconds * model.interval[1]
      for i, s, lo, hi in zip(where, seconds, low, high):
        out[i] = (float(s), float(lo), float(hi))
    return out

  def errors(self):
    """{kind: {n, signatures, model, median, p90, within_1_2 (the kept predictor's
    held-out fold errors; None for a fallback), compared: {candidate: its errors},
    note}}."""
    out = {}
    for kind, model in self.kinds.items():
      kept = model.compared.get(model.chosen, {})
      out[kind] = {'n': model.rows, 'signatures': model.signatures, 'model': model.chosen,
                   'median': kept.get('median'), 'p90': kept.get('p90'),
                   'within_1_2': kept.get('within_1_2'), 'compared': model.compared,
                   'note': model.note}
    return out


def fit(rows, peaks=None, caches=None, folds=FOLDS):
  """The Model of `rows`: dicts of a Kernel's fields (kind, key, module, flops,
  bytes, ops, parameters, result) and 'median_s', the seconds of one execution
  measured alone. `peaks` (FLOP/s, bytes/s): the machine's peaks; by default those
  its sessions measured (measured_peaks). Only `resolved` rows are fitted.
  `caches`: cache_sizes() by default."""
  rows = [r for r in rows if r['median_s'] is not None and r['median_s'] > 0]
  peaks = tuple(peaks or measured_peaks(rows))
  rows = resolved(rows, peaks)
  caches = tuple(caches or cache_sizes())
  utilisation = (float(np.median([roofline(r, peaks) / r['median_s'] for r in rows]))
                 if rows else 1.0)
  by_kind = {}
  for row in rows:
    by_kind.setdefault(row['kind'], []).append(row)
  kinds = {}
  for kind, kind_rows in sorted(by_kind.items()):
    signatures = len({r['key'] for r in kind_rows})
    if signatures < MIN_SIGNATURES:
      kinds[kind] = KindModel(kind, len(kind_rows), signatures, 'fallback', None, (1.0, 1.0), {},
                              f'{signatures} distinct kernels, under {MIN_SIGNATURES}: '
                              f'the roofline at the median utilisation ({utilisation:.3g}), '
                              f'interval up to {FALLBACK_SPREAD:g}x')
    else:
      kinds[kind] = _fit_kind(kind, kind_rows, caches, peaks, folds)
  return Model(peaks, caches, utilisation, kinds)
