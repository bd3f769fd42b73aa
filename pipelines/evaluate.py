"""DVC stage `evaluate_<name>`: `stcn evaluate` of `evaluate.weights` on a registry dataset into results/<name>/.

Options: the shared `evaluate` block under `datasets.<name>.evaluate` (split, inference settings; null: the
library's default).
`evaluate.launcher` starts this script (`python`, or `torchrun ...`: the videos are split across ranks).
"""

from __future__ import annotations

from pathlib import Path

import typer
from stage import command, dataset, inference_knobs, load, log


def evaluate(name: str = typer.Argument(..., help="a dataset of params.yaml `datasets`")) -> None:
    """Predict, time and (where ground truth exists) score dataset NAME; picture strips per sequence."""
    import dataclasses

    from stcn.eval.evaluate import evaluate as run
    from stcn.eval.ranks import setup, teardown
    from stcn.inference.commands import inference_settings
    from stcn.inference.loading import load_model

    p = load()
    ds = dataset(name, p)
    k = inference_knobs({**p["evaluate"], **(ds.evaluate or {})})
    settings = inference_settings(k["top_k"], k["mem_every"], k["include_last"], k["precision"],
                                  k["max_memory_frames"], k["device"], k["resolution"])  # fmt: skip
    ranks, device = setup(settings.device)
    settings = dataclasses.replace(settings, device=device)
    try:
        result = run(load_model(k["weights"], device), name, ds.folder, k["split"], Path("results") / name,
                     settings, progress=ranks.is_main, layout=ds.layout, year=ds.year,
                     max_frames=k["max_frames"], ranks=ranks)  # fmt: skip
    finally:
        teardown()
    if ranks.is_main:
        log(f"evaluate_{name}: {result.summary()}")


if __name__ == "__main__":
    command(evaluate)
