"""Benchmark configs: `get_config()` files; variants import base and override fields.

They ship in the package, so an installed copy finds them by name from any
directory: `--config=quickstart` or `--config=configs/quickstart.py` (`resolve`).
`load` reads one and lays the command line's `--config.FIELD=VALUE` overrides
over it (`split` picks them out of the arguments), each typed as the field it
replaces, every mistake a UserError of one line.
"""

import ast
import contextlib
import copy
import difflib
import importlib.machinery
import importlib.util
import os

import ml_collections

from bench.core.errors import UserError

DIRECTORY = os.path.dirname(os.path.abspath(__file__))
PREFIX = '--config.'


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


def split(argv):
  """(the other arguments, the overrides) of `argv`: each `--config.PATH=VALUE` (or
  `--config.PATH VALUE`, or a bare `--config.PATH` for True) as one `--config.PATH=VALUE`
  string (`--config.PATH` when bare), in the order given."""
  rest, overrides, args = [], [], list(argv)
  while args:
    arg = args.pop(0)
    if not arg.startswith(PREFIX):
      rest.append(arg)
    elif '=' not in arg and args and not args[0].startswith('-'):
      overrides.append(f'{arg}={args.pop(0)}')
    else:
      overrides.append(arg)
  return rest, overrides


def load(spec, overrides=()):
  """(file, config): the config `spec` names (`resolve`), its `get_config()` with the
  `overrides` (strings from `split`) applied in order, then locked. Raises UserError for a
  missing file, a file without get_config() or returning no ConfigDict, an unknown field
  or case, a value of the wrong type, and an override that no selected case reads (a
  case's own field takes precedence over the base's). A get_config() that raises is a bug
  in the file and keeps its traceback."""
  path = resolve(spec)
  if path is None:
    if os.path.isdir(spec):
      raise UserError(f'--config={spec} is a directory, not a config file; pass a file or '
                      f'one of: {", ".join(shipped())} (--config=quickstart)')
    raise UserError(f'config file {spec!r} does not exist here and is not a shipped config; '
                    f'pass a path or one of: {", ".join(shipped())} (--config=quickstart)')
  loader = importlib.machinery.SourceFileLoader('flax_bench_config', path)  # any file name
  module = importlib.util.module_from_spec(importlib.util.spec_from_loader(loader.name, loader))
  loader.exec_module(module)
  if not callable(getattr(module, 'get_config', None)):
    raise UserError(f'config file {path} has no get_config(); a config file defines '
                    'get_config() returning an ml_collections.ConfigDict (see '
                    f'{os.path.join(DIRECTORY, "quickstart.py")})')
  config = module.get_config()
  if not isinstance(config, ml_collections.ConfigDict):
    raise UserError(f'config file {path}: get_config() returned {_short(config)}, not an '
                    'ml_collections.ConfigDict; return the config, e.g. base.get_config() with '
                    'your fields set')
  parsed = [_apply(config, arg) for arg in overrides]
  for i, (arg, fields, _) in enumerate(parsed):
    for later, later_fields, _ in parsed[i + 1:]:
      if len(later_fields) < len(fields) and fields[:len(later_fields)] == later_fields:
        raise UserError(f'{later} replaces all of {".".join(later_fields)}, and with it {arg} '
                        'given before; put the whole value first, then the override of a part')
  _check_reach(config, parsed)
  config.lock()
  return path, config


def _short(value):
  text = repr(value)
  return f'{type(value).__name__} {text if len(text) <= 40 else text[:37] + "..."}'


def _apply(config, arg):
  """Sets the field override `arg` names; returns (arg, path, text)."""
  name, equals, text = arg.partition('=')
  path = name[len(PREFIX):].split('.')
  text = text if equals else None
  if not all(path):
    raise UserError(f'{arg}: name a field, as in --config.batch_size=64 or '
                    '--config.cases.CASE.batch_size=64')
  node = config
  for depth, key in enumerate(path):
    where = '.'.join(path[:depth])
    if not isinstance(node, (dict, ml_collections.ConfigDict)):
      raise UserError(f'{arg}: {where} is a {type(node).__name__}, which has no field {key!r}')
    if key not in node:
      _add_missing(config, node, path, depth, arg)
    if depth == len(path) - 1:
      value = _typed(arg, '.'.join(path), node[key], text)
      with _unlocked(node):
        node[key] = value
    else:
      node = node[key]
  return arg, path, text


def _add_missing(config, node, path, depth, arg):
  """A field the override names that `node` lacks: a case's field it does not set is
  the base's, copied into the case; anything else a UserError naming what exists."""
  key, where = path[depth], '.'.join(path[:depth])
  if depth == 0:
    raise UserError(f'unknown config field {key!r} in {arg}' + _hint(key, config))
  if depth == 1 and path[0] == 'cases':
    raise UserError(f'{arg}: the config has no case {key!r}; ' + (
        f'its cases: {", ".join(node)}' if node else
        'it has no cases (a config of one case: override its fields with '
        '--config.FIELD=VALUE)'))
  if depth == 2 and path[0] == 'cases':
    if key == 'cases' or key not in config:
      raise UserError(f'unknown config field {key!r} in {arg}' + _hint(
          key, [k for k in config if k != 'cases']))
    with _unlocked(node):
      node[key] = copy.deepcopy(config[key])
    return
  keys = f' (it has {", ".join(node)})' if node else ''
  raise UserError(f'{arg}: {where} has no key {key!r} to override{keys}; give all of them at '
                  f'once: --config.{where}="{{\'{key}\': ...}}"')


def _hint(key, fields):
  close = difflib.get_close_matches(key, list(fields), n=1)
  if close:
    return f'; did you mean {close[0]!r}?'
  return f'; every field, with its default, is in {os.path.join(DIRECTORY, "base.py")}'


def _unlocked(node):
  if isinstance(node, ml_collections.ConfigDict):
    return node.unlocked()
  return contextlib.nullcontext()


def _typed(arg, field, current, text):
  """`text` as a value of `current`'s type: a string as given; a bool as absl reads one
  (true/false/1/0, any case; bare for True); numbers; tuples, lists and dicts (replaced
  whole) as Python literals; anything for a field that is None."""
  if text is None:
    if isinstance(current, bool):
      return True
    raise UserError(f'{arg} needs a value: {arg}=VALUE')
  if isinstance(current, str):
    return text
  if isinstance(current, bool):
    if text.lower() in ('true', 't', '1', 'false', 'f', '0'):
      return text.lower() in ('true', 't', '1')
    raise UserError(f'{arg}: {field} is True or False, not {text!r}')
  if isinstance(current, (int, float)):
    number = int if isinstance(current, int) else float
    try:
      return number(text)
    except ValueError:
      raise UserError(f'{arg}: {field} takes {"an integer" if number is int else "a number"}, '
                      f'not {text!r}') from None
  if current is None:
    return _literal(text, fallback=text)
  if isinstance(current, tuple):
    value = _literal(text, fallback=None if ',' in text else text)
    if isinstance(value, (tuple, list)):
      return tuple(value)
    if value is not None:
      return (value,)  # one element, as config_flags reads it: 'weak' is ('weak',)
  elif isinstance(current, list):
    value = _literal(text, fallback=None)
    if isinstance(value, (tuple, list)):
      return list(value)
  elif isinstance(current, (dict, ml_collections.ConfigDict)):
    value = _literal(text, fallback=None)
    if isinstance(value, dict):
      return ml_collections.ConfigDict(value, sort_keys=False)  # in the order given (cases)
  else:
    raise UserError(f'{arg}: {field} holds a {type(current).__name__}, which the command line '
                    'cannot set; change it in the config file')
  kind = 'dict' if isinstance(current, ml_collections.ConfigDict) else type(current).__name__
  raise UserError(f'{arg}: {field} takes a Python {kind} literal, e.g. '
                  f'--config.{field}="{_example(current)}"')


def _example(current):
  if isinstance(current, ml_collections.ConfigDict):
    current = current.to_dict()
  return repr(current) if current else {tuple: '(1, 2)', list: '[1, 2]'}.get(
      type(current), "{'key': 1}")


def _literal(text, fallback):
  """`text` read as a Python literal (absl's lower-case true/false too), else `fallback`."""
  try:
    return ast.literal_eval({'true': 'True', 'false': 'False'}.get(text, text))
  except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
    return fallback


def _check_reach(config, parsed):
  """UserError for the first override that no selected case reads: a field every
  selected case sets itself, or a case that --config.select leaves out."""
  cases = config.get('cases') or {}
  if not cases:
    return  # one case: the base is the case
  select = [s for s in (config.get('select') or '').split(',') if s]
  # A scaling study's runs are selected as CASE.weakN / CASE.strongN.
  selected = [name for name in cases
              if not select or any(s == name or s.rsplit('.', 1)[0] == name for s in select)]
  if not selected:
    return  # names no case: suite.expand says so, with the cases there are
  which = 'selected case' if select else 'case'
  for arg, path, _ in parsed:
    if path[0] == 'cases':
      if len(path) > 2 and path[1] not in selected:
        raise UserError(f'{arg} reaches no case: --config.select={config.select} does not run '
                        f'{path[1]}')
    elif all(path[0] in cases[name] for name in selected):
      raise UserError(
          f'{arg} reaches no {which}: every {which} sets {path[0]} itself '
          f'({", ".join(selected)}), and a case\'s own field takes precedence over the '
          f'base; override one case with {PREFIX}cases.{selected[0]}.{arg[len(PREFIX):]}')
