"""The `stcn` app: each area's `commands` module (AREAS) attached by name when it runs (`main`, the console script
`stcn` and `python -m stcn.cli`); user errors through `stcn.errors.reporting`."""

from __future__ import annotations

import typer

from stcn import __version__
from stcn.atomic import output_errors
from stcn.cli.options import QUIET
from stcn.errors import reporting

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="STCN video object segmentation: segment, evaluate, score, download, shard, train.",
)


AREAS = (
    "stcn.inference.commands",
    "stcn.eval.commands",
    "stcn.data.commands",
    "stcn.train.commands",
    "stcn.interactive.commands",
)


def _register() -> None:
    """Attach each area's commands (each area module has `register(app)`)."""
    for module in AREAS:
        try:
            mod = __import__(module, fromlist=["register"])
        except ModuleNotFoundError as e:
            if e.name != module:
                raise
            continue
        mod.register(app)


def _show_version(show: bool) -> None:
    if show:
        typer.echo(f"stcn {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_show_version, is_eager=True, help="Print the version."),
    quiet: bool = QUIET,
) -> None:
    """STCN video object segmentation: segment, evaluate, score, download, shard, train.

    Long commands show progress: a bar on a terminal, a line every STCN_PROGRESS_PERIOD seconds (default 30)
    in logs and pipes; --quiet (before or after the command name) or STCN_QUIET=1 turns it off.
    """


def main() -> None:
    """Entry point: user errors become one clear line on stderr and exit code 2."""
    _register()
    with reporting(), output_errors(None):  # a full or read-only disk where no command names the output: one line
        app()
