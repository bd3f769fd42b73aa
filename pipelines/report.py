"""DVC stage `report`: reports/ tables (a row per evaluated model, a baseline, the paper), pictures and training
curves, via `stcn.reports`.

Benchmarks come from the registry in params.yaml (`datasets`), the models from `evaluate.models`; the runs whose
curves are drawn are its arguments (compose.py writes them). How each result was made (inference settings, the
weights and their sha256) comes from its `evaluation.json`, never from params.yaml.
"""

from __future__ import annotations

from typing import Annotated

import typer
from stage import command, load, models, registry


def report(
    runs: Annotated[list[str] | None, typer.Argument(help="the training runs whose curves are reported")] = None,
) -> None:
    """Write reports/<benchmark>.md|csv (+ pictures), summary.csv, training_curves.png and README.md."""
    from stcn.reports import benchmarks, write_reports

    p = load()
    rep = p["report"]
    weights = ", ".join(f"`{m}` = `{w}`" for m, w in models(p).items())
    # how each result was made (settings, weights' sha256) is read from its evaluation.json, not from params
    notes = [f"profile: `{p['profile']}`", f"evaluated models: {weights} (settings: each benchmark's section)",
             *rep["notes"]]  # fmt: skip
    write_reports("results", "models", "reports", benches=benchmarks(registry(p)), models=list(models(p)),
                  runs=tuple(runs or ()), curves=rep["curves"], notes=notes)  # fmt: skip


if __name__ == "__main__":
    command(report)
