"""DVC stage `train_<run>`: one training stage into models/<run>/ (weights.pth, dvclive/).

Knobs: the `train` block under `train_<run>`; `data` names shard folders under `shard.url`.
`train.launcher` starts this script (`python`, or `torchrun ...` for one process per GPU).
The final checkpoint.pth is not kept (it only serves to resume; weights.pth is the output).
"""

from __future__ import annotations

from pathlib import Path

import typer
from stage import command, params


def train(
    run: str = typer.Argument(..., help="s0 | s01 | s012 | s03"),
    init: str = typer.Option(None, help="previous stage's weights.pth (default: the `init` param)"),
) -> None:
    """Train stage `train_<RUN>.stage` into models/RUN."""
    from stcn.train.trainer import TrainConfig
    from stcn.train.trainer import train as run_stage

    knobs = params(f"train_{run}", "train")
    knobs.pop("launcher")
    url = params("shard")["url"].rstrip("/")
    knobs["data"] = [f"{url}/{name}" for name in knobs["data"]]
    knobs["init"] = init or knobs.get("init")
    out = Path("models") / run
    run_stage(TrainConfig(out=str(out), keep_checkpoint=False, **knobs))


if __name__ == "__main__":
    command(train)
