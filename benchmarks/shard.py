"""Benchmark `stcn shard bl30k`: throughput vs a plain `dd` copy of the same bytes, and peak RSS.

Input: a generated BL30K-layout segment (>= 2 GB) made of the real bundled DAVIS frames and masks
repeated under new video names, in `tar cf` order (all JPEGImages, then all Annotations), so every
video's frames and masks lie about half the segment apart. Generated in a temp dir, deleted after.

    python benchmarks/shard.py [--size-gb 2] [--shard-size-mb 256]
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.report import write_section  # noqa: E402
from stcn.data.fetch.sources import bl30k_members, bundled_videos, write_tar  # noqa: E402


def _hwm_mib(pid: int) -> float:
    """The process's peak resident set so far (VmHWM; fresh after exec, unlike fork-inherited ru_maxrss)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def run_measured(cmd: list[str]) -> tuple[float, float, str]:
    """Wall seconds, peak RSS (MiB, VmHWM polled every 10 ms) of the child, and its stderr."""
    with tempfile.TemporaryFile("w+") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, text=True)
        peak = 0.0
        while proc.poll() is None:
            peak = max(peak, _hwm_mib(proc.pid))
            time.sleep(0.01)
        seconds = time.perf_counter() - start
        err.seek(0)
        log = err.read()
    if proc.returncode:
        raise SystemExit(f"{cmd[:4]} failed ({proc.returncode}): {log.strip()[-500:]}")
    return seconds, peak, log


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-gb", type=float, default=2.0)
    ap.add_argument("--shard-size-mb", type=float, default=256)
    args = ap.parse_args()

    load = os.getloadavg()[0]
    videos = bundled_videos()
    per_copy = sum(j.stat().st_size + (p.stat().st_size if p else 0) for _, fr in videos for _, j, p in fr)
    copies = math.ceil(args.size_gb * 1e9 / per_copy)
    tmp = Path(tempfile.mkdtemp(prefix="stcn-bench-shard-"))
    try:
        many = sorted((f"{name}-{k:04d}", frames) for k in range(copies) for name, frames in videos)
        seg = tmp / "BL30K_a.tar"
        t0 = time.perf_counter()
        write_tar(seg, bl30k_members(many))
        gen_s = time.perf_counter() - t0
        size = seg.stat().st_size
        largest = max(sum(j.stat().st_size + p.stat().st_size for _, j, p in fr) for _, fr in videos)
        print(f"generated {size / 1e9:.2f} GB, {len(many)} videos in {gen_s:.0f} s", file=sys.stderr)

        dd_s, dd_rss, _ = run_measured(["dd", f"if={seg}", f"of={tmp / 'copy.tar'}", "bs=4M", "conv=fsync"])
        (tmp / "copy.tar").unlink()
        index_s, index_rss, _ = run_measured(
            [
                sys.executable,
                "-c",
                ("import sys; from stcn.data.shards.bl30k import Bl30kIndex; Bl30kIndex([sys.argv[1]])"),
                str(seg),
            ]
        )
        base_s, base_rss, _ = run_measured([sys.executable, "-c", "import stcn.data.shards.build"])
        cmd = [
            sys.executable,
            "-m",
            "stcn.cli",
            "shard",
            "bl30k",
            "--segments",
            str(seg),
            "--out",
            str(tmp / "shards"),
            "--shard-size-mb",
            str(args.shard_size_mb),
        ]
        shard_s, shard_rss, log = run_measured(cmd)
        out_bytes = sum(p.stat().st_size for p in (tmp / "shards").glob("*.tar"))
        shards = len(list((tmp / "shards").glob("*.tar")))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    mb = size / 2**20
    df = pd.DataFrame([
        {"step": "dd copy (bs=4M, fsync)", "seconds": dd_s, "MiB/s": mb / dd_s, "peak RSS MiB": dd_rss},
        {"step": "index pass (headers only)", "seconds": index_s, "MiB/s": mb / index_s, "peak RSS MiB": index_rss},
        {"step": "stcn shard bl30k (total)", "seconds": shard_s, "MiB/s": mb / shard_s, "peak RSS MiB": shard_rss},
        {"step": "python + import only", "seconds": base_s, "MiB/s": float("nan"), "peak RSS MiB": base_rss},
    ]).round(2)  # fmt: skip
    notes = (
        f"Input: one generated BL30K-layout segment of {size / 1e9:.2f} GB ({len(many)} videos = the "
        f"{len(videos)} real bundled DAVIS sequences x {copies}, DAVIS CC BY-NC 4.0; "
        f"{sum(2 * len(fr) for _, fr in many)} members) in `tar cf` order, so a video's masks lie "
        f"~{size / 2e9:.1f} GB after its frames. Output: {shards} shards, {out_bytes / 1e9:.2f} GB "
        f"(--shard-size-mb {args.shard_size_mb:g}).\n"
        f"Shard throughput = {mb / shard_s:.0f} MiB/s = {dd_s / shard_s:.2f}x of dd; every JPEG is decoded "
        f"(1/8 scale) and every mask PNG decoded to check them, which dominates the time on this CPU. "
        f"Peak RSS {shard_rss:.0f} MiB vs {base_rss:.0f} MiB for the interpreter + imports; the largest "
        f"video holds {largest / 2**20:.1f} MiB. The header index keeps 31 bytes/member (+~45 while sorting "
        f"it), the one part that grows with the dataset: ~0.3 GB (+0.45 GB briefly) for the full BL30K "
        f"(~9.6 M members). Disk: only the shards (no extraction, no spill). The segment was just written, "
        f"so dd and shard both read it from the page cache. Load average at start: {load:.1f} on "
        f"{os.cpu_count()} cores (other jobs were running)."
    )
    print(write_section("Shard BL30K", df, notes))
    print(log.strip().splitlines()[-1], file=sys.stderr)


if __name__ == "__main__":
    main()
