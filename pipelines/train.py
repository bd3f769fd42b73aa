"""DVC stage `train_<run>`: one training run into models/<run>/ (weights.pth, dvclive/).

Options: the shared `train` block under `train_<run>` (null: TrainConfig's default); `data` names shard sets
(registry datasets) under `shard.url`, `after` the run whose weights initialise this one. `train.launcher`
starts this script (`python`, or `torchrun ...` for one process per GPU). The final checkpoint.pth is not kept.
"""

from __future__ import annotations

from pathlib import Path

import typer
from stage import command, given, params


def train(run: str = typer.Argument(..., help="a run with a `train_<run>` block: s0 | s01 | s012 | s03 ...")) -> None:
    """Train run RUN into models/RUN."""
    from stcn.train.trainer import TrainConfig
    from stcn.train.trainer import train as run_stage

    knobs = params(f"train_{run}", "train")
    knobs.pop("launcher")
    after = knobs.pop("after", None)
    url = params("shard")["url"].rstrip("/")
    knobs["data"] = [f"{url}/{name}" for name in knobs["data"]]
    knobs["init"] = f"models/{after}/weights.pth" if after else knobs.get("init")
    run_stage(TrainConfig(out=str(Path("models") / run), keep_checkpoint=False, **given(knobs)))


if __name__ == "__main__":
    command(train)
