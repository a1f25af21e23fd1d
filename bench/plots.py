"""Figures written next to the report (matplotlib, Agg: no display needed)."""

import os

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top,wrong-import-position

from bench.fileio import atomic_open

TRAINING_CURVES = 'training_curves.png'
SCALING = 'scaling.png'


def _save(fig, workdir, name):
  path = os.path.join(workdir, name)
  with atomic_open(path, 'wb') as f:
    fig.savefig(f, format='png', dpi=100)
  plt.close(fig)
  return path


def training_curves(workdir, report):
  """WORKDIR/training_curves.png: train and val loss, and val accuracy, per epoch for
  every training case of `report`. Returns its path, or None without training cases."""
  cases = [c for c in report['cases'] if c['training']['history']]
  if not cases:
    return None
  fig, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=(12, 4.5))
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
  fig, (rate_ax, eff_ax) = plt.subplots(1, 2, figsize=(12, 4.5))
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
