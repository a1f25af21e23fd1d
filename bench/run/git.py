"""git, as bench.ab (its revisions and worktrees) and the results history (commit
times, first-parent lines) ask it."""

import subprocess

from bench.core.errors import UserError


def git(repo, *args):
  """`git -C repo args`: its CompletedProcess, text; returncode 127 where git itself
  cannot be run (not installed)."""
  command = ['git', '-C', repo, *args]
  try:
    return subprocess.run(command, capture_output=True, text=True, check=False)
  except OSError as e:
    return subprocess.CompletedProcess(command, 127, '', str(e))


def output(repo, *args):
  """What `git -C repo args` printed, stripped; None where it failed."""
  result = git(repo, *args)
  return result.stdout.strip() if result.returncode == 0 else None


def repository(start='.'):
  """The top of the git checkout holding `start`; None outside one (or without git)."""
  return output(start, 'rev-parse', '--show-toplevel')


def resolve(repo, rev, flag):
  """The full commit hash `rev` (the value of the command line's `flag`) names in
  `repo`; a UserError naming the flag where git knows no such commit."""
  commit = output(repo, 'rev-parse', '--verify', '--quiet', f'{rev}^{{commit}}') if rev else None
  if not commit:
    raise UserError(f'{flag}={rev}: git knows no such commit in {repo}; name a branch, tag or '
                    'commit (git log --oneline lists them)')
  return commit
