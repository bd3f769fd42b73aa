"""Benchmark tables beside the paper's published numbers, and training-curve plots.

Inputs are what `stcn evaluate` writes (`<results>/<benchmark>/evaluation.json`) and what
`stcn train` logs (`<models>/<run>/dvclive/plots/metrics/train/<metric>.tsv`).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

SOURCE = "STCN README (github.com/hkchengrex/STCN): s012 model, RTX 2080 Ti, 480p, FPS fp32 / AMP"
DAVIS_COLUMNS = ["J&F", "J", "F", "FPS", "FPS (AMP)"]
YOUTUBE_COLUMNS = ["G", "J seen", "F seen", "J unseen", "F unseen", "FPS", "FPS (AMP)"]
OURS_KEYS = {"J&F": "J&F-Mean", "J": "J-Mean", "F": "F-Mean", "G": "G", "J seen": "J-Seen", "F seen": "F-Seen",
             "J unseen": "J-Unseen", "F unseen": "F-Unseen"}  # fmt: skip
RUNS = ("s0", "s01", "s012", "s03")


@dataclass(frozen=True)
class Benchmark:
    key: str
    title: str
    columns: list[str]
    paper: dict[str, float]
    scored_by: str = ""  # who scores it when the ground truth is not public


BENCHMARKS = [
    Benchmark("davis16", "DAVIS 2016 val", DAVIS_COLUMNS,
              {"J&F": 91.7, "J": 90.4, "F": 93.0, "FPS": 26.9, "FPS (AMP)": 40.8}),
    Benchmark("davis17", "DAVIS 2017 val", DAVIS_COLUMNS,
              {"J&F": 85.3, "J": 82.0, "F": 88.6, "FPS": 20.2, "FPS (AMP)": 34.1}),
    Benchmark("davis17_testdev", "DAVIS 2017 test-dev", DAVIS_COLUMNS,
              {"J&F": 79.9, "J": 76.3, "F": 83.5, "FPS": 14.6, "FPS (AMP)": 22.7},
              "test-dev masks are not public: submit the predicted masks to the DAVIS challenge server"),
    Benchmark("youtube18", "YouTube-VOS 2018 val", YOUTUBE_COLUMNS,
              {"G": 84.3, "J seen": 83.2, "F seen": 87.9, "J unseen": 79.0, "F unseen": 87.2},
              "submit results/<benchmark>/submission.zip to the YouTube-VOS evaluation server"),
    Benchmark("youtube19", "YouTube-VOS 2019 val", YOUTUBE_COLUMNS,
              {"G": 84.2, "J seen": 82.6, "F seen": 87.0, "J unseen": 79.4, "F unseen": 87.7},
              "submit results/<benchmark>/submission.zip to the YouTube-VOS evaluation server"),
]  # fmt: skip


def load_evaluation(path: str | Path) -> dict | None:
    """An `evaluation.json`, or None when the benchmark was not evaluated."""
    path = Path(path)
    return json.loads(path.read_text()) if path.is_file() else None


def ours_row(bench: Benchmark, evaluation: dict | None, amp: bool) -> dict[str, float]:
    """Our numbers in the paper's units (scores in %, as `evaluation.json` holds them; FPS in the column of the
    precision used)."""
    row = {c: math.nan for c in bench.columns}
    if evaluation is None:
        return row
    for column in bench.columns:
        key = OURS_KEYS.get(column)
        if key in evaluation:
            row[column] = float(evaluation[key])
    row["FPS (AMP)" if amp else "FPS"] = float(evaluation["fps"])
    return row


def benchmark_table(bench: Benchmark, evaluation: dict | None, ours: str, amp: bool = False) -> pd.DataFrame:
    """Two rows, ours and the paper's, over the benchmark's columns."""
    rows = [ours_row(bench, evaluation, amp), {c: bench.paper.get(c, math.nan) for c in bench.columns}]
    return pd.DataFrame(rows, index=pd.Index([ours, "STCN s012 (paper)"], name="model"))


def summary_table(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """One row per benchmark: our and the paper's headline score (J&F or G) and FPS (fp32)."""
    rows = []
    for bench in BENCHMARKS:
        if bench.key not in tables:
            continue
        t = tables[bench.key]
        score = "J&F" if "J&F" in t.columns else "G"
        ours, paper = t.iloc[0], t.iloc[1]
        fps = ours["FPS"] if not math.isnan(ours["FPS"]) else ours["FPS (AMP)"]
        rows.append({"benchmark": bench.title, "score": score, "ours": ours[score], "paper": paper[score],
                     "ours FPS": fps, "paper FPS": paper["FPS"]})  # fmt: skip
    return pd.DataFrame(rows)


def markdown(df: pd.DataFrame, index: bool = True) -> str:
    """A markdown table: scores with one decimal, FPS with two, missing values as an em dash."""
    shown = df.copy().astype(object)
    for column in df.columns:
        digits = 2 if "FPS" in str(column) else 1
        shown[column] = [_fmt(v, digits) for v in df[column]]
    return shown.to_markdown(index=index, stralign="right", disable_numparse=True)


def _fmt(value, digits: int) -> str:
    if isinstance(value, str):
        return value
    return "—" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def metrics_summary(tables: dict[str, pd.DataFrame], curves: dict[str, pd.DataFrame]) -> dict:
    """The experiment table's numbers (`reports/metrics.json`, DVC's metrics file): per benchmark our headline
    score in percent (`J&F-Mean`; YouTube-VOS `G` when scored) and `fps`, per training run the last logged value
    of each curve. Missing values are left out; the other scores are in `reports/<benchmark>.md`."""
    keys = {"J&F": "J&F-Mean", "G": "G", "FPS": "fps", "FPS (AMP)": "fps"}
    out: dict = {}
    for key, table in tables.items():
        ours = {keys[c]: round(float(v), 2) for c, v in table.iloc[0].items() if c in keys and not math.isnan(v)}
        if ours:
            out[key] = ours
    train = {run: {m: round(float(df[m].iloc[-1]), 4) for m in df.columns if m != "step"} for run, df in curves.items()}
    if train:
        out["train"] = train
    return out


def read_curves(models: str | Path, metrics: list[str], runs: tuple[str, ...] = RUNS) -> dict[str, pd.DataFrame]:
    """Per run, a frame of `step` and the logged training metrics (runs without logs are left out)."""
    curves = {}
    for run in runs:
        folder = Path(models) / run / "dvclive" / "plots" / "metrics" / "train"
        frames = [pd.read_csv(folder / f"{m}.tsv", sep="\t").set_index("step") for m in metrics
                  if (folder / f"{m}.tsv").is_file()]  # fmt: skip
        if frames:
            curves[run] = pd.concat(frames, axis=1).reset_index()
    return curves


def plot_curves(curves: dict[str, pd.DataFrame], metrics: list[str], path: str | Path) -> Path:
    """One panel per metric, one line per training run, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(metrics), figsize=(5 * len(metrics), 3.6), squeeze=False)
    for ax, metric in zip(axes[0], metrics, strict=True):
        for run, df in curves.items():
            if metric in df:
                ax.plot(df["step"], df[metric], marker="." if len(df) < 50 else None, label=run)
        ax.set(title=f"train/{metric}", xlabel="iteration")
        ax.grid(alpha=0.3)
        if curves:
            ax.legend()
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, metadata={"Software": None})
    plt.close(fig)
    return path


def write_reports(
    results: str | Path,
    models: str | Path,
    out: str | Path,
    *,
    curves: list[str],
    label: str,
    notes: list[str],
    amp: bool = False,
) -> list[Path]:
    """Per benchmark `<key>.md` + `<key>.csv`, `summary.csv`, `metrics.json`, `training_curves.png` and `README.md`
    in `out`.

    `label` names our row (e.g. the evaluated weights); `notes` are bullet lines for the README.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written, tables, sections = [], {}, []
    for bench in BENCHMARKS:
        evaluation = load_evaluation(Path(results) / bench.key / "evaluation.json")
        table = tables[bench.key] = benchmark_table(bench, evaluation, label, amp)
        md = f"## {bench.title}\n\n{markdown(table)}\n"
        if evaluation is None:
            md += "\nNot evaluated.\n"
        elif bench.scored_by:
            md += f"\nNot scored here ({bench.scored_by.replace('<benchmark>', bench.key)}); FPS is measured here.\n"
        (out / f"{bench.key}.md").write_text(md)
        table.to_csv(out / f"{bench.key}.csv", float_format="%.4g")
        written += [out / f"{bench.key}.md", out / f"{bench.key}.csv"]
        sections.append(md)
    summary = summary_table(tables)
    summary.to_csv(out / "summary.csv", index=False, float_format="%.4g")
    logged = read_curves(models, curves)
    plot = plot_curves(logged, curves, out / "training_curves.png")
    (out / "metrics.json").write_text(json.dumps(metrics_summary(tables, logged), indent=2) + "\n")
    readme = (
        "# Reports\n\nWritten by the DVC stage `report` (`stcn.reports`); re-run `dvc repro report`, do not edit.\n\n"
        + "".join(f"- {n}\n" for n in notes)
        + f"- paper numbers: {SOURCE}\n\n## Summary\n\n{markdown(summary, index=False)}\n\n"
        + "\n".join(sections)
        + "\n## Training curves\n\n![training curves](training_curves.png)\n"
    )
    (out / "README.md").write_text(readme)
    return [*written, out / "summary.csv", out / "metrics.json", plot, out / "README.md"]
