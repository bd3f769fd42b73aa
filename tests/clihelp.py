"""How the tests run the command line and check its failures: one runner per way, one error rule.

- `stcn(*args)`: `stcn ARGS` as a process running this tree's code (`python -m stcn.cli`).
- `invoke(*args)`: `stcn ARGS` in this process (typer's CliRunner), for help texts and spies.
- `one_error(result, *needles)`: the command failed the way every user-visible failure must: exit 2, no
  traceback, and its last stderr line starts with `error: ` and holds every needle (`alone=True`: and it is
  the only stderr line).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _this_tree_first(path: str | None) -> str:
    """PYTHONPATH with this tree first (its code, not an installed copy's)."""
    return os.pathsep.join([str(REPO), *(p for p in (path or "").split(os.pathsep) if p and p != str(REPO))])


# the environment of a quiet process running this tree's code (for scripts such as pipelines/*.py)
ENV = {**os.environ, "PYTHONPATH": _this_tree_first(os.environ.get("PYTHONPATH")), "STCN_QUIET": "1"}


def stcn(
    *args: object,
    cwd: Path | str | None = None,
    env: Mapping[str, str] | None = None,
    quiet: bool = True,
    timeout: float = 600,
    **variables: str,
) -> subprocess.CompletedProcess:
    """`stcn ARGS` as a process running this tree's code.

    Its environment is `env` (default: this process's) plus `variables`, with this tree first on PYTHONPATH and,
    unless `quiet=False`, `STCN_QUIET=1` (a slow, loaded machine would print progress lines before an error).
    """
    environment = {**(os.environ if env is None else env), **variables}
    environment["PYTHONPATH"] = _this_tree_first(environment.get("PYTHONPATH"))
    if quiet:
        environment["STCN_QUIET"] = "1"
    cmd = [sys.executable, "-m", "stcn.cli", *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, env=environment, timeout=timeout)


def cli_app():
    """The `stcn` typer app with every command attached (once per process)."""
    from stcn.cli.app import _register, app

    if not (app.registered_commands or app.registered_groups):
        _register()
    return app


def invoke(*args: object, **options):
    """`stcn ARGS` in this process: typer's CliRunner result (`exception`, `exit_code`, `output`)."""
    from typer.testing import CliRunner

    return CliRunner().invoke(cli_app(), [str(a) for a in args], **options)


def one_error(result: subprocess.CompletedProcess, *needles: str, alone: bool = False) -> str:
    """The `error:` line a failed command ends with (exit 2, no traceback), holding every needle.

    `alone`: that line is all the command wrote to stderr."""
    err = result.stderr
    lines = err.strip().splitlines()
    assert result.returncode == 2, f"exit {result.returncode}: {err[-3000:]}"
    assert "Traceback" not in err + (result.stdout or ""), err[-3000:]
    assert lines and lines[-1].startswith("error: "), err[-3000:]
    assert not alone or len(lines) == 1, err[-3000:]
    for needle in needles:
        assert needle in lines[-1], lines[-1]
    return lines[-1]
