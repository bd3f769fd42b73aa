"""Wall time of the whole sample pipeline: `dvc repro` (sample profile, offline) in a fresh clone of HEAD.

Per stage seconds, the total, the load average, and whether s03 learned (training IoU: mean of the last
10% of iterations vs the first 10%). Run: `python benchmarks/sample_repro.py` (about a quarter of an hour
on 2 quiet cores; writes the "Sample pipeline" section of reports/benchmarks.md).

Every run is appended to reports/sample_repro_runs.csv (date, machine, load, seconds); the "Measured" sentence of
reports/history.md (between `<!-- sample_repro -->` and `<!-- end -->`) is rewritten from all of them as ranges per
machine with the load they were measured at, so one quiet run never stands for every machine.
`--history-only` rewrites that sentence from the CSV without running anything.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
RUNS = ROOT / "reports" / "sample_repro_runs.csv"
HISTORY = ROOT / "reports" / "history.md"  # dated measurements
MARKED = re.compile(r"(<!-- sample_repro -->\n)(.*?)(<!-- end -->)", re.S)
sys.path.insert(0, str(ROOT))
from benchmarks.report import machine, write_section  # noqa: E402


def repro(repo: Path) -> list[tuple[str, float]]:
    """Run `dvc repro` in `repo`; (stage, seconds) in the order they ran."""
    env = {**os.environ, "PYTHONPATH": str(repo), "DVC_NO_ANALYTICS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "dvc", "repro"], cwd=repo, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip
    stages, start, current = [], time.perf_counter(), None
    for line in proc.stdout:
        if m := re.search(r"Running stage '([^']+)'", line):
            now = time.perf_counter()
            if current:
                stages.append((current, now - start))
            current, start = m.group(1), now
    if proc.wait() != 0:
        sys.exit(f"dvc repro failed with exit code {proc.returncode}")
    if current:
        stages.append((current, time.perf_counter() - start))
    return stages


def learning(repo: Path, run: str = "s03") -> tuple[float, float]:
    """Mean training IoU of the first and of the last 10% of `run`'s iterations."""
    iou = pd.read_csv(repo / "models" / run / "dvclive/plots/metrics/train/iou.tsv", sep="\t")["iou"]
    n = max(1, len(iou) // 10)
    return float(iou[:n].mean()), float(iou[-n:].mean())


def minutes(seconds: float) -> str:
    """`9 min 32 s`."""
    m, s = divmod(round(seconds), 60)
    return f"{m} min {s} s"


def span(values: pd.Series, fmt) -> str:
    """`lo–hi` of `values` written with `fmt` (one value when they agree)."""
    lo, hi = fmt(values.min()), fmt(values.max())
    return lo if lo == hi else f"{lo} – {hi}"


def at(run: pd.Series) -> str:
    """`**9 min 32 s** (1-min load average 0.8 before, 1.6 after)`."""
    load = f"1-min load average {run['load_before']:.1f} before, {run['load_after']:.1f} after"
    return f"**{minutes(run['total_s'])}** ({load})"


def measured(runs: pd.DataFrame) -> str:
    """The history's sentence: per machine, the range of total and train_s03 times and the load they ran at."""
    parts = []
    for host, group in runs.groupby("machine", sort=False):
        ordered = group.sort_values("total_s", kind="stable")  # by position: the CSV's index may repeat labels
        fast, slow = ordered.iloc[0], ordered.iloc[-1]
        took = at(fast) if len(group) == 1 else f"{at(fast)} to {at(slow)}"
        parts.append(f"{took} over {len(group)} run{'s' * (len(group) > 1)} (`train_s03`: "
                     f"{span(group['train_s03_s'], minutes)}) on {host}")  # fmt: skip
    text = (
        "**Measured:** `dvc repro` of the sample profile from a fresh clone took " + "; ".join(parts) + ", no GPU "
        "(`python benchmarks/sample_repro.py`, every run in `reports/sample_repro_runs.csv`, the latest per stage "
        "in `reports/benchmarks.md`)."
    )
    return textwrap.fill(text, width=115, break_long_words=False, break_on_hyphens=False) + "\n"


def write_history(runs: pd.DataFrame) -> None:
    """Replace the marked "Measured" sentence of reports/history.md with `measured(runs)`."""
    text = HISTORY.read_text()
    if not MARKED.search(text):
        sys.exit("reports/history.md lacks the <!-- sample_repro --> ... <!-- end --> block")
    HISTORY.write_text(MARKED.sub(lambda m: m.group(1) + measured(runs) + m.group(3), text, count=1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--keep", type=Path, help="clone into this new folder and keep it (its dvc.lock, reports/)")
    ap.add_argument("--history-only", action="store_true", help="only rewrite the history's sentence from the CSV")
    args = ap.parse_args()
    if args.history_only:
        return write_history(pd.read_csv(RUNS))
    keep = args.keep
    with tempfile.TemporaryDirectory(prefix="stcn-sample-") as tmp:
        repo = keep or Path(tmp) / "repo"
        subprocess.run(["git", "clone", "-q", str(ROOT), str(repo)], check=True)
        load_before = os.getloadavg()
        stages = repro(repo)
        load_after = os.getloadavg()
        first, last = learning(repo)
    table = pd.DataFrame(stages, columns=["stage", "seconds"])
    table.loc[len(table)] = ["total", table["seconds"].sum()]
    table["seconds"] = table["seconds"].round(1)
    notes = (f"Load average (1, 5, 15 min) before: {', '.join(f'{x:.2f}' for x in load_before)}; after: "
             f"{', '.join(f'{x:.2f}' for x in load_after)}. s03 training IoU: first 10% of iterations {first:.3f}, "
             f"last 10% {last:.3f}.")  # fmt: skip
    print(write_section("Sample pipeline (dvc repro)", table, notes))
    import torch

    cpu = machine().split(", Python")[0]
    row = {"date": time.strftime("%Y-%m-%d"), "machine": f"{cpu}, torch {torch.__version__}",
           "load_before": round(load_before[0], 2), "load_after": round(load_after[0], 2),
           "train_s03_s": dict(stages).get("train_s03", float("nan")), "total_s": table["seconds"].iloc[-1],
           "source": "benchmarks/sample_repro.py"}  # fmt: skip
    runs = pd.concat([pd.read_csv(RUNS), pd.DataFrame([row])]) if RUNS.exists() else pd.DataFrame([row])
    runs.to_csv(RUNS, index=False)
    write_history(runs)


if __name__ == "__main__":
    main()
