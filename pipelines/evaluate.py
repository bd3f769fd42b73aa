"""DVC stage `evaluate_<benchmark>`: `stcn evaluate` of `evaluate.weights` into results/<benchmark>/.

Knobs: the `evaluate` block under `evaluate_<benchmark>` (dataset, split, inference settings).
`evaluate.launcher` starts this script (`python`, or `torchrun ...`: the videos are split across ranks).
"""

from __future__ import annotations

from pathlib import Path

import typer
from stage import command, log, params


def evaluate(benchmark: str = typer.Argument(...), root: Path = typer.Argument(..., help="dataset root")) -> None:
    """Predict, time and (where ground truth exists) score one benchmark."""
    import dataclasses

    from stcn.eval.evaluate import evaluate as run
    from stcn.eval.ranks import setup, teardown
    from stcn.inference.commands import inference_settings
    from stcn.inference.loading import load_model

    k = params(f"evaluate_{benchmark}", "evaluate")
    settings = inference_settings(k["top_k"], k["mem_every"], k["include_last"], k["precision"],
                                  k["max_memory_frames"], k["device"], k["resolution"])  # fmt: skip
    ranks, device = setup(settings.device)
    settings = dataclasses.replace(settings, device=device)
    out = Path("results") / benchmark
    try:
        result = run(load_model(k["weights"], device), k["dataset"], root, k["split"], out, settings, False, ranks)
    finally:
        teardown()
    if ranks.is_main:
        log(f"evaluate_{benchmark}: {result.summary()}")


if __name__ == "__main__":
    command(evaluate)
