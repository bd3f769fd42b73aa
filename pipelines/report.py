"""DVC stage `report`: reports/ tables (ours, a baseline, the paper), pictures and training curves, via `stcn.reports`.

Benchmarks come from the registry in params.yaml (`datasets`); the runs are its arguments (compose.py writes them).
"""

from __future__ import annotations

from typing import Annotated

import typer
from stage import command, inference_knobs, load, registry


def report(
    runs: Annotated[list[str] | None, typer.Argument(help="the training runs whose curves are reported")] = None,
) -> None:
    """Write reports/<benchmark>.md|csv (+ pictures), summary.csv, training_curves.png and README.md."""
    from stcn.reports import benchmarks, write_reports

    p = load()
    ev, rep = inference_knobs(p["evaluate"]), p["report"]
    frames = f", the first {ev['max_frames']} frames of each sequence" if ev.get("max_frames") else ""
    setting = (f"{ev['device']}, {ev['precision']}, {ev['resolution'] or 480}p, "
               f"top-k {ev['top_k']}, a memory frame every {ev['mem_every']}{frames}")  # fmt: skip
    notes = [f"profile: `{p['profile']}`", f"evaluated weights: `{ev['weights']}` ({setting})", *rep["notes"]]
    write_reports("results", "models", "reports", benches=benchmarks(registry(p)), runs=tuple(runs or ()),
                  curves=rep["curves"], label=ev["weights"], notes=notes, amp=ev["precision"] != "fp32")  # fmt: skip


if __name__ == "__main__":
    command(report)
