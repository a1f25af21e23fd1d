"""The median every wing takes of a list of figures, missing ones left out."""

import numpy as np


def median(values):
  """The median of the values that are not None (numpy's: the mean of the middle two
  of an even count); None when there are none."""
  values = [v for v in values if v is not None]
  return float(np.median(values)) if values else None
