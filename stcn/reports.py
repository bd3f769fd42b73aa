"""Benchmark tables beside the paper's published numbers, per-sequence scores and pictures, training curves.

Inputs are what `stcn evaluate` writes for each evaluated model (`<results>/<benchmark>/<model>/evaluation.json`,
the per-sequence CSV, `pictures/<seq>.png`) and what `stcn train` logs
(`<models>/<run>/dvclive/plots/metrics/train/<metric>.tsv`).
Which benchmarks and runs there are, their titles and the paper's numbers come from the registry
(`datasets.<name>.report`, see conf/config.yaml and `stcn.registry`) through `benchmarks`.
"""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from stcn.registry import Registry, load_registry

SOURCE = "STCN README (github.com/hkchengrex/STCN): s012 model, RTX 2080 Ti, 480p, FPS fp32 / AMP"
OURS_KEYS = {"J&F": "J&F-Mean", "J": "J-Mean", "F": "F-Mean", "G": "G", "J seen": "J-Seen", "F seen": "F-Seen",
             "J unseen": "J-Unseen", "F unseen": "F-Unseen"}  # fmt: skip
BASELINE = "copy the first-frame mask"


@dataclass(frozen=True)
class Benchmark:
    key: str
    title: str
    columns: list[str]
    paper: dict[str, float]
    scored_by: str = ""  # who scores it when the ground truth is not public


def benchmarks(registry: Registry | None = None) -> list[Benchmark]:
    """The reported benchmarks of a dataset registry (default: `load_registry()`): the datasets with an
    `evaluate` entry, in order."""
    out = []
    for ds in registry if registry is not None else load_registry():
        if ds.evaluate is None:
            continue
        report = ds.report or {}
        columns = list(ds.layout_type.report_columns)
        out.append(Benchmark(ds.name, report.get("title", ds.name), columns, dict(report.get("paper") or {}),
                             report.get("scored_by", "")))  # fmt: skip
    return out


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
    recorded = (evaluation.get("settings") or {}).get("precision")  # the precision the evaluation ran at
    half = amp if recorded is None else recorded != "fp32"
    row["FPS (AMP)" if half else "FPS"] = float(evaluation["fps"])
    return row


def settings_line(model: str, evaluation: dict) -> str:
    """How `model`'s results were made, from its `evaluation.json` (its settings and weights), as a bullet line."""
    s = evaluation.get("settings")
    if s is None:
        return f"- `{model}`: settings not recorded (an `evaluation.json` from before they were)\n"
    size = f"{s['resolution']}p" if s.get("resolution") else "the frames' own size"
    extra = [f"at most {s['max_memory_frames']} memory frames" if s.get("max_memory_frames") else "",
             "the last frame as temporary memory" if s.get("include_last") else "",
             f"the first {s['max_frames']} frames of each sequence" if s.get("max_frames") else ""]  # fmt: skip
    text = f"- `{model}`: {s['device']}, {s['precision']}, {size}, top-k {s['top_k']}, a memory frame every "
    text += ", ".join([f"{s['mem_every']}", *filter(None, extra)])
    w = evaluation.get("weights")
    if w is not None:
        text += f"; weights `{w['path']}` ({w['backend']}, sha256 `{w['sha256']}`)"
    return text + "\n"


def baseline_row(bench: Benchmark, evaluation: dict | None) -> dict[str, float]:
    """The copy-the-first-frame-mask baseline's J&F (in %, as `evaluation.json` holds it), where it was scored."""
    row = {c: math.nan for c in bench.columns}
    if evaluation is not None and "baseline J&F-Mean" in evaluation and "J&F" in row:
        row["J&F"] = float(evaluation["baseline J&F-Mean"])
    return row


PAPER = "STCN s012 (paper)"


def benchmark_table(bench: Benchmark, evaluations: dict[str, dict | None], amp: bool = False) -> pd.DataFrame:
    """Over the benchmark's columns: a row per evaluated model (name -> its `evaluation.json`, None: not evaluated),
    the copy-the-first-frame baseline (the first model's that has one: it does not depend on the model), the
    paper's."""
    base = next((e for e in evaluations.values() if e is not None and "baseline J&F-Mean" in e), None)
    rows = [*(ours_row(bench, e, amp) for e in evaluations.values()), baseline_row(bench, base),
            {c: bench.paper.get(c, math.nan) for c in bench.columns}]  # fmt: skip
    return pd.DataFrame(rows, index=pd.Index([*evaluations, BASELINE, PAPER], name="model"))


def summary_table(tables: dict[str, pd.DataFrame], benches: list[Benchmark]) -> pd.DataFrame:
    """A row per benchmark and model: its, the baseline's and the paper's headline score (J&F or G) and FPS."""
    rows = []
    for bench in benches:
        if bench.key not in tables:
            continue
        t = tables[bench.key]
        score = "J&F" if "J&F" in t.columns else "G"
        base, paper = t.loc[BASELINE], t.loc[PAPER]
        for model in t.index.drop([BASELINE, PAPER]):
            ours = t.loc[model]
            fps = ours["FPS"] if not math.isnan(ours["FPS"]) else ours["FPS (AMP)"]
            rows.append({"benchmark": bench.title, "model": model, "score": score, "ours": ours[score],
                         BASELINE: base[score], "paper": paper[score], "ours FPS": fps,
                         "paper FPS": paper.get("FPS", math.nan)})  # fmt: skip
    return pd.DataFrame(rows)


def per_sequence_table(results: dict[str, Path]) -> pd.DataFrame | None:
    """Per object of each sequence: each model's J&F in % (model name -> its results folder, with the official
    per-sequence CSV) and the baseline's J&F; None when no model has the CSV."""
    columns: dict[str, pd.Series] = {}
    baseline = None
    for model, folder in results.items():
        found = sorted(Path(folder).glob("per-sequence_results-*.csv"))
        if not found:
            continue
        df = pd.read_csv(found[0]).set_index("Sequence")
        columns[f"J&F ({model})"] = 100 * (df["J-Mean"] + df["F-Mean"]) / 2
        base = found[0].with_name(f"baseline_{found[0].name}")
        if baseline is None and base.is_file():
            b = pd.read_csv(base).set_index("Sequence")
            baseline = 100 * (b["J-Mean"] + b["F-Mean"]) / 2
    if not columns:
        return None
    if baseline is not None:
        columns[f"J&F ({BASELINE})"] = baseline
    return pd.DataFrame(columns).rename_axis("Sequence")


def copy_pictures(results: str | Path, out: str | Path) -> list[Path]:
    """`<results>/pictures/*.png` copied into `out` (the sequence strips); the folder is rewritten."""
    out = Path(out)
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    return [Path(shutil.copyfile(p, out / p.name)) for p in sorted((Path(results) / "pictures").glob("*.png"))]


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
    """The experiment table's numbers (`reports/metrics.json`, DVC's metrics file): per benchmark and model the
    headline score in percent (`J&F-Mean`; YouTube-VOS `G` when scored) and `fps` (keys `<benchmark>.<model>.fps`),
    per training run the last logged value of each curve. Missing values are left out; the other scores are in
    `reports/<benchmark>.md`."""
    keys = {"J&F": "J&F-Mean", "G": "G", "FPS": "fps", "FPS (AMP)": "fps"}
    out: dict = {}
    for key, table in tables.items():
        for model in table.index.drop([BASELINE, PAPER]):
            row = table.loc[model]
            ours = {keys[c]: round(float(v), 2) for c, v in row.items() if c in keys and not math.isnan(v)}
            if ours:
                out.setdefault(key, {})[model] = ours
    train = {run: {m: round(float(df[m].iloc[-1]), 4) for m in df.columns if m != "step"} for run, df in curves.items()}
    if train:
        out["train"] = train
    return out


def read_curves(models: str | Path, metrics: list[str], runs: tuple[str, ...]) -> dict[str, pd.DataFrame]:
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
            if metric not in df:
                continue
            if len(df) < 50:
                ax.plot(df["step"], df[metric], marker=".", label=run)
            else:  # long runs: the raw values faint, a rolling mean over 5% of the run on top
                (raw,) = ax.plot(df["step"], df[metric], alpha=0.25, linewidth=0.8)
                window = max(5, len(df) // 20)
                mean = df[metric].rolling(window, min_periods=1).mean()
                ax.plot(df["step"], mean, color=raw.get_color(), label=f"{run} (mean of {window})")
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


def benchmark_section(
    bench: Benchmark, results: Path, out: Path, models: list[str], amp: bool
) -> tuple[str, pd.DataFrame]:
    """The markdown section of one benchmark (tables and pictures per model); writes `<key>.csv` and
    `<key>/<model>/*.png`."""
    folders = {m: results / bench.key / m for m in models}
    evaluations = {m: load_evaluation(f / "evaluation.json") for m, f in folders.items()}
    table = benchmark_table(bench, evaluations, amp)
    table.to_csv(out / f"{bench.key}.csv", float_format="%.4g")
    md = f"## {bench.title}\n\n{markdown(table)}\n"
    missing = [m for m, e in evaluations.items() if e is None]
    if missing:
        md += f"\nNot evaluated: {', '.join(missing)}.\n"
    made = [settings_line(m, e) for m, e in evaluations.items() if e is not None]
    if made:
        md += "\nSettings (each model's `evaluation.json`):\n\n" + "".join(made)
    if bench.scored_by and len(missing) < len(models):
        md += f"\nNot scored here ({bench.scored_by}); FPS is measured here.\n"
    per_seq = per_sequence_table(folders)
    if per_seq is not None:
        md += f"\nPer sequence (object), J&F in %:\n\n{markdown(per_seq)}\n"
    shutil.rmtree(out / bench.key, ignore_errors=True)
    (out / bench.key).mkdir(parents=True)
    for model, folder in folders.items():
        pictures = copy_pictures(folder, out / bench.key / model)
        if pictures:
            md += f"\nPredicted masks of {model} on evenly spaced frames of each sequence (first: the given mask):\n\n"
            md += "".join(f"{p.stem}\n\n![{p.stem}]({bench.key}/{model}/{p.name})\n\n" for p in pictures)
    return md, table


def write_reports(
    results: str | Path,
    trained: str | Path,
    out: str | Path,
    *,
    benches: list[Benchmark],
    models: list[str],
    runs: tuple[str, ...],
    curves: list[str],
    notes: list[str],
    amp: bool = False,
) -> list[Path]:
    """Per benchmark `<key>.md` + `<key>.csv` + `<key>/<model>/` (pictures), `summary.csv`, `metrics.json`,
    `training_curves.png` and `README.md` in `out`.

    `trained`: the folder of the training runs (`<trained>/<run>/dvclive/`); `models`: the evaluated models
    (`<results>/<benchmark>/<model>/`), a row each; `runs`: the training runs whose curves are drawn;
    `notes` are bullet lines for the README.
    """
    out, results = Path(out), Path(results)
    out.mkdir(parents=True, exist_ok=True)
    written, tables, sections = [], {}, []
    for bench in benches:
        md, tables[bench.key] = benchmark_section(bench, results, out, models, amp)
        (out / f"{bench.key}.md").write_text(md)
        written += [out / f"{bench.key}.md", out / f"{bench.key}.csv"]
        sections.append(md)
    summary = summary_table(tables, benches)
    summary.to_csv(out / "summary.csv", index=False, float_format="%.4g")
    logged = read_curves(trained, curves, runs)
    plot = plot_curves(logged, curves, out / "training_curves.png")
    (out / "metrics.json").write_text(json.dumps(metrics_summary(tables, logged), indent=2) + "\n")
    readme = (
        "# Reports\n\nWritten by the DVC stage `report` (`stcn.reports`); re-run `dvc repro report`, do not edit.\n\n"
        + "".join(f"- {n}\n" for n in notes)
        + f"- paper numbers: {SOURCE}\n"
        + f"- `{BASELINE}`: every frame gets the first frame's mask; a model below it has not learnt to track\n\n"
        + f"## Summary\n\n{markdown(summary, index=False)}\n\n"
        + "\n".join(sections)
        + "\n## Training curves\n\n![training curves](training_curves.png)\n"
    )
    (out / "README.md").write_text(readme)
    return [*written, out / "summary.csv", out / "metrics.json", plot, out / "README.md"]
