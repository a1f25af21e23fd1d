"""Benchmark configs: `get_config()` files; variants import base and override fields.

They ship in the package, so an installed copy finds them by name from any
directory: `--config=quickstart` or `--config=configs/quickstart.py` (`resolve`).
"""

import os

DIRECTORY = os.path.dirname(os.path.abspath(__file__))


def shipped():
  """The names of the config files in this package, sorted."""
  return sorted(name[:-3] for name in os.listdir(DIRECTORY)
                if name.endswith('.py') and name != '__init__.py')


def resolve(path):
  """The file `path` names: itself when it exists relative to the working directory (a
  local file always wins), else the shipped config it names (`quickstart`,
  `quickstart.py` or `configs/quickstart.py`), else None."""
  if os.path.isfile(path):
    return path
  path = os.path.normpath(path)  # ./configs/quickstart.py too
  name = os.path.basename(path)
  name = name[:-3] if name.endswith('.py') else name
  if os.path.dirname(path) not in ('', 'configs') or name not in shipped():
    return None
  return os.path.join(DIRECTORY, f'{name}.py')
