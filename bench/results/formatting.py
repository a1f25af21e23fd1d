"""Numbers and Markdown tables as every rendering prints them (report.md, compare, ab.md)."""

import math

# Numbers from here on print in exponent notation: a wild fit's fold error (up to
# exp(700)) would otherwise print as a 300-digit integer.
_MAX_PLAIN = 1e15


def fmt(value, scale=1.0, digits=3):
  """`value` x `scale` with `digits` significant digits (all digits of a large number,
  up to _MAX_PLAIN; beyond it, exponent notation)."""
  if value is None or math.isnan(value):
    return 'n/a'
  value = value * scale
  if value == 0 or math.isinf(value):
    return str(value) if value else '0'
  if abs(value) >= _MAX_PLAIN:
    return f'{value:.{digits}g}'
  return f'{value:.{max(digits - 1 - int(math.floor(math.log10(abs(value)))), 0)}f}'


def times(value):
  return 'n/a' if value is None else f'{fmt(value)}x'


def table(columns, rows):
  """Markdown table lines: the header, its rule, and a line per row of cell texts."""
  return ['| ' + ' | '.join(columns) + ' |', '|' + '---|' * len(columns)] + [
      '| ' + ' | '.join(str(cell) for cell in row) + ' |' for row in rows]


def percent(value):
  return 'n/a' if value is None else f'{value * 100:.1f}%'
