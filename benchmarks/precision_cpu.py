"""`stcn segment` as a user runs it at the weights' own resolution: fp32 vs fast vs auto vs ONNX Runtime, same run.

    python benchmarks/precision_cpu.py                # writes the "Precision rungs on this CPU" section
    python benchmarks/precision_cpu.py --frames 20 --repeats 3

Weights: the parity weights (tests/data/parity, made by its script), as benchmarks/inference.py does, with a
weights.json sidecar of a sample-trained model
(crop 96 -> --resolution 120), so no run is given --resolution: each takes the weights' own. The ONNX Runtime
run uses `stcn export` of the same weights (its manifest carries the resolution). Every command is a fresh
`python -m stcn.cli segment` process on the same blackswan frames; the four alternate, repeat after repeat, and
the compute FPS each prints (I/O excluded) is kept, median and best. `auto` reports the rung it chose.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from conftest import DAVIS  # noqa: E402

from benchmarks.inference import weights as pick_weights  # noqa: E402
from benchmarks.report import write_section  # noqa: E402
from stcn.inference.settings import native_half  # noqa: E402
from stcn.model.trained import write_trained_at  # noqa: E402

FPS = re.compile(r"segmented (\d+) frames in ([\d.]+) s \(([\d.]+) FPS, precision (\w+)")


def segment(weights: Path, frames: Path, mask: Path, out: Path, extra: list[str]) -> tuple[float, str]:
    """One `stcn segment` process: (compute FPS it printed, the rung it says ran)."""
    cmd = [sys.executable, "-m", "stcn.cli", "segment", "--weights", str(weights), "--frames", str(frames),
           "--first-mask", str(mask), "--out", str(out), "--quiet", *extra]  # fmt: skip
    r = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    found = FPS.search(r.stderr)
    if r.returncode != 0 or found is None or "--resolution 120" not in r.stderr:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{r.stderr}")
    shutil.rmtree(out, ignore_errors=True)
    return float(found.group(3)), found.group(4)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=20, help="first frames of blackswan (854x480, 1 object)")
    ap.add_argument("--repeats", type=int, default=3, help="alternated repeats")
    args = ap.parse_args()
    load_start = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="stcn-precision-") as tmp:
        tmp = Path(tmp)
        weights, source = pick_weights(tmp)
        write_trained_at(weights, stage=3, crop=96)  # as `stcn train` writes for the sample's crop: 120p
        frames = tmp / "frames"
        frames.mkdir()
        for jpg in sorted((DAVIS / "JPEGImages/480p/blackswan").glob("*.jpg"))[: args.frames]:
            shutil.copy(jpg, frames)
        mask = DAVIS / "Annotations/480p/blackswan/00000.png"
        runs = {"fp32": ["--precision", "fp32"], "fast": ["--precision", "fast"], "auto (default)": []}
        try:
            import onnxruntime  # noqa: F401

            export = [sys.executable, "-m", "stcn.cli", "export", "--weights", str(weights), "--out", str(tmp / "onnx")]
            subprocess.run(export, check=True, env={**os.environ, "PYTHONPATH": str(REPO)})
            runs["onnxruntime"] = ["--backend", "onnxruntime"]
        except ImportError:
            print("onnxruntime not installed: its row is left out", flush=True)
        fps: dict[str, list[float]] = {name: [] for name in runs}
        chosen = ""
        started = time.monotonic()
        for repeat in range(args.repeats):
            for name, extra in runs.items():
                w = tmp / "onnx" if name == "onnxruntime" else weights
                value, rung = segment(w, frames, mask, tmp / "out", extra)
                fps[name].append(value)
                chosen = rung if name.startswith("auto") else chosen
                print(f"repeat {repeat + 1}: {name}: {value:.2f} FPS (ran {rung})", flush=True)
        minutes = (time.monotonic() - started) / 60
    fp32 = statistics.median(fps["fp32"])
    rows = [{"path": name if not name.startswith("auto") else f"auto (default) -> {chosen}",
             "frames": args.frames, "resolution": 120, "runs": len(v), "median FPS": round(statistics.median(v), 3),
             "best FPS": round(max(v), 3), "median vs fp32": round(statistics.median(v) / fp32, 3)}
            for name, v in fps.items()]  # fmt: skip
    native = "yes" if native_half("cpu") else "no (no amx_bf16 / avx512_bf16 in /proc/cpuinfo)"
    notes = (
        f"`stcn segment` processes, each on the first {args.frames} blackswan frames (854x480, 1 object), at the "
        f"weights' own resolution (weights.json: crop 96 -> --resolution 120; no run passes --resolution); compute "
        f"FPS as `stcn segment` prints it (I/O excluded). The paths alternate (fp32, fast, auto, ONNX Runtime), "
        f"{args.repeats} repeats, {minutes:.1f} min in all. Native half precision on this CPU: {native}; auto chose "
        f"{chosen}. Weights: {source}. Torch threads: {torch.get_num_threads()}. Load average (1/5/15 min) at "
        f"start: {'/'.join(f'{x:.1f}' for x in load_start)}, at end: {os.getloadavg()[0]:.1f} (a shared machine)."
    )
    print(write_section("Precision rungs on this CPU (stcn segment, weights' resolution)", pd.DataFrame(rows), notes))


if __name__ == "__main__":
    main()
