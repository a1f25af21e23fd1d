"""Figures written next to the report (matplotlib, Agg: no display needed)."""

import os

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top,wrong-import-position

from bench.fileio import atomic_open

TRAINING_CURVES = 'training_curves.png'


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
  path = os.path.join(workdir, TRAINING_CURVES)
  with atomic_open(path, 'wb') as f:
    fig.savefig(f, format='png', dpi=100)
  plt.close(fig)
  return path
