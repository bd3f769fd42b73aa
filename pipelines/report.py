"""DVC stage `report`: reports/ tables (ours beside the paper) and training curves, via `stcn.reports`."""

from __future__ import annotations

from stage import command, load


def report() -> None:
    """Write reports/<benchmark>.md|csv, summary.csv, training_curves.png and README.md."""
    from stcn.reports import write_reports

    p = load()
    ev, rep = p["evaluate"], p["report"]
    setting = (f"{ev['device']}, {ev['precision']}, {ev['resolution'] or 480}p, "
               f"top-k {ev['top_k']}, a memory frame every {ev['mem_every']}")  # fmt: skip
    notes = [f"profile: `{p['profile']}`", f"evaluated weights: `{ev['weights']}` ({setting})", *rep["notes"]]
    write_reports("results", "models", "reports", curves=rep["curves"], label=ev["weights"], notes=notes,
                  amp=ev["precision"] != "fp32")  # fmt: skip


if __name__ == "__main__":
    command(report)
