"""DVC stage `evaluate_davis17_interactive`: DAVIS interactive (MiVOS-STCN) through davisinteractive.

Knobs: the `evaluate` block under `evaluate_davis17_interactive` (S2M / fusion weights: null = seeded
stand-ins). Writes results/davis17_interactive/ and reports/davis17_interactive.md.
"""

from __future__ import annotations

from pathlib import Path

import typer
from stage import command, inference_knobs, load, log, params


def evaluate_interactive(root: Path = typer.Argument(..., help="DAVIS 2017 trainval root")) -> None:
    """Run the interactive benchmark and write its report beside the paper's numbers."""
    from stcn.inference.commands import inference_settings
    from stcn.interactive.evaluate import evaluate_interactive as run

    k = inference_knobs(params("evaluate_davis17_interactive", "evaluate"))
    settings = inference_settings(k["top_k"], k["mem_every"], False, k["precision"], k["max_memory_frames"],
                                  k["device"], k["resolution"])  # fmt: skip
    out = Path("results") / "davis17_interactive"
    data = run(k["weights"], k["s2m"], k["fusion"], k["seed"], root, k["split"], out, settings,
               k["max_interactions"], k["max_time"])  # fmt: skip
    notes = [f"profile: `{load()['profile']}`", *(k.get("notes") or [])]
    report = (out / "report.md").read_text() + "\n" + "".join(f"- {n}\n" for n in notes)
    Path("reports").mkdir(exist_ok=True)
    (Path("reports") / "davis17_interactive.md").write_text(report)
    log(f"evaluate_davis17_interactive: {data['overall']}")


if __name__ == "__main__":
    command(evaluate_interactive)
