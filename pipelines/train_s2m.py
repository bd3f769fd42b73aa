"""DVC stage `train_s2m`: S2M trained on strokes simulated from ground-truth masks (stcn.interactive.train_s2m).

Knobs: the `train_s2m` block (`davis` / `static`: registry dataset names, their folders are read; null
elsewhere: the library's default). Writes models/s2m/ (weights.pth, dvclive/, evaluation.json),
reports/s2m.md and reports/s2m.json (held-out IoU: trained vs untrained stand-in vs a no-network baseline).
"""

from __future__ import annotations

import json
from pathlib import Path

import typer
from stage import command, dataset, given, load, log, params


def train_s2m(out: Path = typer.Option(Path("models/s2m"), help="output folder of the weights")) -> None:
    """Train S2M into OUT and write its held-out report."""
    from stcn.atomic import write_text_atomic
    from stcn.interactive.train_s2m import S2MTrainConfig, report_markdown
    from stcn.interactive.train_s2m import train_s2m as run

    knobs = params("train_s2m")
    notes = knobs.pop("notes", None) or []
    for key in ("davis", "static"):  # registry names -> their folders
        if knobs.get(key):
            knobs[key] = str(dataset(knobs[key]).folder)
    result = run(S2MTrainConfig(out=str(out), **given(knobs)), progress=False)
    report = report_markdown(result, [f"profile: `{load()['profile']}`", *notes])
    write_text_atomic(Path("reports") / "s2m.md", report)
    metrics = {f"{r['round']}_{r['method'].replace('-', '_')}": r["iou"] for r in result["rows"]}
    write_text_atomic(Path("reports") / "s2m.json", json.dumps({"s2m_heldout_iou": metrics}, indent=1) + "\n")
    log(f"train_s2m: {metrics} -> {out}")


if __name__ == "__main__":
    command(train_s2m)
