"""The `stcn` command line: one sub-command per task, each defined next to the code it drives."""

from __future__ import annotations

import sys

import typer

from stcn.errors import UserError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="STCN video object segmentation: segment, evaluate, score, download, shard, train.",
)


AREAS = ("stcn.inference.commands", "stcn.eval.commands", "stcn.data.commands", "stcn.train.commands")


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


@app.callback()
def _root() -> None:
    """STCN video object segmentation: segment, evaluate, score, download, shard, train."""


def main() -> None:
    """Entry point: user errors become one clear line on stderr and exit code 2."""
    from stcn.atomic import output_errors

    _register()
    try:
        with output_errors(None):  # a full or read-only disk where no command names the output: still one line
            app()
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
