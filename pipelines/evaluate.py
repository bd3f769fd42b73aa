"""DVC stage `evaluate_<benchmark>@<model>`: one model of `evaluate.models` on a registry dataset into
results/<benchmark>/<model>/.

Options: the shared `evaluate` block under `datasets.<benchmark>.evaluate` (split, inference settings; null: the
library's default). `evaluate.launcher` starts this script (`python`, or `torchrun ...`: the videos are split
across ranks); every rank calls `stcn.eval.benchmark.evaluate_entry`, as `stcn evaluate` does.
"""

from __future__ import annotations

from pathlib import Path

import typer
from stage import command, dataset, load, log, model_weights


def evaluate(
    name: str = typer.Argument(..., help="a dataset of params.yaml `datasets`"),
    model: str = typer.Argument(..., help="a model of params.yaml `evaluate.models`"),
) -> None:
    """Predict, time and (where ground truth exists) score dataset NAME with MODEL; picture strips per sequence."""
    from stcn.eval.benchmark import evaluate_entry
    from stcn.inference.settings import InferenceSettings

    p = load()
    ds = dataset(name, p)
    knobs = {**p["evaluate"], **(ds.evaluate or {})}
    result = evaluate_entry(ds, model_weights(model, p), InferenceSettings.from_knobs(knobs),
                            Path("results") / name / model, split=knobs.get("split"),
                            max_frames=knobs.get("max_frames"))  # fmt: skip
    if result is not None:
        log(f"evaluate_{name}@{model}: {result.summary()}")


if __name__ == "__main__":
    command(evaluate)
