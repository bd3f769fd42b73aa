"""The one exception type for failures a user can cause and fix (bad path, corrupt file, ...)."""


class UserError(Exception):
    """A failure the user can fix; the CLI prints its message as one line and exits non-zero.

    The message is kept on one line: causes quoted from other libraries (which may span lines) are joined.
    """

    def __init__(self, message: object = "") -> None:
        super().__init__(" ".join(str(message).split()))


class NeedsInternet(UserError):
    """The requested data can only come from the internet, which is not reachable / not allowed."""
