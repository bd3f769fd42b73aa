"""Wall time of the whole sample pipeline: `dvc repro` (sample profile, offline) in a fresh clone of HEAD.

Per stage seconds, the total, the load average, and whether s03 learned (training IoU: mean of the last
10% of iterations vs the first 10%). Run: `python benchmarks/sample_repro.py` (about a quarter of an hour
on 2 quiet cores; writes the "Sample pipeline" section of reports/benchmarks.md).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from benchmarks.report import write_section  # noqa: E402


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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--keep", type=Path, help="clone into this new folder and keep it (its dvc.lock, reports/)")
    keep = ap.parse_args().keep
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


if __name__ == "__main__":
    main()
