"""Write params.yaml from conf/ (config.yaml + a profile), as `dvc exp run -S ...` does with Hydra.

Usage: `python pipelines/compose.py` (sample profile), `python pipelines/compose.py profile=paper`.
"""

from __future__ import annotations

from pathlib import Path

import typer
from stage import PARAMS, command

CONF = Path("conf")


def compose(overrides: list[str] = typer.Argument(None, help="Hydra overrides, e.g. profile=paper")) -> None:
    """Compose conf/config.yaml with OVERRIDES into params.yaml."""
    from dvc.utils.hydra import compose_and_dump

    compose_and_dump(PARAMS, str(CONF.resolve()), None, "config", "", list(overrides or []))


if __name__ == "__main__":
    command(compose)
