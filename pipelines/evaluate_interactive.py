"""DVC stage `evaluate_<dataset>_interactive`: DAVIS interactive (MiVOS-STCN) through davisinteractive.

Knobs: the `evaluate` block under `evaluate_<dataset>_interactive` (`weights`: the STCN weights; S2M / fusion
weights: null = a seeded S2M stand-in, linear fusion). Writes results/<dataset>_interactive/ and
reports/<dataset>_interactive.md.
"""

from __future__ import annotations

from pathlib import Path

import typer
from stage import command, dataset, load, log, params


def evaluate_interactive(name: str = typer.Argument(..., help="a DAVIS 2017 dataset of params.yaml `datasets`")):
    """Run the interactive benchmark on dataset NAME and write its report beside the paper's numbers."""
    from stcn.inference.settings import InferenceSettings
    from stcn.interactive.evaluate import evaluate_interactive as run

    stage = f"{name}_interactive"
    k = params(f"evaluate_{stage}", "evaluate")
    settings = InferenceSettings.from_knobs({**k, "include_last": False})
    out = Path("results") / stage
    data = run(k["weights"], k.get("s2m"), k.get("fusion"), k["seed"], dataset(name).folder, k["split"], out,
               settings, k["max_interactions"], k["max_time"])  # fmt: skip
    notes = [f"profile: `{load()['profile']}`", f"STCN weights: `{k['weights']}`", *(k.get("notes") or [])]
    report = (out / "report.md").read_text() + "\n" + "".join(f"- {n}\n" for n in notes)
    Path("reports").mkdir(exist_ok=True)
    (Path("reports") / f"{stage}.md").write_text(report)
    log(f"evaluate_{stage}: {data['overall']}")


if __name__ == "__main__":
    command(evaluate_interactive)
