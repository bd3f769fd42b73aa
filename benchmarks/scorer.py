"""Scorer speed: `stcn.eval` (frame by frame with OpenCV boundaries, processes by free cores) vs the official scorer.

The official scorer is represented by the test oracle of tests/test_metrics.py (loaded from that file): the
official code's structure (float64 stacks, one f_measure per object and frame, one process), on the same
predictions in the same run, alternated.
Two phases: the machine as found, then loaded with busy-loop processes (started here, stopped at the end) until
the 1-minute load average is at least `--load` (default 4); each phase prints its load. The default scorer picks
its process count from the free cores (`stcn.eval.davis_score.free_cores`), so it is timed as it would run then.
Run: `python benchmarks/scorer.py` (writes the "Scorer" section of reports/benchmarks.md); `--help` runs nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import multiprocessing
import os
import resource
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from stcn.data.folders import davis_sequences
from stcn.data.images import read_mask, write_mask

REPO = Path(__file__).resolve().parent.parent
DAVIS_MINI = REPO / "stcn" / "data" / "bundled" / "davis-mini"


def reference():
    """The naive official-style scorer module (tests/test_metrics.py, the tests' oracle)."""
    spec = importlib.util.spec_from_file_location("_scorer_reference", REPO / "tests" / "test_metrics.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_shifted(root: Path, year: str, split: str, out: Path, dy: int = 6, dx: int = -9) -> Path:
    """Write every gt mask shifted by (dy, dx) pixels as a stand-in for an imperfect prediction."""
    for seq in davis_sequences(root, year, split):
        for stem, path in seq.annotations.items():
            mask = read_mask(path)
            write_mask(out / seq.name / f"{stem}.png", np.roll(mask, (dy, dx), axis=(0, 1)) * (mask != 255))
    return out


def cpu_seconds() -> float:
    """CPU time of this process and its finished children (user + system)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def best_times(
    runs: dict[str, Callable[[], object]], repeats: int
) -> tuple[dict[str, float], dict[str, float], dict[str, object]]:
    """Best-of-`repeats` wall seconds and CPU seconds per run, interleaved so that all runs see the same load.

    CPU seconds do not count the time a run waits for a core, so their ratio is the ratio on a quiet core."""
    times: dict[str, list[float]] = {name: [] for name in runs}
    cpu: dict[str, list[float]] = {name: [] for name in runs}
    results = {}
    for _ in range(repeats):
        for name, run in runs.items():
            start, start_cpu = time.perf_counter(), cpu_seconds()
            results[name] = run()
            times[name].append(time.perf_counter() - start)
            cpu[name].append(cpu_seconds() - start_cpu)
    return {name: min(t) for name, t in times.items()}, {name: min(c) for name, c in cpu.items()}, results


def _spin() -> None:
    while True:
        pass


def runnable() -> str:
    """Runnable / total scheduling entities right now (/proc/loadavg), or '?'."""
    try:
        return Path("/proc/loadavg").read_text().split()[3]
    except OSError:
        return "?"


@contextlib.contextmanager
def busy_load(target: float, max_wait: float = 150.0, max_spinners: int = 8):
    """Busy-loop processes until the 1-minute load average reaches `target` (bounded wait); stopped on exit."""
    procs: list[multiprocessing.Process] = []
    try:
        short = target - os.getloadavg()[0]
        for _ in range(min(max_spinners, int(short) + 1) if short > 0 else 0):
            procs.append(multiprocessing.Process(target=_spin, daemon=True))
            procs[-1].start()
        start = time.monotonic()
        while procs and os.getloadavg()[0] < target and time.monotonic() - start < max_wait:
            time.sleep(5)
        yield len(procs)
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.join()


def measure(stacks, preds, frames: int, repeats: int, phase: str) -> tuple[list[dict], float, pd.DataFrame]:
    """Time the three end-to-end scorers and the two metric loops once (interleaved); rows and max |diff|."""
    from stcn.eval.davis_score import free_cores, score_davis, score_sequence

    ref = reference()
    load_before, tasks = os.getloadavg()[0], runnable()
    workers = min(3, free_cores())

    arrays = [(np.stack(g), np.stack(p), n) for g, p, n in stacks]  # the oracle's (T, H, W) stacks

    def naive_metrics() -> list:
        return [
            (ref.naive_j(g == k, p == k), [ref.naive_f(p[t] == k, g[t] == k) for t in range(len(g))])
            for g, p, n in arrays
            for k in range(1, n + 1)
        ]

    end_to_end, end_to_end_cpu, results = best_times(
        {
            "naive loop (official style)": lambda: ref.naive_score(DAVIS_MINI, "2017", "val", preds),
            "stcn.eval, 1 process": lambda: score_davis(DAVIS_MINI, "2017", "val", preds, progress=False, processes=1),
            f"stcn.eval default (free cores -> {workers} process{'es' if workers > 1 else ''})": lambda: score_davis(
                DAVIS_MINI, "2017", "val", preds, progress=False
            ),
        },
        repeats,
    )
    metrics_only, metrics_cpu, _ = best_times(
        {
            "naive loop (official style)": naive_metrics,
            "stcn.eval, 1 process": lambda: [score_sequence(g, p, n) for g, p, n in stacks],
        },
        repeats,
    )
    load = f"{load_before:.1f} -> {os.getloadavg()[0]:.1f} (runnable {tasks})"
    rows = []
    for stage, times, cpu in (
        ("read PNGs + score", end_to_end, end_to_end_cpu),
        ("metrics only (masks in memory)", metrics_only, metrics_cpu),
    ):
        base, base_cpu = times["naive loop (official style)"], cpu["naive loop (official style)"]
        for name, sec in times.items():
            rows.append({"machine load (1-min avg)": f"{phase}: {load}", "stage": stage, "scorer": name,
                         "frames": frames, f"s (best of {repeats})": sec, "ms/frame": 1e3 * sec / frames,
                         "speed-up": base / sec, "CPU s (best)": cpu[name],
                         "speed-up in CPU time": base_cpu / cpu[name]})  # fmt: skip
    (g_naive, _), *vectorised = results.values()
    diff = max(float(np.abs(g_naive.to_numpy() - g.to_numpy()).max()) for g, _ in vectorised)
    print(f"{phase}: load {load}; default scorer {end_to_end[list(end_to_end)[2]]:.3f} s vs naive "
          f"{end_to_end['naive loop (official style)']:.3f} s", flush=True)  # fmt: skip
    return rows, diff, vectorised[-1][0]


def main(repeats: int = 5, target_load: float = 4.0) -> pd.DataFrame:
    """Time both scorers on the bundled DAVIS val split (end to end, and metrics only), as found and under load."""
    sys.path.insert(0, str(REPO))
    from benchmarks.report import write_section
    from stcn.eval.davis_score import load_ground_truth, load_predictions

    load = os.getloadavg()
    seqs = davis_sequences(DAVIS_MINI, "2017", "val")
    frames = sum(len(s.annotations) - 2 for s in seqs)
    with tempfile.TemporaryDirectory() as tmp:
        preds = write_shifted(DAVIS_MINI, "2017", "val", Path(tmp))
        stacks = []
        for seq in seqs:
            gt, n, stems = load_ground_truth(seq, "2017")
            stacks.append((gt, load_predictions(preds, seq.name, stems, gt[0].shape, "2017"), n))

        rows, diff, g_vec = measure(stacks, preds, frames, repeats, "as found")
        with busy_load(target_load) as spinners:
            loaded, diff_loaded, _ = measure(stacks, preds, frames, repeats, f"+{spinners} busy loops")
    df = pd.DataFrame(rows + loaded).round(3).round({"ms/frame": 2, "speed-up": 1, "speed-up in CPU time": 1})
    diff = max(diff, diff_loaded)
    notes = (
        "Bundled DAVIS val (blackswan, car-shadow, libby; 854x480, 1 object each), predictions = gt shifted "
        "by (6, -9) px; frames = scored frames (first and last excluded). The naive loop is the tests' oracle "
        "(tests/test_metrics.py: official structure, float64 stacks, one f_measure per object and frame). "
        f"Max |difference| of the global scores between the two: {diff:.1e}; "
        f"J&F-Mean = {100 * g_vec.iloc[0, 0]:.2f} %. stcn.eval scores frame by frame (stcn/eval/metrics.py "
        "`frame_measures`: each object on its bounding box, boundaries by one OpenCV morphological gradient, "
        "matches by one disk dilation per boundary map). 'speed-up in CPU time' compares CPU seconds (this "
        "process and its finished children): the time waiting for a busy core is not in it, so it is the ratio a "
        "quiet machine gives one process. "
        f"The default runs one process per free core (usable cores minus the 1-minute load average, at least 1; "
        f"{os.cpu_count()} cores here, 3 sequences) and reads PNGs with as many threads. Load average (1/5/15 min) "
        f"at start {load[0]:.1f}/{load[1]:.1f}/{load[2]:.1f}, at the end {os.getloadavg()[0]:.1f}; the loaded phase "
        f"adds busy-loop processes until the 1-minute load is >= {target_load:g} (shared machine; interleaved "
        f"best-of-{repeats} times)."
    )
    print(write_section("Scorer", df, notes))
    return df


def cli() -> None:
    """Parse the arguments (`--help` prints help and exits without running anything), then run."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=5, help="interleaved repeats (best is kept)")
    ap.add_argument("--load", type=float, default=4.0, help="1-minute load average of the loaded phase")
    args = ap.parse_args()
    main(args.repeats, args.load)


if __name__ == "__main__":
    cli()
