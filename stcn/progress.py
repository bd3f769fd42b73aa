"""Progress for long commands: a rich bar on a terminal, a plain line every `period` seconds elsewhere
(DVC logs, CI, pipes), nothing when quiet.

    with progress_bar("segment blackswan", total=50, unit="frames") as bar:
        for ...:
            bar.advance(1, info="2 objects")

The period of the plain lines is `STCN_PROGRESS_PERIOD` seconds (default 30); `STCN_QUIET=1` or
`quiet=True` silences both forms.
"""

from __future__ import annotations

import os
import sys
import time
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


def default_period() -> float:
    """Seconds between plain progress lines (`STCN_PROGRESS_PERIOD`, default 30)."""
    return float(os.environ.get("STCN_PROGRESS_PERIOD", "30"))


def is_quiet(quiet: bool | None = None) -> bool:
    """`quiet` when given, else `STCN_QUIET=1`."""
    return bool(quiet) if quiet is not None else os.environ.get("STCN_QUIET", "") not in ("", "0")


class Bar:
    """One task's progress: `advance(n, info=...)`, `update(completed, info=...)`."""

    def __init__(self, description: str, total: int | None, unit: str, mode: str, period: float, start: int = 0):
        self.description, self.total, self.unit = description, total, unit
        self.mode, self.period = mode, period
        self.completed = start
        self.info = ""
        self._t0 = time.monotonic()
        self._start = start
        self._last = self._t0
        self._rich: Progress | None = None
        if mode == "rich":
            self._rich = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn(unit),
                TimeElapsedColumn(),
                TextColumn("eta"),
                TimeRemainingColumn(),
                TextColumn("{task.fields[info]}"),
                console=Console(stderr=True),
                transient=False,
            )
            self._rich.start()
            self._task = self._rich.add_task(description, total=total, completed=start, info="")

    def advance(self, n: int = 1, info: str | None = None) -> None:
        self.update(self.completed + n, info)

    def update(self, completed: int, info: str | None = None, total: int | None = None) -> None:
        """`completed` so far; `total`: a new total (work whose size is known once it starts)."""
        self.completed = completed
        if info is not None:
            self.info = info
        if total is not None:
            self.total = total
        if self._rich is not None:
            self._rich.update(self._task, completed=completed, info=self.info, total=self.total)
        elif self.mode == "lines" and time.monotonic() - self._last >= self.period:
            self._last = time.monotonic()
            print(self.line(), file=sys.stderr, flush=True)

    def line(self) -> str:
        """`description: 20/50 frames (40%), 1.9 frames/s, eta 16 s, info`."""
        elapsed = time.monotonic() - self._t0
        done = self.completed - self._start
        rate = done / elapsed if elapsed > 0 else 0.0
        parts = [f"{self.completed}/{self.total} {self.unit}" if self.total else f"{self.completed} {self.unit}"]
        if self.total:
            parts[0] += f" ({100 * self.completed / self.total:.0f}%)"
        parts.append(f"{rate:.3g} {self.unit}/s")
        if self.total and rate > 0:
            parts.append(f"eta {(self.total - self.completed) / rate:.0f} s")
        if self.info:
            parts.append(self.info)
        return f"{self.description}: " + ", ".join(parts)

    def close(self, failed: bool = False) -> None:
        """Stop the bar; the closing plain line is left out when the work failed (its error line says it)."""
        if self._rich is not None:
            self._rich.stop()
        elif self.mode == "lines" and not failed:
            print(
                self.line() + " — done" if self.total and self.completed >= self.total else self.line(),
                file=sys.stderr,
                flush=True,
            )


@contextmanager
def progress_bar(
    description: str,
    total: int | None,
    unit: str = "items",
    *,
    quiet: bool | None = None,
    start: int = 0,
    period: float | None = None,
    terminal: bool | None = None,
):
    """A `Bar` for the duration of the block: rich on a terminal, periodic lines otherwise, silent when quiet."""
    terminal = sys.stderr.isatty() if terminal is None else terminal
    mode = "off" if is_quiet(quiet) else "rich" if terminal else "lines"
    bar = Bar(description, total, unit, mode, default_period() if period is None else period, start)
    try:
        yield bar
    except BaseException:
        bar.close(failed=True)
        raise
    bar.close()
