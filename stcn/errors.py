"""The one exception type for failures a user can cause and fix (bad path, corrupt file, ...), and the one handler
that reports it at every entry point (`stcn`, `python -m stcn.train`, the pipeline stages)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager


class UserError(Exception):
    """A failure the user can fix; the CLI prints its message as one line and exits non-zero.

    The message is kept on one line: causes quoted from other libraries (which may span lines) are joined.
    """

    def __init__(self, message: object = "") -> None:
        super().__init__(" ".join(str(message).split()))


class NeedsInternet(UserError):
    """The requested data can only come from the internet, which is not reachable / not allowed."""


@contextmanager
def reporting(label: str = "error") -> Iterator[None]:
    """A UserError raised in the block becomes one line, `<label>: <message>`, on stderr and exit code 2.

    An entry point wraps its whole command in it (inside it, `stcn.atomic.output_errors(None)` turns a full or
    read-only disk into such an error too)."""
    try:
        yield
    except UserError as e:
        print(f"{label}: {e}", file=sys.stderr, flush=True)
        sys.exit(2)
