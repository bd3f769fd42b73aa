"""A real HTTP server on 127.0.0.1 for the tests: `serving(handler)` for a handler of a test's own, `serving_folder`
for the files of a folder (the standard library's server, quiet)."""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


@contextlib.contextmanager
def serving(handler) -> Iterator[str]:
    """A threading HTTP server of `handler` on a free port of 127.0.0.1: its base URL, stopped on exit."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def serving_folder(folder: Path) -> contextlib.AbstractContextManager[str]:
    """`serving` the files under `folder`, without request logs."""
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(folder))
    handler.log_message = lambda *a: None
    return serving(handler)
