"""Scale rehearsal of the paper profile's BL30K data path, with a projection to the real 700 GB.

1. Generate six BL30K-layout segments (BL30K_a..f.tar, >= --size-gb in total) from the real bundled
   DAVIS frames and masks re-used under many video names; at every segment boundary some videos
   have their frames in one segment and their masks in the next.
2. Serve them from a local HTTP server (the download host) and run the `shard_bl30k` stage's command:
   `stcn shard bl30k-stream --source http`: download one segment, shard the videos it completes
   straight to a local `rclone serve s3` (the object store), delete it, next segment.
3. Stream-train stage 1 for --iterations iterations (crop 128, CPU) with 2 DataLoader workers reading
   those S3 shards.
Per step: wall time, MB/s, ratio to `dd` of the same bytes (measured in the same run), peak RSS of the
whole process tree, peak local disk (sampled every 0.2 s; the S3 server's folder stands for remote
storage and is not counted), bytes uploaded. Everything is written under --tmp and deleted at the end.

    python benchmarks/scale.py [--size-gb 10] [--iterations 20] [--workers 2] [--tmp DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pandas as pd
import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
from benchmarks.report import write_section  # noqa: E402

PAPER_BYTES = 700e9  # six ~115 GB segments
PAPER_FRAMES = 4.8e6  # ~30K videos
LETTERS = "abcdef"


def generate(folder: Path, size_gb: float) -> dict:
    """Six segments of the bundled videos under new names; returns what was written."""
    from stcn.data.fetch.sources import bl30k_members, bundled_videos, write_tar

    videos = bundled_videos()
    per_copy = sum(j.stat().st_size + (p.stat().st_size if p else 0) for _, fr in videos for _, j, p in fr)
    copies = math.ceil(size_gb * 1e9 / per_copy)
    # copies interleaved (a-00000, b-00000, ..., a-00001, ...) so the six segments get about equal bytes
    named = [(f"{name}-{k:05d}", frames) for k in range(copies) for name, frames in videos]
    per_seg = math.ceil(len(named) / len(LETTERS))
    folder.mkdir(parents=True, exist_ok=True)
    spanning = 0
    carry: list = []  # masks of the last videos of the previous segment
    for i, letter in enumerate(LETTERS):
        group = named[i * per_seg : (i + 1) * per_seg]
        members = bl30k_members(group)
        if i < len(LETTERS) - 1 and len(group) > 2:  # the last two videos' masks go to the next segment
            tail = {f"/Annotations/{n}/" for n, _ in group[-2:]}
            moved = [m for m in members if any(t in m[0] for t in tail)]
            members = [m for m in members if m not in moved]
            spanning += 2
        else:
            moved = []
        write_tar(folder / f"BL30K_{letter}.tar", carry + members)
        carry = moved
    frames = sum(len(fr) for _, fr in named)
    sizes = [(folder / f"BL30K_{c}.tar").stat().st_size for c in LETTERS]
    return {"videos": len(named), "frames": frames, "bytes": sum(sizes), "largest": max(sizes), "spanning": spanning,
            "copies": copies}  # fmt: skip


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def folder_bytes(path: Path) -> int:
    total = 0
    for dirpath, _, files in os.walk(path):
        for f in files:
            with contextlib.suppress(OSError):
                total += os.stat(os.path.join(dirpath, f)).st_size
    return total


class Sampler(threading.Thread):
    """Samples the RSS of a process tree and the bytes under some folders every 0.2 s; keeps the peaks."""

    def __init__(self, pid: int, folders: list[Path]) -> None:
        super().__init__(daemon=True)
        self.pid, self.folders = pid, folders
        self.peak_rss = self.peak_disk = 0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            try:
                proc = psutil.Process(self.pid)
                rss = proc.memory_info().rss
                for child in proc.children(recursive=True):
                    with contextlib.suppress(psutil.Error):
                        rss += child.memory_info().rss
                self.peak_rss = max(self.peak_rss, rss)
            except psutil.Error:
                pass
            self.peak_disk = max(self.peak_disk, sum(folder_bytes(f) for f in self.folders))
            self.done.wait(0.2)


def run_step(cmd: list[str], env: dict, disk: list[Path]) -> dict:
    """Run a command; wall time, peak tree RSS, peak disk of `disk`, and its stderr lines with times."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    sampler = Sampler(proc.pid, disk)
    sampler.start()
    lines = [(time.perf_counter() - start, line.rstrip()) for line in proc.stderr]
    proc.wait()
    sampler.done.set()
    sampler.join()
    seconds = time.perf_counter() - start
    if proc.returncode:
        raise SystemExit(f"{cmd[:5]} failed ({proc.returncode}): " + "\n".join(t for _, t in lines[-15:]))
    return {"seconds": seconds, "rss": sampler.peak_rss, "disk": sampler.peak_disk, "lines": lines}


def dd_rate(path: Path, tmp: Path) -> float:
    """MB/s of `dd` copying `path` (bs=4M, fsync), best of 2."""
    best = math.inf
    for _ in range(2):
        start = time.perf_counter()
        subprocess.run(["dd", f"if={path}", f"of={tmp}", "bs=4M", "conv=fsync"], check=True, capture_output=True)
        best = min(best, time.perf_counter() - start)
        tmp.unlink()
    return path.stat().st_size / 1e6 / best


def step_times(lines: list[tuple[float, str]]) -> tuple[float, float]:
    """(download seconds, shard seconds) from the stage's log: a segment's download ends at its
    `downloaded` line, its sharding at its `done, segment deleted` line."""
    download = shard = 0.0
    last = 0.0
    for t, text in lines:
        if ": downloaded" in text:
            download += t - last
            last = t
        elif "done, segment deleted" in text:
            shard += t - last
            last = t
    return download, shard


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-gb", type=float, default=10.0, help="total size of the six generated segments")
    ap.add_argument("--iterations", type=int, default=20)
    ap.add_argument("--workers", type=int, default=2, help="shard workers and DataLoader workers")
    ap.add_argument("--shard-size-mb", type=float, default=256)
    ap.add_argument("--tmp", type=Path, default=None, help="scratch folder (default: a temp dir); deleted after")
    args = ap.parse_args()
    from s3_server import start_rclone_s3

    load = os.getloadavg()
    tmp = Path(tempfile.mkdtemp(prefix="stcn-scale-", dir=args.tmp))
    server = http = None
    try:
        t0 = time.perf_counter()
        made = generate(tmp / "host", args.size_gb)
        gen_s = time.perf_counter() - t0
        mb = made["bytes"] / 1e6
        print(f"generated {mb / 1e3:.2f} GB, {made['videos']} videos in {gen_s:.0f} s", file=sys.stderr, flush=True)
        dd = dd_rate(tmp / "host" / "BL30K_a.tar", tmp / "dd.tar")
        port = _free_port()
        http = subprocess.Popen(
            [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(tmp / "host")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        (tmp / "s3" / "bench").mkdir(parents=True)  # the bucket
        server = start_rclone_s3(tmp / "s3", dir_cache_time=None)
        env = {**os.environ, **server.env(), "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
        time.sleep(1)
        work = tmp / "work"
        shard = run_step(
            [sys.executable, "-m", "stcn.cli", "shard", "bl30k-stream", "--source", "http",
             "--url", f"http://127.0.0.1:{port}/", "--work", str(work), "--out", "s3://bench/bl30k",
             "--workers", str(args.workers), "--shard-size-mb", str(args.shard_size_mb)],
            env, [work],
        )  # fmt: skip
        download_s, shard_s = step_times(shard["lines"])
        index = json.loads((tmp / "s3" / "bench" / "bl30k" / "index.json").read_text())
        uploaded = folder_bytes(tmp / "s3" / "bench" / "bl30k")
        train = run_step(
            [sys.executable, "-m", "stcn.cli", "train", "--stage", "1", "--data", "s3://bench/bl30k",
             "--out", str(tmp / "run"), "--init", "random", "--iterations", str(args.iterations), "--batch-size", "2",
             "--crop", "128", "--num-workers", str(args.workers), "--device", "cpu", "--log-every", "5"],
            env, [tmp / "run"],
        )  # fmt: skip
    finally:
        if server:
            server.stop()
        if http:
            http.terminate()
            http.wait()
        shutil.rmtree(tmp, ignore_errors=True)

    gib = 2**30
    samples = index["totals"]["samples"]
    total_s = shard["seconds"]
    rows = [
        {"step": "dd copy of a segment (bs=4M, fsync), time scaled to all", "seconds": mb / dd, "MB/s": dd, "x dd": 1.0,
         "peak RSS GiB": float("nan"), "peak local disk GiB": float("nan"), "uploaded GB": 0.0},
        {"step": "download (HTTP, 127.0.0.1)", "seconds": download_s, "MB/s": mb / download_s,
         "x dd": mb / download_s / dd, "peak RSS GiB": float("nan"), "peak local disk GiB": float("nan"),
         "uploaded GB": 0.0},
        {"step": f"shard to S3 (--check header, {args.workers} workers)", "seconds": shard_s, "MB/s": mb / shard_s,
         "x dd": mb / shard_s / dd, "peak RSS GiB": float("nan"), "peak local disk GiB": float("nan"),
         "uploaded GB": uploaded / 1e9},
        {"step": "download -> shard -> drop, whole stage", "seconds": total_s, "MB/s": mb / total_s,
         "x dd": mb / total_s / dd, "peak RSS GiB": shard["rss"] / gib, "peak local disk GiB": shard["disk"] / gib,
         "uploaded GB": uploaded / 1e9},
        {"step": f"stream-train {args.iterations} it (S3, crop 128, {args.workers} workers, CPU)",
         "seconds": train["seconds"], "MB/s": float("nan"), "x dd": float("nan"), "peak RSS GiB": train["rss"] / gib,
         "peak local disk GiB": train["disk"] / gib, "uploaded GB": 0.0},
    ]  # fmt: skip
    table = pd.DataFrame(rows).round(3)

    # projection: the stage downloads and shards each segment in turn, so T = D / r_download + D / (c * r_core)
    r_dl = mb / download_s  # MB/s; a real download is bounded by the network instead
    r_core = mb / shard_s / args.workers  # MB/s per core of sharding (header check)
    seg_gib = PAPER_BYTES / 6 / gib
    per_member = 31 + 45  # index bytes per member while sorting (Bl30kIndex)
    members = 2 * PAPER_FRAMES
    proj = []
    for label, cores, nodes in (("1 node, 1 core", 1, 1), ("1 node, 8 cores", 8, 1), ("1 node, 64 cores", 64, 1),
                                ("N=8 nodes x 8 cores", 8, 8), ("N=64 nodes x 8 cores", 8, 64)):  # fmt: skip
        hours = (PAPER_BYTES / 1e6 / r_dl + PAPER_BYTES / 1e6 / (cores * nodes * r_core)) / 3600
        if nodes > 1:  # segments mirrored to S3 once; every node reads its --part by offset (no shared download)
            hours = (PAPER_BYTES / 1e6 / (cores * nodes * r_core)) / 3600
        rss = shard["rss"] / gib / (args.workers + 1) * (cores + 1) + members / 6 * per_member / gib
        proj.append({
            "setup": label, "hours": round(hours, 2),
            "peak local disk": f"{seg_gib:.0f} GiB (one segment) + spill" if nodes == 1 else "~0 (reads S3 by offset)",
            "peak RSS GiB": round(rss, 1),
            "index (per segment / all)": f"{members / 6 * per_member / 1e9:.2f} / {members * per_member / 1e9:.2f} GB",
        })  # fmt: skip
    notes = (
        f"Input: six generated BL30K-layout segments, {mb / 1e3:.2f} GB, {made['videos']} videos "
        f"({made['frames']} frames) = the real bundled DAVIS sequences x {made['copies']} under new names (DAVIS, "
        f"CC BY-NC 4.0); {made['spanning']} videos have their frames in one segment and their masks in the next. "
        f"Output: {samples} samples in {index['totals']['shards']} shards on a local `rclone serve s3`, "
        f"{uploaded / 1e9:.2f} GB uploaded; no shard was written to local disk. Peak local disk = the stage's work "
        f"folder (one segment + the spill of videos continuing in the next); the largest segment is "
        f"{made['largest'] / gib:.2f} GiB, so peak / largest segment = {shard['disk'] / made['largest']:.2f}. "
        f"Peak RSS = all processes of the command (writer + workers, or "
        f"trainer + DataLoader workers). Per-step times come from the stage's log (a segment's `downloaded` and "
        f"`done` lines). dd: {dd:.0f} MB/s. Generation took {gen_s:.0f} s. Load average at start: "
        f"{load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} on {os.cpu_count()} cores (shared with other jobs).\n\n"
        f"Projection for the real BL30K ({PAPER_BYTES / 1e9:.0f} GB, ~{PAPER_FRAMES / 1e6:.1f} M frames, "
        f"~{members / 1e6:.1f} M members) from the measured rates: download r_dl = {r_dl:.0f} MB/s (here local; "
        f"a real one is bounded by the network and Google Drive's quota), sharding r_core = {r_core:.0f} MB/s per "
        f"core (header check). One node: T = D / r_dl + D / (c * r_core) (each segment is downloaded, then "
        f"sharded); N nodes (`--part I/N`, segments mirrored once to S3 and read by offset): "
        f"T = D / (N * c * r_core); these rows leave out the header pass every node makes over all segments and "
        f"the S3 read bandwidth (not measured here: over S3 the pass may read most of the bytes), so they are "
        f"lower bounds. Peak RSS = the measured "
        f"per-process RSS x (cores + 1) + the index of one segment (31 B/member, +45 B while sorting). "
        f"Training then streams from S3; no local copy.\n\n" + pd.DataFrame(proj).to_markdown(index=False)
    )
    print(write_section("Scale rehearsal: BL30K download -> shard -> S3 -> stream-train", table, notes))


if __name__ == "__main__":
    main()
