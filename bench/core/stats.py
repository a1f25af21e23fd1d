"""The median every wing takes of a list of figures, missing ones left out."""

def median(values):
  """The median of the values that are not None (the mean of the middle two of an even
  count, as numpy's); None when there are none. Sorted in Python: a history takes it of
  a few values at each of thousands of commits, where np.median's call costs 20 times
  the sort."""
  values = sorted(v for v in values if v is not None)
  middle = len(values) // 2
  if not values:
    return None
  return float(values[middle] if len(values) % 2 else (values[middle - 1] + values[middle]) / 2)
