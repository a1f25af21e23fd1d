"""A training run's metrics: TensorBoard event files and JSON lines, through clu.

Kept apart from bench/train/training.py because clu's TensorBoard writer imports
TensorFlow: only a training case pays for it, when its writers are opened.
"""

import json
import os

from clu import metric_writers

from bench.core import parallel
from bench.core.fileio import atomic_write_text


class JsonlWriter(metric_writers.MetricWriter):
  """clu MetricWriter of one JSON object per write: {"step": k, name: value, ...}.

  The whole file is rewritten atomically on flush, so it is always complete.
  Scalars, texts and hyperparameters are kept; arrays (images, histograms, audio,
  video) belong in TensorBoard, which the MultiWriter next to this one receives.
  """

  def __init__(self, path):
    self._path, self._lines = path, []

  def write_scalars(self, step, scalars):
    self._lines.append(json.dumps({'step': int(step), **{k: float(v) for k, v in scalars.items()}}))

  def write_texts(self, step, texts):
    self._lines.append(json.dumps({'step': int(step), **texts}))

  def write_hparams(self, hparams):
    self._lines.append(json.dumps({'hparams': dict(hparams)}, default=str))

  def write_summaries(self, step, values, metadata=None):
    del step, values, metadata

  def write_images(self, step, images):
    del step, images

  def write_videos(self, step, videos):
    del step, videos

  def write_audios(self, step, audios, *, sample_rate):
    del step, audios, sample_rate

  def write_histograms(self, step, arrays, num_buckets=None):
    del step, arrays, num_buckets

  def flush(self):
    atomic_write_text(self._path, ''.join(line + '\n' for line in self._lines))

  def close(self):
    self.flush()


def open_writers(workdir, name, hparams, history):
  """TensorBoard (WORKDIR/metrics/NAME/) and JSONL (WORKDIR/metrics/NAME.jsonl)
  writers of case `name`, with its `hparams` written; `history` is a resumed run's
  earlier (epoch, scalars), which start the JSONL again (TensorBoard's event files
  already hold them). Only the first process writes: the others' writer discards
  what it is given."""
  if not parallel.is_primary():
    return metric_writers.MultiWriter([])
  os.makedirs(os.path.join(workdir, 'metrics'), exist_ok=True)
  jsonl = JsonlWriter(os.path.join(workdir, 'metrics', f'{name}.jsonl'))
  writer = metric_writers.MultiWriter([
      metric_writers.SummaryWriter(os.path.join(workdir, 'metrics', name)), jsonl])
  writer.write_hparams(hparams)
  for epoch, scalars in history:
    jsonl.write_scalars(epoch, scalars)
  return writer
