"""Options shared by the command modules of several areas."""

from __future__ import annotations

import os

import typer


def _set_quiet(quiet: bool) -> bool:
    """`--quiet`: no progress output for the rest of the process (the same as `STCN_QUIET=1`)."""
    if quiet:
        os.environ["STCN_QUIET"] = "1"
    return quiet


QUIET = typer.Option(False, "--quiet", "-q", callback=_set_quiet, help="No progress output (or set STCN_QUIET=1).")
