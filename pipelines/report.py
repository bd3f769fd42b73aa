"""DVC stage `report`: reports/ tables (a row per evaluated model, a baseline, the paper), pictures and training
curves, via `stcn.reports`.

Benchmarks come from the registry in params.yaml (`datasets`), the models from `evaluate.models`; the runs whose
curves are drawn are its arguments (compose.py writes them).
"""

from __future__ import annotations

from typing import Annotated

import typer
from stage import command, load, models, registry


def report(
    runs: Annotated[list[str] | None, typer.Argument(help="the training runs whose curves are reported")] = None,
) -> None:
    """Write reports/<benchmark>.md|csv (+ pictures), summary.csv, training_curves.png and README.md."""
    from stcn.inference.settings import InferenceSettings
    from stcn.reports import benchmarks, write_reports

    p = load()
    ev, rep = {**p["evaluate"], **{k: v for k, v in InferenceSettings.defaults().items()
                                   if p["evaluate"].get(k) is None}}, p["report"]  # fmt: skip
    frames = f", the first {ev['max_frames']} frames of each sequence" if ev.get("max_frames") else ""
    setting = (f"{ev['device']}, {ev['precision']}, {ev['resolution'] or 480}p, "
               f"top-k {ev['top_k']}, a memory frame every {ev['mem_every']}{frames}")  # fmt: skip
    weights = ", ".join(f"`{m}` = `{w}`" for m, w in models(p).items())
    notes = [f"profile: `{p['profile']}`", f"evaluated models: {weights} ({setting})", *rep["notes"]]
    write_reports("results", "models", "reports", benches=benchmarks(registry(p)), models=list(models(p)),
                  runs=tuple(runs or ()), curves=rep["curves"], notes=notes,
                  amp=ev["precision"] != "fp32")  # fmt: skip


if __name__ == "__main__":
    command(report)
