"""The fits every predictor of the results wing shares: log-log lines, the two-term
a * x1 + b * x2 on relative errors, leave-one-out predictions, and the fold error
that judges them (bench/results/analysis.py, predictors.py, memory_model.py).

Fold error: max(predicted / measured, measured / predicted), 1 = exact.
"""

import math

import numpy as np

# Log-space predictions are clipped here, so that a wild fit gives a huge but finite
# number (exp(700) ~ 1e304), which JSON and the Markdown formatting can hold.
_MAX_LOG = 700.0
# A log-log fit needs its proxy to vary by more than this factor over the cases fitted.
MIN_SPREAD = math.log(1.01)


def fold_error(predicted, measured):
  """max(predicted / measured, measured / predicted); None without a prediction."""
  if predicted is None or predicted <= 0:
    return None
  return math.exp(min(abs(math.log(predicted) - math.log(measured)), _MAX_LOG))


def leave_one_out(fit, predict, x, t):
  """Prediction for each case by the model `fit` on all the others."""
  keep = np.ones(len(t), dtype=bool)
  predictions = []
  for i in range(len(t)):
    keep[i] = False
    predictions.append(predict(fit(x[keep], t[keep]), x[i]))
    keep[i] = True
  return predictions


def loglog_fit(x, t):
  """(slope, intercept) of log t on log x; None where x hardly varies (any slope fits)."""
  if np.ptp(np.log(x)) < MIN_SPREAD:
    return None
  slope, intercept = np.polyfit(np.log(x), np.log(t), 1)
  return slope, intercept


def loglog_predict(model, x):
  """exp(intercept + slope * log x), clipped to a finite number; None without a model."""
  if model is None:
    return None
  slope, intercept = model
  return float(np.exp(np.clip(intercept + slope * np.log(x), -_MAX_LOG, _MAX_LOG)))


def two_term_fit(x, t):
  """(a, b) >= 0 minimising the squared relative error of a * x[:, 0] + b * x[:, 1]
  against t (FLOPs and bytes against time, say)."""
  from scipy import optimize  # pylint: disable=import-outside-toplevel  (a second to import)
  coefficients, _ = optimize.nnls(x / t[:, None], np.ones_like(t))
  return coefficients


def two_term_predict(coefficients, x):
  return float(x @ coefficients)
