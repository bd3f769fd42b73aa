"""`python -m stcn.train ...` / `torchrun --nproc-per-node N -m stcn.train ...`: the `stcn train` options."""

from __future__ import annotations

import os

import typer

from stcn.errors import reporting
from stcn.train.commands import train_command


def main() -> None:
    """Run `stcn train` as a single command; a user error is one line on stderr and exit code 2 (a rank other
    than 0 names itself), a usage error (unknown option, missing value) typer's own message and exit code 2."""
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    app.command()(train_command)
    rank = os.environ.get("RANK")
    with reporting("error" if rank in (None, "0") else f"error (rank {rank})"):
        app()


if __name__ == "__main__":
    main()
