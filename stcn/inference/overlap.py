"""Overlap frame decoding and mask encoding with the network: a read-ahead thread and a writer thread.

JPEG decoding and PNG encoding (PIL, OpenCV) release the GIL, so while torch computes frame t, frame
t+1 is decoded and the mask of frame t-1 is written.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np


def read_ahead(
    frames: Iterable[tuple[str, Callable[[], np.ndarray]]], depth: int = 2
) -> Iterator[tuple[str, Callable[[], np.ndarray]]]:
    """The same (stem, loader) pairs, with up to `depth` frames decoded ahead in a background thread.

    A loader's exception (a corrupt frame) is raised when that frame's loader is called, in order.
    """
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="stcn-read") as pool:
        pending: deque[tuple[str, Future]] = deque()
        for stem, load in frames:
            pending.append((stem, pool.submit(load)))
            if len(pending) > depth:
                stem0, future = pending.popleft()
                yield stem0, future.result
        while pending:
            stem0, future = pending.popleft()
            yield stem0, future.result


class BackgroundWriter:
    """Runs `write(*args)` calls in one background thread, in order; `close()` waits and re-raises the first error."""

    def __init__(self, write: Callable[..., None], depth: int = 4):
        self._write, self._depth = write, depth
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="stcn-write")
        self._pending: deque[Future] = deque()

    def __call__(self, *args) -> None:
        self._pending.append(self._pool.submit(self._write, *args))
        while len(self._pending) > self._depth or (self._pending and self._pending[0].done()):
            self._pending.popleft().result()

    def close(self) -> None:
        """Wait for every queued write; the first failure is raised here."""
        try:
            while self._pending:
                self._pending.popleft().result()
        finally:
            self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> BackgroundWriter:
        return self

    def __exit__(self, *exc) -> None:
        if exc[0] is None:
            self.close()
        else:  # already failing: drop what is queued, keep the original error
            self._pool.shutdown(wait=True, cancel_futures=True)
