"""Scale rehearsal of the BL30K data path with BL30K-sized videos, and a 700 GB projection from its measurements.

1. Generate --videos BL30K-sized videos (--frames frames each, ~20 MB: the real bundled DAVIS frames and
   masks at 854x480, cycled) in six BL30K-layout segments; at every segment boundary one video has its
   frames in one segment and its masks in the next.
2. Mirror: upload the six segments to a local `rclone serve s3` (timed: the mirror rate).
3. Streamed stage (`stcn shard bl30k-stream --source http`, segments served over HTTP, shards to S3),
   killed mid-run (SIGKILL to its whole process group once a shard spool exists), then resumed: no
   spool may be left (work folder, TMPDIR) and the index must hold every video. Peak disk = work
   folder + TMPDIR (every command here runs with TMPDIR inside the scratch folder).
4. Part path (the DVC `shard_bl30k_index` / `shard_bl30k_part` stages on N machines): the member scan
   over S3 (once; bytes fetched counted at a byte-counting proxy), then `stcn shard bl30k --part 0/2`
   from the S3 mirror through the stored index with 1 and with 2 workers (alternating, best of
   --rounds; one extra counted run gives S3 bytes fetched per byte of the part's own videos), and the
   writer alone (`write_shards` of samples already in memory, to local disk).
5. Training from the stage's shards: `stcn train --stage 1` from local shards and from S3 in the same
   run, and bytes fetched per training sample (the stage-1 loader, bl30k draws per video read) from both.
6. The projection to the real BL30K, computed from the measured rates only (every assumed quantity named).

    python benchmarks/scale.py [--videos 24] [--frames 160] [--iterations 6] [--samples 1024] [--tmp DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import resource
import shutil
import signal
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

LETTERS = "abcdef"
SPOOL = "stcn-shard-"
# assumed quantities of the projection (named in the report; everything else is measured in the run)
PAPER_BYTES = 700e9  # the six BL30K segments (~115 GB each, the release's download_bl30k.py)
PROJECT_NODES = (1, 2, 8)  # machines running one --part each


# --- input ------------------------------------------------------------------------------------------------
def bl30k_sized(count: int, frames: int) -> list:
    """`count` videos of `frames` real frames each: the bundled sequences' annotated frames, cycled."""
    from stcn.data.fetch.sources import bundled_videos

    sources = [(n, [f for f in fr if f[2] is not None]) for n, fr in bundled_videos()]
    sources.sort(key=lambda v: -sum(j.stat().st_size for _, j, _ in v[1]) / len(v[1]))  # the largest frames first
    out = []
    for v in range(count):
        name, src = sources[v % 2]  # the two sequences with the largest frames: ~BL30K's 23 MB a video
        out.append((f"{name}-{v:05d}", [(f"{i:05d}", *src[i % len(src)][1:]) for i in range(frames)]))
    return out


def generate(folder: Path, videos: int, frames: int) -> dict:
    """Six segments of the videos, the last video's masks of each segment in the next; what was written."""
    from stcn.data.fetch.sources import bl30k_members, write_tar

    named = bl30k_sized(videos, frames)
    per_seg = math.ceil(len(named) / len(LETTERS))
    folder.mkdir(parents=True, exist_ok=True)
    spanning, carry = 0, []
    for i, letter in enumerate(LETTERS):
        group = named[i * per_seg : (i + 1) * per_seg]
        members, moved = bl30k_members(group), []
        if i < len(LETTERS) - 1 and len(group) > 1:
            tail = f"/Annotations/{group[-1][0]}/"
            moved = [m for m in members if tail in m[0]]
            members = [m for m in members if tail not in m[0]]
            spanning += 1
        write_tar(folder / f"BL30K_{letter}.tar", carry + members)
        carry = moved
    sizes = [(folder / f"BL30K_{c}.tar").stat().st_size for c in LETTERS]
    per_video = [sum(j.stat().st_size + p.stat().st_size for _, j, p in fr) for _, fr in named]
    return {"videos": len(named), "frames": frames, "bytes": sum(sizes), "largest": max(sizes), "spanning": spanning,
            "video MB": sum(per_video) / len(per_video) / 1e6}  # fmt: skip


# --- measuring ----------------------------------------------------------------------------------------------
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


def spools(*folders: Path) -> list[Path]:
    """Shard spools (`stcn-shard-*`) directly under the folders."""
    return [p for f in folders if f.is_dir() for p in f.glob(f"{SPOOL}*")]


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


def children_cpu() -> float:
    """CPU seconds (user + system) of every waited-for descendant of this process so far."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run_step(cmd: list[str], env: dict, disk: list[Path], kill_when=None) -> dict:
    """Run a command in its own process group; wall time, CPU time, peak tree RSS, peak disk of `disk`,
    its stderr lines with times. `kill_when(lines)`: SIGKILL the whole group once it returns True."""
    start, cpu = time.perf_counter(), children_cpu()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env,
                            start_new_session=True)  # fmt: skip
    sampler = Sampler(proc.pid, disk)
    sampler.start()
    lines: list[tuple[float, str]] = []
    killed: dict = {}

    def watch() -> None:  # polls, so a kill does not wait for the next log line
        while proc.poll() is None and not killed:
            if kill_when(lines):
                killed.update(spools=[p.name for p in spools(*disk)], after_s=time.perf_counter() - start)
                os.killpg(proc.pid, signal.SIGKILL)
            time.sleep(0.05)

    watcher = threading.Thread(target=watch, daemon=True) if kill_when else None
    if watcher:
        watcher.start()
    for line in proc.stderr:
        lines.append((time.perf_counter() - start, line.rstrip()))
    proc.wait()
    if watcher:
        watcher.join()
    sampler.done.set()
    sampler.join()
    out = {"seconds": time.perf_counter() - start, "cpu": children_cpu() - cpu, "rss": sampler.peak_rss,
           "disk": sampler.peak_disk, "lines": lines, "killed": killed or None}  # fmt: skip
    if proc.returncode and not killed:
        raise SystemExit(f"{cmd[:5]} failed ({proc.returncode}): " + "\n".join(t for _, t in lines[-15:]))
    return out


def dd_rate(path: Path, tmp: Path) -> float:
    """MB/s of `dd` copying `path` (bs=4M, fsync), best of 2."""
    best = math.inf
    for _ in range(2):
        start = time.perf_counter()
        subprocess.run(["dd", f"if={path}", f"of={tmp}", "bs=4M", "conv=fsync"], check=True, capture_output=True)
        best = min(best, time.perf_counter() - start)
        tmp.unlink()
    return path.stat().st_size / 1e6 / best


# --- steps --------------------------------------------------------------------------------------------------
def mirror(host: Path, fs, prefix: str) -> float:
    """Upload the segments to S3 (what a mirror to object storage does); seconds."""
    start = time.perf_counter()
    for c in LETTERS:
        fs.put_file(str(host / f"BL30K_{c}.tar"), f"{prefix}/BL30K_{c}.tar")
    return time.perf_counter() - start


def stream_stage(cmd: list[str], env: dict, work: Path, tmpdir: Path, s3_out: Path, videos: int) -> dict:
    """The streamed stage killed mid-run (whole process group, once a spool exists during the second
    segment), then resumed; checks that no spool is left and that the index holds every video."""

    def mid_run(lines) -> bool:
        return sum(": downloaded" in t for _, t in lines) >= 2 and bool(spools(work, tmpdir))

    first = run_step(cmd, env, [work, tmpdir], kill_when=mid_run)
    if first["killed"] is None:  # the spool of the second segment was never seen by a line: kill at its end
        raise SystemExit("the streamed stage finished before it could be killed; use more --videos")
    resumed = run_step(cmd, env, [work, tmpdir])
    left = spools(work, tmpdir)
    index = json.loads((s3_out / "index.json").read_text())
    if left or index["totals"]["samples"] != videos:
        raise SystemExit(f"resume check failed: spools left {left}, {index['totals']['samples']} of {videos} videos")
    return {"first": first, "resumed": resumed, "index": index}


def part_cmd(urls: list[str], index_url: str, workers: int, out: Path) -> list[str]:
    return [sys.executable, "-m", "stcn.cli", "shard", "bl30k", "--segments", *urls, "--index", index_url,
            "--part", "0/2", "--workers", str(workers), "--out", str(out), "--shard-size-mb", "64"]  # fmt: skip


def writer_only(host: Path, out: Path) -> tuple[float, int]:
    """Seconds and bytes for `write_shards` alone (samples already read and checked, in memory) to local disk."""
    from stcn.data.shards.bl30k import Bl30kIndex, Bl30kReader, bl30k_pending
    from stcn.data.shards.writer import tar_record, write_shards

    index = Bl30kIndex([str(host / f"BL30K_{c}.tar") for c in LETTERS])
    with Bl30kReader(index) as reader:
        samples = bl30k_pending(index, reader)
        records = [tar_record(s.load()) for s in samples]
    start = time.perf_counter()
    write_shards(samples, str(out), dataset="bl30k", split="train", source="bl30k", shard_size_bytes=64 << 20,
                 loads=lambda _: iter(records))  # fmt: skip
    return time.perf_counter() - start, sum(len(r) for r in records)


def fetched_per_sample(where: str, samples: int, workers: int) -> dict:
    """Bytes fetched / bytes used per stage-1 training sample over one epoch (benchmarks/stream.py's count)."""
    from benchmarks.stream import fetched_and_used
    from stcn.data.stream.loader import DRAWS, make_loader

    loader = make_loader(where, "bl30k", 8, workers, seed=1, samples_per_rank=samples, crop=64)
    fetched, filling, used, count = fetched_and_used(loader)
    return {"samples": count, "MB fetched": fetched / 1e6, "MB used": used / 1e6, "fetched / used": fetched / used,
            "after the pool filled": (fetched - filling) / used, "draws": DRAWS["bl30k"]}  # fmt: skip


# --- projection ---------------------------------------------------------------------------------------------
def projection(m: dict) -> tuple[pd.DataFrame, str]:
    """Hours for the real BL30K on N machines from the measured rates `m` (MB/s) and ratios."""
    d = PAPER_BYTES / 1e6  # MB
    rows = []
    mirror_h = d / m["mirror"] / 3600
    index_h = d / m["index"] / 3600
    for nodes in PROJECT_NODES:
        for label, rate in (("1 worker", m["w1"]), ("2 workers", m["w2"])):
            part_h = d / nodes / rate / 3600
            push_h = d * m["out_per_in"] / nodes / m["mirror"] / 3600  # `dvc push` of the part's shards
            rows.append({
                "machines x workers": f"{nodes} x {label}", "mirror h": mirror_h, "index pass h": index_h,
                "part h": part_h, "push h": push_h, "total h": mirror_h + index_h + part_h + push_h,
                "S3 read per machine MB/s": rate * m["fetched_per_used"],
                "local disk per machine GB": d * m["out_per_in"] / nodes / 1e3,
            })  # fmt: skip
    table = pd.DataFrame(rows).round(2)
    notes = (
        f"Projection for the real BL30K, computed by benchmarks/scale.py from this run's measurements only. Assumed "
        f"quantities: D = {PAPER_BYTES / 1e9:.0f} GB of segments (the release's six ~115 GB tars); the machines are "
        f"like this one, get these rates while running together, and S3 serves them all (the column 'S3 read per "
        f"machine' is what each would need); the merge stage is left out (it reads the parts' index.json files "
        f"only), and so is each part run's start-up (here {m['startup']:.1f} s; it grows with the member index); "
        f"the download from Google Drive to the mirroring machine is not measured (no internet here) and is "
        f"left out. Measured here: mirror (upload to S3) {m['mirror']:.0f} MB/s; member scan over S3 (once, one "
        f"machine; fetches {m['index_fetched']:.2f} x the segment bytes) {m['index']:.0f} MB/s of segment; a part "
        f"run from S3 through the stored index (after its start-up) {m['w1']:.0f} MB/s with 1 worker and "
        f"{m['w2']:.0f} MB/s with 2 "
        f"(per byte of its own videos; S3 fetched per byte used {m['fetched_per_used']:.3f}); the writer alone "
        f"{m['writer']:.0f} MB/s, a bound on any worker count per machine; shards / segment bytes "
        f"{m['out_per_in']:.3f}. total = mirror + index pass + D / (N x part rate) + D x shards/segment / "
        f"(N x mirror rate) (each machine pushes its part's shards, `dvc push`). Only the worker counts measured here "
        f"are shown: more workers per machine are not measured on these 2 cores."
    )
    return table, notes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--videos", type=int, default=24, help="BL30K-sized videos to generate (~20 MB each)")
    ap.add_argument("--frames", type=int, default=160, help="frames per video (BL30K: ~160)")
    ap.add_argument("--iterations", type=int, default=6, help="training iterations per source")
    ap.add_argument("--samples", type=int, default=1024, help="training samples per bytes-fetched row")
    ap.add_argument("--workers", type=int, default=2, help="stream-stage workers and DataLoader workers")
    ap.add_argument("--rounds", type=int, default=2, help="alternating rounds of the 1-/2-worker part runs")
    ap.add_argument("--tmp", type=Path, default=None, help="scratch folder (default: a temp dir); deleted after")
    args = ap.parse_args()
    import s3fs
    from s3_server import ByteCountingProxy, start_rclone_s3

    from stcn.data.shards.build import bl30k_member_index
    from stcn.data.shards.parallel import part_bounds

    load_start = os.getloadavg()
    tmp = Path(tempfile.mkdtemp(prefix="stcn-scale-", dir=args.tmp))
    tmpdir = tmp / "tmpdir"  # TMPDIR of every command (counted in peak disk)
    tmpdir.mkdir()
    server = http = proxy = None
    rows, m = [], {}
    try:
        t0 = time.perf_counter()
        made = generate(tmp / "host", args.videos, args.frames)
        mb = made["bytes"] / 1e6
        print(f"generated {mb:.0f} MB, {made['videos']} videos in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
        dd = dd_rate(tmp / "host" / "BL30K_a.tar", tmp / "dd.tar")
        rows.append({"step": "dd copy of a segment (bs=4M, fsync)", "MB": mb, "seconds": mb / dd, "MB/s": dd})

        (tmp / "s3" / "bench").mkdir(parents=True)  # the bucket
        server = start_rclone_s3(tmp / "s3", dir_cache_time=None)
        env = {**os.environ, **server.env(), "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "TMPDIR": str(tmpdir)}
        fs = s3fs.S3FileSystem(**server.storage_options())
        m["mirror"] = mb / mirror(tmp / "host", fs, "bench/mirror")
        rows.append({"step": "mirror: upload the 6 segments to S3 (s3fs)", "MB": mb, "seconds": mb / m["mirror"],
                     "MB/s": m["mirror"]})  # fmt: skip

        port = _free_port()
        http = subprocess.Popen(
            [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(tmp / "host")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        time.sleep(1)
        work = tmp / "work"
        stream = stream_stage(
            [sys.executable, "-m", "stcn.cli", "shard", "bl30k-stream", "--source", "http",
             "--url", f"http://127.0.0.1:{port}/", "--work", str(work), "--out", "s3://bench/bl30k",
             "--workers", str(args.workers), "--shard-size-mb", "64"],
            env, work, tmpdir, tmp / "s3" / "bench" / "bl30k", made["videos"],
        )  # fmt: skip
        first, resumed = stream["first"], stream["resumed"]
        at_kill = len(first["killed"]["spools"])
        gib = 2**30
        rows.append({"step": f"bl30k-stream (HTTP -> shard -> S3, {args.workers} workers), killed mid-run",
                     "MB": mb, "seconds": first["killed"]["after_s"], "peak RSS GiB": first["rss"] / gib,
                     "peak disk GiB (work + TMPDIR)": first["disk"] / gib,
                     "note": f"SIGKILL to its process group, {at_kill} spool(s) there"})  # fmt: skip
        rows.append({"step": "... resumed to the end", "MB": mb, "seconds": resumed["seconds"],
                     "CPU s": resumed["cpu"], "peak RSS GiB": resumed["rss"] / gib,
                     "peak disk GiB (work + TMPDIR)": resumed["disk"] / gib,
                     "note": f"no spool left; {stream['index']['totals']['samples']} of {made['videos']} videos "
                             f"in {stream['index']['totals']['shards']} shards"})  # fmt: skip

        # the part path: index once over S3, then part 0/2 with 1 and 2 workers
        urls = [f"s3://bench/mirror/BL30K_{c}.tar" for c in LETTERS]
        index_url = "s3://bench/mirror/members.npz"
        proxy = ByteCountingProxy(server.endpoint_url)
        os.environ.update({**server.env(), "AWS_ENDPOINT_URL": proxy.endpoint_url})
        start = time.perf_counter()
        index = bl30k_member_index(urls, index_url, lambda _: None)
        index_s = time.perf_counter() - start
        m["index"], m["index_fetched"] = mb / index_s, proxy.received / made["bytes"]
        rows.append({"step": "member scan over S3 (once; writes the index)", "MB": mb, "seconds": index_s,
                     "MB/s": m["index"], "S3 fetched / used": m["index_fetched"]})  # fmt: skip
        sizes = [index.video_bytes(r) for _, r in index.groups()]
        own = sum(sizes[: part_bounds(sizes, 2)[1]])
        counted = proxy.received
        run_step(part_cmd(urls, index_url, 1, tmp / "parts-counted"), {**env, "AWS_ENDPOINT_URL": proxy.endpoint_url},
                 [])  # fmt: skip
        m["fetched_per_used"] = (proxy.received - counted) / own
        best: dict[int, dict] = {}
        for r in range(args.rounds):
            for w in (1, 2):
                step = run_step(part_cmd(urls, index_url, w, tmp / f"parts-{w}-{r}"), env, [tmpdir])
                print(f"part 0/2, {w} worker(s), round {r}: {step['seconds']:.1f} s", file=sys.stderr, flush=True)
                if w not in best or step["seconds"] < best[w]["seconds"]:
                    best[w] = step
        out_bytes = folder_bytes(tmp / "parts-1-0" / "parts" / "0-of-2")
        m["out_per_in"] = out_bytes / own
        for w in (1, 2):
            ready = next(t for t, line in best[w]["lines"] if "part 0/2:" in line)  # index loaded, part chosen
            m[f"w{w}"] = own / 1e6 / (best[w]["seconds"] - ready)
            m["startup"] = max(m.get("startup", 0.0), ready)
            rows.append({"step": f"stcn shard bl30k --part 0/2 from S3, {w} worker(s)", "MB": own / 1e6,
                         "seconds": best[w]["seconds"], "start-up s": ready, "MB/s": m[f"w{w}"],
                         "CPU s": best[w]["cpu"], "MB per CPU s": own / 1e6 / best[w]["cpu"],
                         "peak RSS GiB": best[w]["rss"] / gib, "peak disk GiB (work + TMPDIR)": best[w]["disk"] / gib,
                         "S3 fetched / used": m["fetched_per_used"] if w == 1 else float("nan")})  # fmt: skip
        writer_s, writer_bytes = writer_only(tmp / "host", tmp / "writer-only")
        m["writer"] = writer_bytes / 1e6 / writer_s
        rows.append({"step": "writer alone (samples in memory -> local shards)", "MB": writer_bytes / 1e6,
                     "seconds": writer_s, "MB/s": m["writer"]})  # fmt: skip
        os.environ["AWS_ENDPOINT_URL"] = server.endpoint_url
        proxy.stop()
        proxy = None

        # training from the stage's shards, local and S3
        local = tmp / "s3" / "bench" / "bl30k"  # the same shards as files
        for label, data in (("local shards", str(local)), ("S3 (rclone)", "s3://bench/bl30k")):
            step = run_step(
                [sys.executable, "-m", "stcn.cli", "train", "--stage", "1", "--data", data,
                 "--out", str(tmp / f"run-{label[:2]}"), "--init", "random", "--iterations", str(args.iterations),
                 "--batch-size", "2", "--crop", "128", "--num-workers", str(args.workers), "--device", "cpu",
                 "--log-every", "2"],
                env, [tmpdir, tmp / f"run-{label[:2]}"],
            )  # fmt: skip
            fetched = fetched_per_sample(data, args.samples, args.workers)
            rows.append({"step": f"stcn train --stage 1, {args.iterations} it from {label} (crop 128, CPU)",
                         "seconds": step["seconds"], "CPU s": step["cpu"], "peak RSS GiB": step["rss"] / gib,
                         "peak disk GiB (work + TMPDIR)": step["disk"] / gib,
                         "S3 fetched / used" if "S3" in label else "fetched / used": fetched["fetched / used"],
                         "note": f"loader over {fetched['samples']} samples ({fetched['draws']} draws per video "
                                 f"read): {fetched['MB fetched']:.0f} MB fetched, {fetched['MB used']:.0f} MB used; "
                                 f"after the pool filled {fetched['after the pool filled']:.2f}"})  # fmt: skip
            print(rows[-1], file=sys.stderr, flush=True)
    finally:
        if proxy:
            proxy.stop()
        if server:
            server.stop()
        if http:
            http.terminate()
            http.wait()
        shutil.rmtree(tmp, ignore_errors=True)

    load_end = os.getloadavg()
    table = pd.DataFrame(rows)
    for col in table.columns:
        if col not in ("step", "note"):
            table[col] = [f"{x:.3g}" if x == x else "" for x in table[col].astype(float)]
    table = table.fillna("")
    proj, proj_notes = projection(m)
    loads = f"{load_start[0]:.1f} / {load_start[1]:.1f} / {load_start[2]:.1f} at start, {load_end[0]:.1f} at the end"
    notes = (
        f"Input: {made['videos']} BL30K-sized videos of {made['frames']} frames (mean {made['video MB']:.1f} MB a "
        f"video: the real bundled DAVIS frames at 854x480 and masks, cycled; DAVIS CC BY-NC 4.0) in six "
        f"BL30K-layout segments, {mb:.0f} MB; {made['spanning']} videos have their frames in one segment and their "
        f"masks in the next. S3 = a local `rclone serve s3`; its folder stands for remote storage and is not counted "
        f"as local disk. Every command runs with TMPDIR inside the scratch folder, counted in 'peak disk' with the "
        f"stage's work folder (training: its --out folder, the checkpoints); peak RSS = all processes of the "
        f"command; CPU s = user + system of all of them. The "
        f"streamed stage was killed with SIGKILL to its whole process group while a shard spool existed, then "
        f"re-run: it removed the killed run's spools, left none, and its index holds every video. 'S3 fetched / used' "
        f"= bytes the S3 server sent (byte-counting proxy, headers included) / bytes of the segment (scan) or of the "
        f"part's own videos (part run); for training, bytes the loader's workers fetched / the frames and masks the "
        f"samples use (stcn.data.storage counts). Part runs: best of {args.rounds} alternating rounds, each a fresh "
        f"process; 'start-up s' = until its log names the part (interpreter, imports, the index read from S3), "
        f"'MB/s' = the part's own video bytes / the time after that (a 700 GB run pays the start-up once). "
        f"dd {dd:.0f} MB/s. Load average (1/5/15 min) {loads}, on {os.cpu_count()} cores shared with other "
        f"jobs: every rate here is below what an idle machine gives; 'MB per CPU s' is the load-independent figure."
        f"\n\n{proj_notes}\n\n{proj.to_markdown(index=False)}"
    )
    print(write_section("Scale rehearsal: BL30K download -> shard -> S3 -> stream-train", table, notes))


if __name__ == "__main__":
    main()
