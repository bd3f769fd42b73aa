"""The one exception type for failures a user can cause and fix (bad path, corrupt file, ...)."""


class UserError(Exception):
    """A failure the user can fix; the CLI prints its message as one line and exits non-zero."""


class NeedsInternet(UserError):
    """The requested data can only come from the internet, which is not reachable / not allowed."""
