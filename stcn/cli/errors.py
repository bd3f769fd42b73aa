"""The one error handler of every entry point (`stcn`, `python -m stcn.train`, the pipeline stages)."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator

import typer

from stcn.atomic import output_errors
from stcn.errors import UserError


@contextlib.contextmanager
def reporting(label: str = "error", outputs: bool = True) -> Iterator[None]:
    """A UserError raised in the block becomes `<label>: <message>` on stderr and exit code 2.

    `outputs`: a full or read-only disk where no command names the output is such an error too."""
    try:
        with output_errors(None) if outputs else contextlib.nullcontext():
            yield
    except UserError as e:
        print(f"{label}: {e}", file=sys.stderr, flush=True)
        sys.exit(2)


def single(fn: Callable[..., object]) -> typer.Typer:
    """A typer app whose only command is `fn` (its options are the app's)."""
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    app.command()(fn)
    return app
