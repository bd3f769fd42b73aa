"""The `stcn` command line: one sub-command per task, each defined next to the code it drives."""

from __future__ import annotations

import sys

import typer

from stcn.errors import UserError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="STCN video object segmentation: segment, evaluate, score, download, shard, train.")


def _register() -> None:
    """Attach each area's commands; an area that is not importable is simply absent."""
    from stcn.eval import commands as eval_commands
    from stcn.inference import commands as inference_commands

    inference_commands.register(app)
    eval_commands.register(app)
    for module in ("stcn.data.commands", "stcn.train.commands"):
        try:
            mod = __import__(module, fromlist=["register"])
        except ModuleNotFoundError as e:
            if e.name != module:
                raise
            continue
        mod.register(app)


def main() -> None:
    """Entry point: user errors become one clear line on stderr and exit code 2."""
    _register()
    try:
        app(standalone_mode=False)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except (typer.Abort, KeyboardInterrupt):
        print("aborted", file=sys.stderr)
        sys.exit(130)
    except Exception as e:  # click usage errors carry their own exit code
        import click

        if isinstance(e, click.ClickException):
            e.show()
            sys.exit(e.exit_code)
        raise


if __name__ == "__main__":
    main()
