"""DVC stage `evaluate_<name>`: `stcn evaluate` of `evaluate.weights` on a registry dataset into results/<name>/.

Options: the shared `evaluate` block under `datasets.<name>.evaluate` (split, inference settings).
"""

from __future__ import annotations

from pathlib import Path

import typer
from stage import command, dataset, load, log


def evaluate(name: str = typer.Argument(..., help="a dataset of params.yaml `datasets`")) -> None:
    """Predict, time and (where ground truth exists) score dataset NAME; picture strips per sequence."""
    from stcn.eval.evaluate import evaluate as run
    from stcn.inference.commands import inference_settings
    from stcn.inference.loading import load_model

    p = load()
    entry = dataset(name, p)
    k = {**p["evaluate"], **(entry.get("evaluate") or {})}
    settings = inference_settings(k["top_k"], k["mem_every"], k["include_last"], k["amp"], k["max_memory_frames"],
                                  k["device"], k["resolution"])  # fmt: skip
    model = load_model(k["weights"], settings.device)
    result = run(model, name, entry["root"], k["split"], Path("results") / name, settings,
                 layout=entry["layout"], year=entry.get("year"), max_frames=k["max_frames"])  # fmt: skip
    log(f"evaluate_{name}: {result.summary()}")


if __name__ == "__main__":
    command(evaluate)
