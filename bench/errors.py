"""The one exception type for mistakes a user can fix."""


class UserError(Exception):
  """A problem in the user's config, flags or paths.

  The CLI prints its message as one line and exits with status 2; the message
  names the problem and the fix. Bugs raise anything else and keep tracebacks.
  """
