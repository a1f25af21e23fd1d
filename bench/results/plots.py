"""Figures written next to the report (matplotlib, Agg: no display needed).

Figures are made with matplotlib's object API (no pyplot: no global figure state,
no backend to choose), imported on the first plot: a run that draws none never
pays for the import.
"""

import os

import numpy as np

from bench.core.fileio import atomic_open
from bench.profile import hlo_ops
from bench.results import predictors
from bench.results import fits

TRAINING_CURVES = 'training_curves.png'
SCALING = 'scaling.png'
PROXIES = 'proxies.png'
ROOFLINE = 'roofline.png'
AB = 'ab.png'
PROFILE = 'profile.png'
PREDICTED = 'predicted.png'
TREND = 'trend.png'


def _subplots(*grid, figsize):
  """(figure, axes) of a new figure with a `grid` of axes, as pyplot.subplots."""
  from matplotlib.figure import Figure  # pylint: disable=import-outside-toplevel
  fig = Figure(figsize=figsize)
  return fig, fig.subplots(*grid)


def _save(fig, workdir, name):
  path = os.path.join(workdir, name)
  with atomic_open(path, 'wb') as f:
    fig.savefig(f, format='png', dpi=100)
  return path


def training_curves(workdir, report):
  """WORKDIR/training_curves.png: train and val loss, and val accuracy, per epoch for
  every training case of `report`. Returns its path, or None without training cases."""
  cases = [c for c in report['cases'] if c['training']['history']]
  if not cases:
    return None
  fig, (loss_ax, acc_ax) = _subplots(1, 2, figsize=(12, 4.5))
  for i, case in enumerate(cases):
    history = case['training']['history']
    epochs = [row['epoch'] for row in history]
    color = f'C{i % 10}'
    loss_ax.plot(epochs, [row['train_loss'] for row in history], color=color, marker='.',
                 label=f'{case["name"]} train')
    if any(row['eval_loss'] is not None for row in history):
      loss_ax.plot(epochs, [row['eval_loss'] for row in history], color=color, linestyle='--',
                   label=f'{case["name"]} val')
      acc_ax.plot(epochs, [row['eval_accuracy'] for row in history], color=color, marker='.',
                  label=case['name'])
  loss_ax.set(xlabel='epoch', ylabel='loss', title='loss (solid: train, dashed: val)')
  acc_ax.set(xlabel='epoch', ylabel='accuracy', title='val accuracy')
  loss_ax.legend(fontsize='x-small', ncol=2)
  if acc_ax.lines:
    acc_ax.legend(fontsize='x-small', ncol=2)
  fig.tight_layout()
  return _save(fig, workdir, TRAINING_CURVES)


def scaling(workdir, report):
  """WORKDIR/scaling.png: examples/s and efficiency against device count, a line per
  scaled case and mode, with perfect scaling dotted. Returns its path, or None
  without a scaling study."""
  rows = [row for row in report['scaling'] if row['examples_per_s']]
  if not rows:
    return None
  fig, (rate_ax, eff_ax) = _subplots(1, 2, figsize=(12, 4.5))
  groups = sorted({(row['of'], row['mode']) for row in rows})
  for i, (of, mode) in enumerate(groups):
    group = sorted((r for r in rows if (r['of'], r['mode']) == (of, mode)),
                   key=lambda r: r['devices'])
    devices = [r['devices'] for r in group]
    color, label = f'C{i % 10}', f'{of} {mode}'
    rate_ax.plot(devices, [r['examples_per_s'] for r in group], color=color, marker='o',
                 label=label)
    base = group[0]
    rate_ax.plot(devices, [base['examples_per_s'] * d / base['devices'] for d in devices],
                 color=color, linestyle=':', linewidth=1)
    eff_ax.plot(devices, [r['efficiency'] * 100 for r in group], color=color, marker='o',
                label=label)
  eff_ax.axhline(100, color='gray', linestyle=':', linewidth=1)
  for ax in (rate_ax, eff_ax):
    ax.set_xscale('log', base=2)
    ax.set_xticks(sorted({row['devices'] for row in rows}),
                  [str(d) for d in sorted({row['devices'] for row in rows})])
    ax.legend(fontsize='small')
  rate_ax.set(xlabel='devices', ylabel='examples/s',
              title='throughput (dotted: perfect scaling)')
  eff_ax.set(xlabel='devices', ylabel='efficiency %', title='scaling efficiency', ylim=(0, None))
  fig.tight_layout()
  return _save(fig, workdir, SCALING)


def _label_points(ax, xs, ys, names):
  ax.scatter(xs, ys, s=18, zorder=3)
  for x, y, name in zip(xs, ys, names):
    ax.annotate(name, (x, y), fontsize=8, xytext=(4, 3), textcoords='offset points')
  ax.set_xscale('log')
  ax.set_yscale('log')
  from matplotlib import ticker  # pylint: disable=import-outside-toplevel
  # Plain numbers (20, 300), not 2 x 10^1: the unit is in the label.
  ax.yaxis.set_major_formatter(ticker.LogFormatter())
  ax.yaxis.set_minor_formatter(ticker.LogFormatter(minor_thresholds=(2, 0.4)))


def proxies(workdir, result):
  """WORKDIR/proxies.png (median step time against parameters, XLA FLOPs and bytes
  accessed, log-log, a labelled point per case) and WORKDIR/roofline.png (achieved
  FLOP/s against arithmetic intensity under the measured ceilings) from
  bench.results.analysis.analyze's `result`. Returns their paths."""
  fig, axes = _subplots(1, 3, figsize=(18, 5.5))
  for ax, (key, label) in zip(axes, (('params', 'parameters'), ('flops', 'XLA FLOPs per step'),
                                     ('bytes', 'XLA bytes accessed per step'))):
    cases = [c for c in result['cases'] if c[key]]
    xs, times = [c[key] for c in cases], [c['time'] for c in cases]
    _label_points(ax, xs, [t * 1e3 for t in times], [c['name'] for c in cases])
    row = next(r for r in result['proxies'] if r['proxy'] == key)
    r2 = 'n/a' if row['r2_log'] is None else f'{row["r2_log"]:.2f}'
    rho = 'n/a' if row['spearman'] is None else f'{row["spearman"]:.2f}'
    # The line R^2 is about: the log-log least-squares fit over these points.
    fit = fits.loglog_fit(np.array(xs), np.array(times)) if len(cases) > 1 else None
    if fit is not None:
      slope, intercept = fit
      ends = np.array([min(xs), max(xs)])
      ax.plot(ends, np.exp(intercept + slope * np.log(ends)) * 1e3, color='grey',
              linestyle='--', linewidth=1, label=f'fit: time ~ x^{slope:.2f}, R^2 {r2}')
      ax.legend(fontsize='small', loc='upper center', bbox_to_anchor=(0.5, -0.13))
    wrong = '\n(points the wrong way: more of it, less time)' if row['wrong_way'] else ''
    ax.set(xlabel=label, ylabel='median step time (ms)',
           title=f'step time vs {label}\nR^2 (log-log) {r2}, Spearman {rho}{wrong}')
    ax.title.set_fontsize(11)
  fig.tight_layout()
  paths = [_save(fig, workdir, PROXIES)]

  fig, ax = _subplots(figsize=(9, 6.5))
  cases = [c for c in result['cases'] if c['flops'] and c['bytes']]
  intensity = [c['flops'] / c['bytes'] for c in cases]
  _label_points(ax, intensity, [c['flops'] / c['time'] / 1e9 for c in cases],
                [c['name'] for c in cases])
  peaks = result['peaks']
  bandwidth = peaks.get('copy_bytes_per_s')
  low, high = min(intensity + [1.0]) / 2, max(intensity + [1.0]) * 2
  ceilings = sorted((peaks.get('matmul_flops_per_s') or {}).items()) if bandwidth else []
  for i, (dtype, peak) in enumerate(ceilings):
    ridge = peak / bandwidth
    xs = [low, ridge, max(high, ridge * 2)]
    ax.plot(xs, [min(peak, x * bandwidth) / 1e9 for x in xs], color=f'C{i + 1}',
            label=f'{dtype} ceiling: matmul {peak / 1e9:.3g} GFLOP/s, copy {bandwidth / 1e9:.3g} '
            'GB/s')
  ax.set(xlabel='arithmetic intensity (XLA FLOPs / bytes accessed)',
         ylabel='achieved GFLOP/s (XLA FLOPs / median step time)',
         title='roofline: measured ceilings and each case')
  if ax.lines:  # below the axes: a legend inside would hide the points under it
    ax.legend(fontsize='small', loc='upper center', bbox_to_anchor=(0.5, -0.1))
  fig.tight_layout()
  paths.append(_save(fig, workdir, ROOFLINE))
  return paths


def ab_rounds(workdir, result):
  """WORKDIR/ab.png: each round's new/base ratio of every case of a bench.ab result,
  with the estimate, its interval and the threshold's bounds (log scale)."""
  cases = result['cases']
  fig, ax = _subplots(figsize=(max(7.5, 1.1 * len(cases) + 2), 4.5))
  bound = 1 + result['threshold']
  for i, case in enumerate(cases):
    ratios = case['round_ratios']
    # Rounds spread sideways in order, so a drift over the run shows as a slope.
    offsets = [(j / max(len(ratios) - 1, 1) - 0.5) * 0.5 for j in range(len(ratios))]
    ax.scatter([i + o for o in offsets], ratios, s=12, color='C0', alpha=0.7)
    if case['ci_low'] is not None:
      ax.plot([i, i], [case['ci_low'], case['ci_high']], color='k', linewidth=2)
    ax.plot(i, case['ratio'], marker='D', color='C3')
  for y, style in ((1, '-'), (bound, '--'), (1 / bound, '--')):
    ax.axhline(y, color='grey', linestyle=style, linewidth=0.8)
  from matplotlib import ticker  # pylint: disable=import-outside-toplevel
  ax.set_yscale('log')
  for axis_formatter in (ax.yaxis.set_major_formatter, ax.yaxis.set_minor_formatter):
    axis_formatter(ticker.FormatStrFormatter('%.2f'))
  ax.set_xticks(range(len(cases)),
                [f'{c["name"]}\n{c["verdict"]}' for c in cases], fontsize='small')
  ax.set_ylabel('new / base median step time')
  ax.set_title(f'{result["base"]["commit"][:10]} -> {result["new"]["commit"][:10]}\nrounds '
               '(dots, in order), estimate (diamond), interval (bar), threshold (dashed)',
               fontsize='medium')
  fig.tight_layout()
  return _save(fig, workdir, AB)


# One colour per op category, in hlo_ops.CATEGORIES order (tab20's, no greys: idle is grey).
_CATEGORY_COLORS = ('#1f77b4', '#aec7e8', '#ff7f0e', '#d62728', '#9467bd', '#8c564b',
                    '#e377c2', '#2ca02c', '#bcbd22', '#17becf', '#ffbb78', '#98df8a')


def _category_color(category):
  """A category keeps its colour from plot to plot; idle is grey: no op ran."""
  if category == hlo_ops.IDLE:
    return '0.8'
  return (_CATEGORY_COLORS[hlo_ops.CATEGORIES.index(category) % len(_CATEGORY_COLORS)]
          if category in hlo_ops.CATEGORIES else None)


def profile(workdir, report):
  """WORKDIR/profile.png: per profiled case, a bar of its profiled step split into
  op categories (and idle) as shares of the step, with the step's milliseconds
  above it. Returns its path, or None without a profiled case."""
  cases = [c for c in report['cases'] if c['profile']['steps']]
  if not cases:
    return None
  present = {row['category'] for c in cases for row in c['profile']['categories']}
  categories = [c for c in (*hlo_ops.CATEGORIES, hlo_ops.IDLE) if c in present]
  categories += sorted(present - set(categories))
  fig, ax = _subplots(1, 1, figsize=(max(6.0, 0.9 * len(cases) + 5), 5))
  names = [c['name'] for c in cases]
  bottoms = [0.0] * len(cases)
  for category in categories:
    shares = [sum(r['time_s'] for r in c['profile']['categories'] if r['category'] == category)
              / c['profile']['step_s'] * 100 for c in cases]
    ax.bar(names, shares, bottom=bottoms, color=_category_color(category), label=category)
    for x, (share, bottom) in enumerate(zip(shares, bottoms)):
      if share >= 8:  # label the slices tall enough to hold it
        ax.text(x, bottom + share / 2, f'{share:.0f}%', ha='center', va='center', fontsize=9)
    bottoms = [b + h for b, h in zip(bottoms, shares)]
  for x, case in enumerate(cases):
    ax.text(x, 101, f'{case["profile"]["step_s"] * 1e3:.3g} ms', ha='center', va='bottom',
            fontsize=9)
  ax.set(ylabel='% of a profiled step', ylim=(0, 110),
         title='Where the time goes (ms per profiled step above each bar)')
  ax.tick_params(axis='x', labelrotation=30)
  ax.legend(fontsize='small', loc='upper left', bbox_to_anchor=(1.01, 1.0))
  fig.tight_layout()
  return _save(fig, workdir, PROFILE)


def predicted(workdir, result):
  """WORKDIR/predicted.png: each case's step time as the kernel predictor predicts it
  (learned from sampled kernels only), with its interval, against the measured one:
  log-log, families coloured, the y = x line and 1.2x bands. `result`:
  predictors.judge's. Returns its path, or None where no case has a kernel prediction."""
  rows = [r for r in result['cases'] if r['predicted'].get(predictors.KERNELS)]
  if not rows:
    return None
  fig, ax = _subplots(figsize=(8.5, 7))
  values = []
  for i, name in enumerate(sorted({r['family'] for r in rows})):
    mine = [r for r in rows if r['family'] == name]
    xs = [r['measured_s'] * 1e3 for r in mine]
    ys = [r['predicted'][predictors.KERNELS] * 1e3 for r in mine]
    ax.errorbar(xs, ys, yerr=[[y - r['low_s'] * 1e3 for y, r in zip(ys, mine)],
                              [r['high_s'] * 1e3 - y for y, r in zip(ys, mine)]],
                fmt='o', markersize=5, zorder=3, color=f'C{i}', label=name, elinewidth=0.8)
    for x, y, r in zip(xs, ys, mine):
      ax.annotate(r['name'], (x, y), fontsize=7, xytext=(4, 3), textcoords='offset points')
    values += xs + ys
  if values:
    ends = np.array([min(values) / 1.5, max(values) * 1.5])
    ax.plot(ends, ends, color='black', linewidth=1, label='predicted = measured')
    ax.plot(ends, ends * predictors.GOOD, color='grey', linestyle='--', linewidth=1,
            label=f'{predictors.GOOD:g}x off')
    ax.plot(ends, ends / predictors.GOOD, color='grey', linestyle='--', linewidth=1)
  ax.set(xscale='log', yscale='log', xlabel='measured median step time (ms)',
         ylabel='predicted step time (ms)',
         title='kernel predictor (never fitted on a model): predicted vs measured')
  ax.legend(fontsize='small', loc='upper left')
  fig.tight_layout()
  return _save(fig, workdir, PREDICTED)



# An A/B verdict's marker: an open triangle or circle, and for an inconclusive one a
# cross, which has no face: it is drawn in its colour, not as an edge.
_VERDICT_MARKERS = {'regression': ('v', 'red'), 'faster': ('^', 'green'),
                    'same': ('o', 'grey'), 'inconclusive': ('x', 'black')}
# trend.png is at most this wide (inches; 100 pixels each) at any length of history: a
# commit a point, its ticks thinned to at most TREND_TICKS labels (1,200 commits drew
# 72,300 pixels wide at 0.6 inch a commit).
TREND_MAX_WIDTH = 16
TREND_TICKS = 40


def trend(directory, case, series, order):
  """DIRECTORY/trend.png: a case's median step time per commit along the commits,
  the spread of its runs' medians as a bar, one line per machine (never joined), A/B
  verdicts of a commit against its base marked. `series`: [{'machine', 'points':
  [{index, commit, median_s, low_s, high_s, runs, ab: [(base, verdict, ratio)]}]}]
  (bench/history.py show), along the commits in `order` (the x axis says which: 'commit
  time order', 'first-parent order of HEAD'). At most TREND_MAX_WIDTH wide: past a few
  dozen commits the points shrink and only every k-th commit is labelled. Returns its
  path."""
  longest = max(len(s['points']) for s in series)
  fig, ax = _subplots(figsize=(min(TREND_MAX_WIDTH, max(6.0, 0.6 * longest + 3)), 4.5))
  crowded = longest > TREND_TICKS
  labelled = set()
  for i, line in enumerate(series):
    points = line['points']
    xs = [p['index'] for p in points]
    ys = np.array([p['median_s'] * 1e3 for p in points])
    spread = np.array([[y - p['low_s'] * 1e3, p['high_s'] * 1e3 - y] for y, p in zip(ys, points)]).T
    ax.errorbar(xs, ys, yerr=spread, color=f'C{i}', marker='o', markersize=2 if crowded else 4,
                capsize=0 if crowded else 3, linewidth=1, elinewidth=0.5 if crowded else 1,
                label=f'machine {line["machine"]}')
    for p, y in zip(points, ys):
      for _, verdict, _ in p['ab']:
        marker, color = _VERDICT_MARKERS.get(verdict, _VERDICT_MARKERS['inconclusive'])
        label = f'A/B: {verdict or "undecided"}'
        face = {'color': color} if marker == 'x' else {'facecolors': 'none', 'edgecolors': color}
        ax.scatter([p['index']], [y], marker=marker, s=90, zorder=4, **face,
                   label=None if label in labelled else label)
        labelled.add(label)
  commits = {p['index']: p['commit'][:7] for line in series for p in line['points']}
  ticks = sorted(commits)[::-(-len(commits) // TREND_TICKS)]
  ax.set_xticks(ticks, [commits[k] for k in ticks], rotation=45, ha='right', fontsize=8)
  ax.set(xlabel=f'commit ({order}' + (', every commit a point; labels thinned)'
                                      if crowded else ')'),
         ylabel='median step time (ms)',
         title=f'{case}: median step time per commit (bars: range of the runs\' medians)')
  # Room above the highest bar for the A/B markers drawn on the points.
  ax.set_ylim(0, 1.12 * max(p['high_s'] * 1e3 for line in series for p in line['points']))
  ax.legend(fontsize='small')
  fig.tight_layout()
  return _save(fig, directory, TREND)
