"""Benchmark training-sample throughput (full STCN augmentation) from local shards, S3 shards
(a real `rclone serve s3` on 127.0.0.1) and the unpacked folder tree, for stage 0 and video.

Data: the bundled real DAVIS sample (4 videos, 164 frames; stage 0 uses each frame as a static
image). Each row: a fresh `make_loader` (resampled mode), the first batch (worker start-up)
excluded, then `--batches` batches timed.

    python benchmarks/stream.py [--batches 12] [--batch-size 4] [--workers 2] [--crop N (default: TrainConfig's)]
        [--sections throughput,bytes,coverage,weighted,original] [--samples 1024] [--original-samples 24]

Sections (each writes its own part of reports/benchmarks.md):
  throughput  samples/s from local shards, S3 shards and the folder tree (above);
  bytes       bytes fetched from storage / bytes of the frames and masks a training sample uses, local
              and S3, for the bundled DAVIS videos (41 frames) and BL30K-length ones (160 frames), with
              the default draws per video read and with one (the former loader);
  coverage    one epoch of the real loader against the release's sampling (shuffled passes over the videos):
              coverage, batch composition and bytes fetched / used (S3 at a byte-counting proxy, and local), for
              70- and 160-frame videos, default (256 MiB) and one-video shards, the project's and a scaled paper epoch;
  paperplan   the planner's DAVIS share per epoch at the paper's true scale (computed; no frames read);
  weighted    heavy (x5) and light sources as stage 3 mixes them (sample- and paper-shaped): where in the epoch
              the heavy videos are drawn (share per quarter), the release's sampling against ours; `--label` and
              `--rows` put another checkout's rows beside these (e.g. this script run there with its stcn);
  original    samples/s per core of the original release's `dataset/vos_dataset.py` (VOSDataset) and
              `dataset/static_dataset.py` (StaticTransformDataset; its `thinplate` import gets a stand-in
              module, THINPLATE_STAND_IN), imported at run time from a snapshot of github.com/hkchengrex/STCN
              given by --original, never copied into this project, against ours: same frames, crop 384,
              max_skip 5, one thread each, alternating rounds; and the cores per GPU each needs at the
              paper's iteration rate.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):  # per core: one BLAS thread (numpy)
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import webdataset as wds  # noqa: E402
from torch.utils.data import DataLoader, IterableDataset  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
from benchmarks.report import write_section  # noqa: E402
from stcn.data.shards.inputs import davis_pending, static_pending  # noqa: E402
from stcn.data.shards.writer import write_shards  # noqa: E402
from stcn.data.stream.loader import (  # noqa: E402
    DRAWS,
    SharedState,
    StreamLoader,
    ToTrainingSample,
    collate,
    init_worker,
    make_loader,
    worker_rng,
)
from stcn.train.config import TrainConfig  # noqa: E402

TRAIN_DEFAULTS = TrainConfig.__dataclass_fields__  # the crop default lives in TrainConfig
DAVIS = ROOT / "stcn" / "data" / "bundled" / "davis-mini"


class FolderSamples(IterableDataset):
    """The simple alternative to shards: draw a video (or image) at random, read its files."""

    def __init__(self, items: list[dict[str, Any]], seed: int, state: SharedState) -> None:
        super().__init__()
        self.items, self.seed, self.state = items, seed, state

    def __iter__(self):
        rng = worker_rng(self.seed, 0, self.state.epoch, 1)
        while True:
            item = self.items[rng.integers(len(self.items))]
            raw = {"__key__": item["key"], "json": json.dumps(item["meta"]).encode()}
            raw |= {field: Path(path).read_bytes() for field, path in item["files"].items()}
            yield raw


def video_items(root: Path) -> list[dict[str, Any]]:
    items = []
    for seq in sorted((root / "JPEGImages" / "480p").iterdir()):
        stems = sorted(p.stem for p in seq.glob("*.jpg"))
        meta = {"video": seq.name, "frames": stems, "annotated": stems, "objects": [1], "size": [480, 854]}
        files = {f"{s}.jpg": seq / f"{s}.jpg" for s in stems}
        files |= {f"{s}.png": root / "Annotations" / "480p" / seq.name / f"{s}.png" for s in stems}
        items.append({"key": seq.name, "meta": meta | {"source": "davis"}, "files": files})
    return items


def static_items(folder: Path) -> list[dict[str, Any]]:
    return [
        {"key": p.stem, "meta": {"name": p.stem, "source": "s"}, "files": {"jpg": p, "png": p.with_suffix(".png")}}
        for p in sorted(folder.glob("*.jpg"))
    ]


def folder_loader(items, kind: str, batch_size: int, workers: int, crop: int, batches: int) -> StreamLoader:
    state = SharedState(5)
    ds = wds.DataPipeline(
        FolderSamples(items, 0, state),
        ToTrainingSample(kind, crop, 0, 0, state),
        wds.batched(batch_size, collation_fn=collate, partial=False),
    ).with_epoch(nbatches=-(-batches // max(1, workers)))
    ds.state = state
    extra = {"persistent_workers": True, "multiprocessing_context": "forkserver"} if workers else {}
    loader = DataLoader(ds, batch_size=None, num_workers=workers, worker_init_fn=init_worker, **extra)
    return StreamLoader(ds, loader, None)


def s3_loader(read: str, *args, **kwargs) -> StreamLoader:
    """A loader whose workers read S3 with `STCN_S3_READ=read` (stream: whole-object GETs read ahead;
    ranges: s3fs range reads)."""
    os.environ["STCN_S3_READ"] = read
    try:
        return make_loader(*args, **kwargs)
    finally:
        del os.environ["STCN_S3_READ"]


def timed(loader: StreamLoader, batches: int, warm: int) -> tuple[int, float]:
    """Samples and seconds for `batches` batches after `warm` ones (start-up and prefetched)."""
    it = iter(loader)
    for _ in range(warm):
        next(it)
    start, samples = time.perf_counter(), 0
    for _ in range(batches):
        samples += len(next(it)["info"])
    return samples, time.perf_counter() - start


def prepare(tmp: Path) -> dict[str, Path]:
    """Shards (video + static) and the static image folder in `tmp`."""
    static = static_folder(tmp)
    videos = davis_pending(DAVIS, 2017, "train") + davis_pending(DAVIS, 2017, "val")
    out = tmp / "shards"
    for name, samples, size in (("davis", videos, 6 << 20), ("static", static_pending(static), 4 << 20)):
        write_shards(samples, str(out / name), dataset=name, split="train", source=name, shard_size_bytes=size)
    return {"static": static, "shards": out}


def cpu_cost(shards: Path, kind: str, count: int, crop: int) -> float:
    """ms per training sample made in this process (1 thread) from raw samples already in memory."""
    import torch

    from stcn.data.stream.loader import expand_sources, open_shard, read_shard
    from stcn.data.stream.samples import VideoRecipe, static_training_sample, video_training_sample

    torch.set_num_threads(1)
    raws = [r for url in expand_sources(shards)[0] for r in read_shard(url, open_shard(url))]
    rng = np.random.default_rng(0)
    start = time.perf_counter()
    for i in range(count):
        raw = raws[i % len(raws)]
        if kind == "static":
            static_training_sample(raw, rng, crop)
        else:
            video_training_sample(raw, rng, 5, VideoRecipe(crop=crop))
    return 1000 * (time.perf_counter() - start) / count


# --- bytes fetched per sample ----------------------------------------------------------------------
def long_videos(tmp: Path, frames: int = 160, count: int = 4) -> Path:
    """A DAVIS-layout folder of `count` BL30K-length videos (`frames` each) made of the real bundled frames."""
    root = tmp / "long-videos"
    sources = sorted((DAVIS / "JPEGImages" / "480p").iterdir())
    for v in range(count):
        seq = sources[v % len(sources)]
        jpgs = sorted(seq.glob("*.jpg"))
        for kind, folder, ext in (
            ("JPEGImages", seq, ".jpg"),
            ("Annotations", DAVIS / "Annotations/480p" / seq.name, ".png"),
        ):
            out = root / kind / "480p" / f"long{v}"
            out.mkdir(parents=True)
            for i in range(frames):
                src = folder / f"{jpgs[i % len(jpgs)].stem}{ext}"
                (out / f"{i:05d}{ext}").write_bytes(src.read_bytes())
    sets = root / "ImageSets" / "2017"
    sets.mkdir(parents=True)
    names = "".join(f"long{v}\n" for v in range(count))
    (sets / "train.txt").write_text(names)
    (sets / "val.txt").write_text("")
    return root


def fetched_and_used(loader: StreamLoader) -> tuple[int, int, int, int]:
    """(bytes fetched from storage by all workers, of those before each worker's first sample (the pool
    filling), bytes of the frames and masks used, samples) over one epoch."""
    fetched: dict[tuple, int] = {}
    first: dict[tuple, int] = {}
    used = count = 0
    for batch in loader:
        for info in batch["info"]:
            key = (info["rank"], info["worker"])
            fetched[key] = max(fetched.get(key, 0), info["fetched"])
            first[key] = min(first.get(key, info["fetched"]), info["fetched"])
            used, count = used + info["bytes"], count + 1
    return sum(fetched.values()), sum(first.values()), used, count


def bytes_rows(shards: Path, s3_prefix: str, samples: int, workers: int) -> list[dict[str, Any]]:
    """Bytes fetched / used per sample for each video set, source and draws setting."""
    rows = []
    for name, kind, label in (
        ("davis", "video", "DAVIS (41 frames/video)"),
        ("long", "bl30k", "BL30K-length (160 frames)"),
    ):
        frames = json.loads((shards / name / "index.json").read_text())["totals"]
        for source, where in (("local", shards / name), ("S3 (rclone)", f"{s3_prefix}/{name}")):
            for draws in (None, 1):
                n = samples if draws is None else samples // 4
                loader = make_loader(where, kind, 8, workers, seed=1, samples_per_rank=n, crop=64,
                                     draws_per_video=draws)  # fmt: skip
                fetched, filling, used, count = fetched_and_used(loader)
                rows.append({"videos": label, "source": source, "draws per video read": draws or DRAWS[kind],
                             "samples": count, "MB fetched": round(fetched / 1e6, 1), "MB used": round(used / 1e6, 1),
                             "fetched / used": round(fetched / used, 2),
                             "after the pool filled": round((fetched - filling) / used, 2),
                             "n videos": frames["samples"]})  # fmt: skip
                print(rows[-1], flush=True)
    return rows


# --- coverage, batch composition and bytes: the release's sampling vs ours ----------------------------------
PAPER_SAMPLES = 5000 * 4  # the paper's epoch per rank: 5000 iterations x batch 4


def release_batches(videos: list[str], samples: int, batch: int, seed: int) -> list[list[str]]:
    """The release's sampling (reproduced, not its code): its VOSDataset has one item per video and its
    DataLoader / DistributedSampler shuffles them every epoch; batches are consecutive items of those passes."""
    rng, order = np.random.default_rng(seed), []
    while len(order) < samples:
        order += [videos[i] for i in rng.permutation(len(videos))]
    return [order[i : i + batch] for i in range(0, samples, batch)]


def composition(batches: list[list[str]], videos: list[str]) -> dict[str, Any]:
    """Coverage and batch composition of one epoch's batches (in the order the trainer gets them)."""
    from collections import Counter

    flat, counts = [n for b in batches for n in b], Counter(n for b in batches for n in b)
    drawn = [counts[v] for v in videos]
    same = np.mean([a == b for a, b in zip(flat, flat[1:], strict=False)])
    shared = np.mean([bool(set(a) & set(b)) for a, b in zip(batches, batches[1:], strict=False)])
    return {"batches": len(batches),
            "batches holding a video twice": f"{100 * np.mean([len(set(b)) < len(b) for b in batches]):.1f} %",
            "videos never drawn": f"{drawn.count(0)} of {len(videos)}",
            "draws per video (min-max)": f"{min(drawn)}-{max(drawn)}",
            "next sample same video": f"{100 * same:.2f} %",
            "consecutive batches sharing a video": f"{100 * shared:.1f} %"}  # fmt: skip


def our_epoch(where: str, kind: str, samples: int, workers: int) -> tuple[list[list[str]], int, int]:
    """One epoch of the real loader: (batches of video names, bytes the workers fetched by their own count,
    bytes of the frames and masks used)."""
    loader = make_loader(where, kind, 4, workers, seed=1, samples_per_rank=samples, crop=64)
    batches, fetched, used = [], {}, 0
    for batch in loader:
        batches.append([i["name"] for i in batch["info"]])
        for i in batch["info"]:
            fetched[i["worker"]] = max(fetched.get(i["worker"], 0), i["fetched"])
            used += i["bytes"]
    return batches, sum(fetched.values()), used


def coverage_rows(tmp: Path, args: argparse.Namespace, on_row=None) -> tuple[list[dict[str, Any]], str]:
    """Coverage / composition / bytes rows for 70- and 160-frame videos, default and one-video shards, the
    project's and the paper's epoch (scaled: see --paper-videos), ours (local and S3 through a byte-counting
    proxy) and the release's sampling."""
    from s3_server import ByteCountingProxy, start_rclone_s3

    from stcn.data.shards.format import DEFAULT_SHARD_SIZE_MB

    sets = {}
    for frames, kind, count in ((70, "video", args.videos70), (160, "bl30k", args.videos160)):
        root = long_videos(tmp / f"f{frames}", frames=frames, count=count)
        for shards, size in (("default (256 MiB)", DEFAULT_SHARD_SIZE_MB << 20), ("one video each", 1)):
            out = tmp / "cov" / f"{frames}-{size}"
            write_shards(davis_pending(root, 2017, "train"), str(out), dataset="cov", split="train", source="cov",
                         shard_size_bytes=size)  # fmt: skip
            sets[frames, shards] = (kind, out, [f"long{v}" for v in range(count)])
    server = start_rclone_s3(tmp / "s3")
    proxy = ByteCountingProxy(server.endpoint_url)
    rows = []
    try:
        os.environ.update({**server.env(), "AWS_ENDPOINT_URL": proxy.endpoint_url})
        import s3fs

        fs = s3fs.S3FileSystem(**server.storage_options())
        fs.mkdir("cov")
        fs.put(str(tmp / "cov"), "cov/sets", recursive=True)
        for (frames, shards), (kind, out, videos) in sets.items():
            for epoch, samples in (("project (1024)", args.samples), ("paper (scaled)", args.paper_samples)):
                base = {"videos": f"{len(videos)} x {frames} frames", "shards": shards, "epoch": epoch,
                        "samples": samples}  # fmt: skip
                rows.append({**base, "loader": "release (shuffled passes)",
                             **composition(release_batches(videos, samples, 4, 1), videos),
                             "S3 fetched / used (proxy)": "1.00 (reads the 3 frames)", "in-process / proxy": "",
                             "local fetched / used": "1.00"})  # fmt: skip
                before = proxy.received
                batches, fetched, used = our_epoch(f"s3://cov/sets/{out.name}", kind, samples, args.workers)
                at_proxy = proxy.received - before
                local = ""
                if args.local and shards.startswith("default"):  # one-video shards: S3 only (time)
                    _, local_fetched, local_used = our_epoch(str(out), kind, samples, args.workers)
                    local = f"{local_fetched / local_used:.2f}"
                rows.append({**base, "loader": "ours (planned epochs)", **composition(batches, videos),
                             "S3 fetched / used (proxy)": f"{at_proxy / used:.2f}",
                             "in-process / proxy": f"{fetched / at_proxy:.3f}",
                             "local fetched / used": local})  # fmt: skip
                print(rows[-2], rows[-1], sep="\n", flush=True)
                if on_row:
                    on_row(rows)
    finally:
        proxy.stop()
        server.stop()
    notes = " ".join([
        "Real loader (`make_loader`, resampled mode, 2 DataLoader workers, batch 4, crop 64: bytes and the sample",
        "order do not depend on the crop), one epoch per row, rank 0 of 1. Videos: real bundled DAVIS 480p frames",
        "and masks repeated to 70 (DAVIS-length) and 160 (BL30K-length) frames per video (`long_videos`).",
        f"Scaled to fit ~10 minutes on 2 shared cores: {args.videos70} x 70-frame and {args.videos160} x 160-frame",
        f"videos (DAVIS has 60, BL30K 30k); the project's epoch is {args.samples} samples; the paper's epoch",
        f"({PAPER_SAMPLES} samples per rank over DAVIS's 60 videos = {PAPER_SAMPLES / 60:.0f} draws per video)",
        f"is scaled to {args.paper_samples} samples over these videos. 'S3 fetched / used (proxy)' = bytes the",
        "S3 server sent through a byte-counting TCP proxy (headers included) / shard bytes of the 3 JPEG frames and",
        "PNG masks each sample trains on; 'in-process / proxy' = the stream's own counter (`fetched_bytes`, per",
        "worker) / the proxy's count; local = the in-process count reading the same default shards from disk",
        "(the same reads as S3 without its 8 MiB range granularity; not run for one-video shards, for time). The",
        "release's rows reproduce its sampling (shuffled passes over the videos, consecutive batches) on the",
        "same video list; it reads exactly the frames it uses (1.00). Start-up and epoch-end waste of ours:",
        "each read stops after its last planned video (the rest of one 8 MiB S3 range GET and at most 64 MiB",
        "of read-ahead per S3 stream, plus one tar member); the next read opens only when it is in the plan",
        "(never past the epoch); the pool fill is not waste (every video read is drawn as planned); a shard",
        "cut between two workers is read by the later one from its start (the prefix is waste).",
    ])  # fmt: skip
    return rows, notes


# --- weighted sources: where in an epoch the heavy videos are drawn -----------------------------------------
WEIGHTED_SHAPES = {  # name: (heavy videos, light videos, batch, workers, samples per epoch, epochs)
    "sample s03 (1 video x5 + 5 videos)": (1, 5, 2, 0, 60, 8),  # the sample's stage 3: 30-batch segments
    "paper-shaped (4 videos x5 + 230 videos)": (4, 230, 4, 2, 4096, 2),  # DAVIS x5 beside YouTube-VOS: 8 % heavy
    "paper-shaped, epochs of half a pass": (4, 230, 4, 2, 2048, 4),  # light videos: fewer draws than a read's 16
}


def weighted_composition(batches: list[list[str]], heavy: set[str], quarters: int = 4) -> dict[str, Any]:
    """Heavy videos' share of the draws in each quarter of an epoch, batches holding a video twice, and the
    run of batches at the epoch's end that hold heavy videos only."""
    flat = [n in heavy for b in batches for n in b]
    cut = np.array_split(np.array(flat, dtype=float), quarters)
    tail = next((i for i, b in enumerate(reversed(batches)) if not all(n in heavy for n in b)), len(batches))
    return {"heavy": float(np.mean(flat)), "quarters": [float(q.mean()) for q in cut], "tail": tail,
            "twice": float(np.mean([len(set(b)) < len(b) for b in batches]))}  # fmt: skip


def weighted_rows(tmp: Path, label: str, shapes: list[str] | None = None) -> list[dict[str, Any]]:
    """Per shape: the release's sampling (its ConcatDataset of the heavy source 5 times and the light one,
    shuffled passes) and the real loader (local shards, `make_loader` as the trainer calls it), epochs averaged."""
    rows = []
    for index, (shape, (n_heavy, n_light, batch, workers, samples, epochs)) in enumerate(WEIGHTED_SHAPES.items()):
        if shapes and str(index) not in shapes:
            continue
        folder = tmp / f"shape{index}"
        root = long_videos(folder, frames=12, count=n_heavy + n_light)
        names = [f"long{v}" for v in range(n_heavy + n_light)]
        heavy = set(names[:n_heavy])
        for part, members in (("heavy", names[:n_heavy]), ("light", names[n_heavy:])):
            pending = [p for p in davis_pending(root, 2017, "train") if p.key.rsplit("/", 1)[-1] in members]
            write_shards(
                pending, str(folder / part), dataset=part, split="train", source=part, shard_size_bytes=32 << 20
            )  # fmt: skip  (~20 videos of 12 frames a shard)
        where = [f"{folder / 'heavy'}*5", str(folder / "light")]
        passes = [*names[:n_heavy] * 5, *names[n_heavy:]]
        loader = make_loader(where, "video", batch, workers, seed=1, samples_per_rank=samples, crop=64)
        for who in ("release (shuffled passes)", label):
            ours = who == label
            epoch_batches = [[[i["name"] for i in b["info"]] for b in loader] if ours
                             else release_batches(passes, samples, batch, e) for e in range(epochs)]  # fmt: skip
            found = [weighted_composition(b, heavy) for b in epoch_batches]
            rows.append({
                "sources": shape, "batch": batch, "workers": workers, "samples x epochs": f"{samples} x {epochs}",
                "loader": who, "heavy share": f"{100 * np.mean([f['heavy'] for f in found]):.1f} %",
                "heavy share per epoch (min-max)":
                    f"{100 * min(f['heavy'] for f in found):.1f}-{100 * max(f['heavy'] for f in found):.1f} %",
                "heavy share by quarter of the epoch": " / ".join(
                    f"{100 * q:.0f}" for q in np.mean([f["quarters"] for f in found], axis=0)) + " %",
                "heavy-only batches at the end (mean, max)":
                    f"{np.mean([f['tail'] for f in found]):.1f}, {max(f['tail'] for f in found)}",
                "batches holding a video twice": f"{100 * np.mean([f['twice'] for f in found]):.1f} %",
            })  # fmt: skip
            print(rows[-1], flush=True)
    return rows


def paper_plan_rows(label: str) -> list[dict[str, Any]]:
    """The paper's stage-3 mix per epoch as the planner (`epoch_plan`, the function each loader worker runs) lays it
    out at the paper's true scale: DAVIS's 60 videos (x5) in 2 shards and YouTube-VOS's 3464 in 96 (256 MiB
    each), rank 0 of 2, 8 workers, batch 4; epochs of 5000 iterations (the issue's paper epoch) and of 15000 (the
    curriculum's segments of a 150k-iteration run)."""
    from stcn.data.stream.plan import epoch_plan
    from stcn.data.stream.workers import rank_share

    davis, youtube = [f"davis-{i}.tar" for i in range(2)], [f"youtube-{i}.tar" for i in range(96)]
    samples = {**dict.fromkeys(davis, 30), **{u: 36 + (i < 8) for i, u in enumerate(youtube)}}  # 60 and 3464
    share = rank_share([(davis, 5.0), (youtube, 1.0)], 0, 2)
    rows = []
    for batches in (5000, 15000):
        shares, workers = [], []
        for epoch in range(4):
            plan = epoch_plan(share, samples, batches, 4, 8, DRAWS["video"], (1, 0, epoch))
            drawn = {w: [(r["url"], sum(r["draws"])) for r in reads] for w, reads in enumerate(plan)}
            heavy = sum(n for reads in drawn.values() for u, n in reads if u.startswith("davis"))
            shares.append(heavy / (batches * 4))
            workers.append(sum(any(u.startswith("davis") for u, _ in reads) for reads in drawn.values()))
        rows.append({"epoch": f"{batches} iterations x batch 4", "planner": label,
                     "DAVIS share per epoch (epochs 0-3)": " / ".join(f"{100 * x:.1f}" for x in shares) + " %",
                     "workers drawing DAVIS per epoch (of 8)": " / ".join(map(str, workers))})  # fmt: skip
    return rows


# --- the original release's loader per core ---------------------------------------------------------------
GPU_IT_S = 10.0  # assumed training iterations/s per GPU (see PAPER_RATE)
PAPER_RATE = (
    "batch 8 per GPU in stage 0 and 4 in stages 1-3, on 2 GPUs (the release's util/hyper_para.py and README "
    "'Training'); the release and the paper publish iteration counts, not a rate, so the rate is an assumption: "
    "{it_s:g} iterations/s per GPU (= {sps:g} video / {sps2:g} static samples/s per GPU; set --gpu-it-s; the cores "
    "column scales linearly with it)"
)


THINPLATE_STAND_IN = '''"""Stand-in for the `thinplate` package (github.com/cheind/py-thin-plate-spline, not on
PyPI), written for benchmarks/stream.py: the three functions the STCN release's dataset/tps.py calls;
the spline is solved by stcn.data.stream.tps.fit_tps and evaluated densely at every pixel, as that
package does (per axis, so numpy does not reduce over a length-2 axis)."""
import numpy as np

from stcn.data.stream.tps import fit_tps


def tps_theta_from_points(c_src, c_dst, reduced=True):
    c_src, c_dst = np.asarray(c_src, float), np.asarray(c_dst, float)
    return fit_tps(c_dst, c_src - c_dst), c_dst


def tps_grid(theta, c_dst, dshape):
    coef, centres = theta
    n = len(centres)
    h, w = dshape[:2]
    ys = np.repeat(np.arange(h) / max(h - 1, 1), w)
    xs = np.tile(np.arange(w) / max(w - 1, 1), h)
    d2 = (ys[:, None] - centres[:, 0]) ** 2 + (xs[:, None] - centres[:, 1]) ** 2
    kernel = d2 * np.log(np.maximum(d2, 1e-12))
    grid = np.empty((h * w, 2))
    for axis, base in enumerate((ys, xs)):
        c = coef[:, axis]
        grid[:, axis] = base + kernel @ c[:n] + c[n] + ys * c[n + 1] + xs * c[n + 2]
    return grid.reshape(h, w, 2)


def tps_grid_to_remap(grid, sshape):
    h, w = sshape[:2]
    return (grid[..., 1] * (w - 1)).astype(np.float32), (grid[..., 0] * (h - 1)).astype(np.float32)
'''


def original_datasets(snapshot: Path, tmp: Path, static: Path) -> tuple[Any, Any]:
    """VOSDataset and StaticTransformDataset of the original release, imported from `snapshot` (a git
    mirror) extracted into `tmp`. Its dataset/tps.py imports `thinplate`, which is not on PyPI: a stand-in
    module (THINPLATE_STAND_IN) goes on sys.path for that import only."""
    import importlib
    import subprocess

    code = tmp / "original"
    code.mkdir()
    archive = subprocess.run(["git", "-C", str(snapshot), "archive", "HEAD", "dataset"], check=True,
                             capture_output=True).stdout  # fmt: skip
    subprocess.run(["tar", "-x", "-C", str(code)], input=archive, check=True)
    (tmp / "stand-in").mkdir()
    (tmp / "stand-in" / "thinplate.py").write_text(THINPLATE_STAND_IN)
    sys.path[:0] = [str(code), str(tmp / "stand-in")]
    if not hasattr(np, "int"):  # the release uses np.int (removed in numpy 1.24) for cls_gt
        np.int = int  # type: ignore[attr-defined]
    vos = importlib.import_module("dataset.vos_dataset")
    video = vos.VOSDataset(str(DAVIS / "JPEGImages" / "480p"), str(DAVIS / "Annotations" / "480p"), 5, False)
    return video, importlib.import_module("dataset.static_dataset").StaticTransformDataset(str(static), method=1)


def static_folder(tmp: Path) -> Path:
    """The bundled DAVIS frames as static images (XXX.jpg + XXX.png), the original's method-1 layout."""
    static = tmp / "static-images"
    static.mkdir()
    for jpg in sorted(DAVIS.glob("JPEGImages/480p/*/*.jpg")):
        name = f"{jpg.parent.name}_{jpg.stem}"
        shutil.copyfile(jpg, static / f"{name}.jpg")
        shutil.copyfile(DAVIS / "Annotations/480p" / jpg.parent.name / f"{jpg.stem}.png", static / f"{name}.png")
    return static


def original_rows(
    snapshot: Path, tmp: Path, shards: Path, count: int, rounds: int, gpu_it_s: float
) -> tuple[list[dict], str]:
    """Samples/s per core: the original VOSDataset / StaticTransformDataset vs our loader (local shards,
    in-process), alternating A and B in each round; the best round of each."""
    import cv2
    import torch

    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    static = static_folder(tmp)
    write_shards(static_pending(static), str(shards / "static"), dataset="static", split="train", source="static",
                 shard_size_bytes=4 << 20)  # fmt: skip
    video_ds, static_ds = original_datasets(snapshot, tmp, static)
    np.random.seed(0)
    crop = 384

    def theirs(ds) -> float:
        order = np.random.permutation(len(ds))
        start = time.perf_counter()
        for i in range(count):
            ds[int(order[i % len(ds)])]
        return count / (time.perf_counter() - start)

    def ours(kind: str, folder: str) -> float:
        loader = make_loader(shards / folder, kind, 1, 0, seed=0, samples_per_rank=count + 4, crop=crop)
        it = iter(loader)
        for _ in range(4):  # the pool's first reads
            next(it)
        start = time.perf_counter()
        for _ in range(count):
            next(it)
        return count / (time.perf_counter() - start)

    pairs = {
        "video (stages 1-3)": (("original VOSDataset (PIL + torchvision)", lambda: theirs(video_ds)),
                               ("this loader (shards, planned epochs, OpenCV)", lambda: ours("video", "davis"))),
        "static (stage 0)": (("original StaticTransformDataset (PIL + torchvision, TPS)", lambda: theirs(static_ds)),
                             ("this loader (shards, Shuffle, OpenCV)", lambda: ours("static", "static"))),
    }  # fmt: skip
    best = {(kind, label): 0.0 for kind, pair in pairs.items() for label, _ in pair}
    for r in range(rounds):
        for kind, pair in pairs.items():
            for label, fn in pair:
                rate = fn()
                best[kind, label] = max(best[kind, label], rate)
                print("original", r, kind, label, round(rate, 2), flush=True)
    batch = {"video (stages 1-3)": 4, "static (stage 0)": 8}  # per GPU, the release's util/hyper_para.py
    rows = [{"samples": kind, "loader": label, "samples/s per core": round(v, 2),
             "cores per GPU": round(batch[kind] * gpu_it_s / v, 1)} for (kind, label), v in best.items()]  # fmt: skip
    ratios = []
    for kind, ((theirs_label, _), (ours_label, _)) in pairs.items():
        ratios.append(f"{kind}: {best[kind, ours_label] / best[kind, theirs_label]:.2f}x")
    return rows, "ours / original samples/s per core: " + ", ".join(ratios)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", type=int, default=12)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--workers", type=int, default=2)
    crop = TRAIN_DEFAULTS["crop"].default
    ap.add_argument("--crop", type=int, default=crop, help="default: TrainConfig's (%(default)s)")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved repetitions; the best is reported")
    ap.add_argument("--sections", default="throughput,bytes,coverage,weighted,original", help="comma-separated")
    ap.add_argument("--samples", type=int, default=1024, help="training samples per row of the bytes section")
    ap.add_argument("--original-samples", type=int, default=24, help="samples per round of the original section")
    ap.add_argument("--original", type=Path, default=Path("/work/.mirror/hkchengrex+STCN/repo"),
                    help="a git clone of github.com/hkchengrex/STCN (imported at run time, never copied)")  # fmt: skip
    ap.add_argument("--gpu-it-s", type=float, default=GPU_IT_S, help="assumed training iterations/s per GPU")
    ap.add_argument("--videos70", type=int, default=40, help="70-frame videos of the coverage section")
    ap.add_argument("--videos160", type=int, default=16, help="160-frame videos of the coverage section")
    ap.add_argument("--paper-samples", type=int, default=2000, help="the coverage section's scaled paper epoch")
    ap.add_argument("--no-local", dest="local", action="store_false", help="coverage section: S3 only")
    ap.add_argument("--label", default="ours (planned epochs)", help="weighted section: this checkout's rows")
    ap.add_argument("--rows", type=Path, help="weighted section: a JSON file of rows to add (written with --json)")
    ap.add_argument("--shapes", help="weighted section: the shapes to run, by index (0,1,2; default all)")
    ap.add_argument("--json", type=Path, help="weighted section: also write this run's rows of ours to this file")
    args = ap.parse_args()
    sections = set(args.sections.split(","))
    if sections - {"throughput"}:
        extra_sections(args, sections)
    if "throughput" not in sections:
        return
    from s3_server import start_rclone_s3

    load_start = os.getloadavg()[0]
    n, w, c = args.batch_size, args.workers, args.crop
    warm = 1 + 2 * w  # the first batch waits for start-up; then up to prefetch_factor (2) per worker are ready
    total = n * (warm + args.batches) * 2
    best: dict[tuple[str, str], tuple[int, float]] = {}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        paths = prepare(tmp)
        server = start_rclone_s3(tmp / "s3")
        try:
            os.environ.update(server.env())
            import s3fs

            fs = s3fs.S3FileSystem(**server.storage_options())
            fs.mkdir("bench")
            fs.put(str(paths["shards"]), "bench/shards", recursive=True)
            configs = {}
            for kind, name in (("static", "static"), ("video", "davis")):
                items = static_items(paths["static"]) if kind == "static" else video_items(DAVIS)
                configs |= {
                    (kind, "local shards"): lambda s=kind, d=name: make_loader(
                        paths["shards"] / d, s, n, w, samples_per_rank=total, crop=c),
                    (kind, "S3 shards (rclone, 127.0.0.1)"): lambda s=kind, d=name: s3_loader(
                        "stream", f"s3://bench/shards/{d}", s, n, w, samples_per_rank=total, crop=c),
                    (kind, "S3 shards, s3fs range reads"): lambda s=kind, d=name: s3_loader(
                        "ranges", f"s3://bench/shards/{d}", s, n, w, samples_per_rank=total, crop=c),
                    (kind, "folder tree"): lambda k=kind, i=items: folder_loader(i, k, n, w, c, total // n),
                }  # fmt: skip
            for r in range(args.rounds):
                for key, build in configs.items():
                    samples, seconds = timed(build(), args.batches, warm)
                    if key not in best or seconds < best[key][1]:
                        best[key] = samples, seconds
                    print(r, key, samples, round(seconds, 2), flush=True)
            cpu = {k: cpu_cost(paths["shards"] / d, k, 16, c) for k, d in (("static", "static"), ("video", "davis"))}
        finally:
            server.stop()
    rows = []
    for kind, stage in (("static", "0 (static)"), ("video", "2 (video)")):
        measured = [(src, w, *best[k, src]) for k, src in best if k == kind]
        in_memory = ("in memory, no loader (1 thread)", 0, 16, cpu[kind] * 0.016)
        for source, workers, samples, seconds in [*measured, in_memory]:
            rows.append(
                {"stage": stage, "source": source, "workers": workers, "samples": samples,
                 "seconds": round(seconds, 2), "samples/s": round(samples / seconds, 2),
                 "ms/sample per worker": round(1000 * seconds * max(1, workers) / samples, 1)}
            )  # fmt: skip
    table = pd.DataFrame(rows)
    notes = " ".join(
        [
            "Real bundled DAVIS data (4 videos, 164 frames at 854x480; stage 0 treats each frame as a static image).",
            f"Resampled mode, batch {n}, crop {c}, {w} DataLoader workers (forkserver), full augmentation",
            f"(stage 0 incl. TPS p=0.33); per row the first {warm} batches (worker start-up, prefetched batches)",
            f"are skipped, then {args.batches} batches are timed; best of {args.rounds} interleaved rounds.",
            "The folder-tree reader draws a video/image at random and reads its files (a video sample reads",
            "all its frames, as a shard sample does). 'In memory' = decode + augment only, one thread: the CPU",
            f"cost that bounds every source. Load average at start: {load_start:.1f} on {os.cpu_count()} cores",
            "(other jobs were running), so the loader rates are pessimistic and noisy.",
            "S3 is read by whole-object streaming GETs that a thread reads up to 64 MiB ahead, the next shard",
            "opened while the current one is decoded (`stream.s3_stream`, `opened_ahead`); the 's3fs range reads'",
            "row is the former reader (16 MiB read-ahead blocks, STCN_S3_READ=ranges).",
        ]
    )
    for kind in ("static", "video"):
        local, s3 = best[kind, "local shards"], best[kind, "S3 shards (rclone, 127.0.0.1)"]
        ratio = (s3[0] / s3[1]) / (local[0] / local[1])
        notes += f" {kind}: S3 (streamed) / local shards = {ratio:.2f}x samples/s."
    print(write_section("Training-sample throughput", table, notes))


def extra_sections(args: argparse.Namespace, sections: set[str]) -> None:
    """The bytes, pool and original sections (see the module docstring)."""
    from s3_server import start_rclone_s3

    load = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    shared = f"Load average (1/5/15 min) at start: {load} on {os.cpu_count()} cores, shared with other jobs."
    if "coverage" in sections:
        name = "Training stream: coverage, batch composition and bytes"
        with tempfile.TemporaryDirectory() as tmp_name:  # the section is rewritten after each row (long runs)
            rows, notes = coverage_rows(Path(tmp_name), args, lambda r: write_section(name, pd.DataFrame(r), shared))
        print(write_section(name, pd.DataFrame(rows), notes + " " + shared))
    if "paperplan" in sections:
        rows = paper_plan_rows(args.label)
        if args.json:
            args.json.write_text(json.dumps(rows, indent=1))
        rows = (json.loads(args.rows.read_text()) if args.rows else []) + rows
        notes = " ".join([
            "The planner's layout of the paper's stage-3 mix (computed, no frames read: `epoch_plan` is what each",
            "loader worker runs to decide its reads): the DAVIS share of each epoch's draws (the release's is 8.0 %",
            "in every part of every epoch: 300 of 3764 dataset items) and how many of a rank's 8 workers draw DAVIS",
            "videos. The earlier planner's row comes from this script run on its checkout (`--label`, `--json`,",
            "then `--rows`).",
        ])  # fmt: skip
        print(write_section("Training stream: the paper's mix per epoch (planner)", pd.DataFrame(rows), notes))
    if "weighted" in sections:
        with tempfile.TemporaryDirectory() as tmp_name:
            rows = weighted_rows(Path(tmp_name), args.label, args.shapes.split(",") if args.shapes else None)
        if args.json:
            args.json.write_text(json.dumps([r for r in rows if r["loader"] == args.label], indent=1))
        rows += json.loads(args.rows.read_text()) if args.rows else []
        rows.sort(key=lambda r: list(WEIGHTED_SHAPES).index(r["sources"]))
        notes = " ".join([
            "Heavy and light sources mixed as stage 3 mixes DAVIS (`davis17*5`) and YouTube-VOS, in three shapes: the",
            "sample profile's (1 DAVIS video beside 5 YouTube-VOS videos; batch 2, no workers, 60-sample epochs =",
            "its 30-batch curriculum segments) and the paper's ratio (60 x5 beside 3464: 8 % heavy draws; here",
            "4 x5 beside 230 videos of 12 real DAVIS frames in shards of ~20 videos; batch 4, 2 workers; epochs of",
            "4096 samples = ~16 draws a light video, as the paper's 15000-iteration curriculum segments give ~32, and",
            "of 2048 = ~8, fewer than a read's 16, so a pass over the light videos spans 2 epochs, as the paper's",
            "5000-iteration epochs give). The real loader",
            "reads local shards (`make_loader` as the trainer calls it; S3 gives the same order); the release's rows",
            "reproduce its sampling (a ConcatDataset of the heavy dataset 5 times and the light one, shuffled",
            "passes, consecutive batches). 'heavy share by quarter' = the heavy videos' share of the draws in each",
            "quarter of an epoch, averaged over the epochs; the release draws them evenly. 'heavy-only batches at",
            "the end' = the run of batches closing an epoch that hold heavy videos only.",
        ]) + " " + shared  # fmt: skip
        print(write_section("Training stream: weighted sources over an epoch", pd.DataFrame(rows), notes))
    if not sections & {"bytes", "original"}:
        return
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        shards = tmp / "shards"
        videos = davis_pending(DAVIS, 2017, "train") + davis_pending(DAVIS, 2017, "val")
        write_shards(videos, str(shards / "davis"), dataset="davis", split="train", source="davis", shard_size_bytes=1)
        if "bytes" in sections:
            long = long_videos(tmp)
            write_shards(davis_pending(long, 2017, "train"), str(shards / "long"), dataset="long", split="train",
                         source="long", shard_size_bytes=1)  # fmt: skip
            server = start_rclone_s3(tmp / "s3")
            try:
                os.environ.update(server.env())
                import s3fs

                fs = s3fs.S3FileSystem(**server.storage_options())
                fs.mkdir("bench")
                fs.put(str(shards), "bench/shards", recursive=True)
                rows = bytes_rows(shards, "s3://bench/shards", args.samples, args.workers)
            finally:
                server.stop()
            notes = " ".join([
                f"One epoch of {args.samples} training samples per row ({args.samples // 4} with 1 draw), batch 8,",
                f"{args.workers} DataLoader workers, crop 64 (bytes do not depend on the crop). 'fetched' = bytes",
                "the workers took from storage (files read, S3 GET bodies, read-ahead included: counted in",
                "stcn.data.storage); 'used' = the shard bytes of the 3 JPEG frames and PNG masks each sample",
                "trains on. Each worker's pool reads up to 32 (video) / 12 (bl30k) videos before its first sample:",
                "'fetched / used' includes that start-up, 'after the pool filled' leaves it out (what a long epoch",
                "tends to: about frames per video / (3 x draws) x 1.2; the frames used are smaller than the average",
                "member).",
                "BL30K-length videos: 160 real DAVIS frames (480p) per video; real BL30K frames are larger",
                "(~23 MB a video) but the ratio depends on frames per video only. " + shared,
            ])  # fmt: skip
            print(write_section("Bytes fetched per training sample", pd.DataFrame(rows), notes))
        if "original" in sections:
            if not (args.original / "HEAD").exists() and not (args.original / ".git").exists():
                print(f"original section skipped: no snapshot of hkchengrex/STCN at {args.original}", flush=True)
                return
            rows, ratio = original_rows(args.original, tmp, shards, args.original_samples, args.rounds, args.gpu_it_s)
            rate = PAPER_RATE.format(it_s=args.gpu_it_s, sps=4 * args.gpu_it_s, sps2=8 * args.gpu_it_s)
            notes = " ".join([
                "Same real frames (bundled DAVIS, 4 videos at 854x480; static: each of its 164 frames as an image),",
                "crop 384, one process with one torch/OpenCV thread each, no DataLoader (per core). Video: max_skip 5,",
                "DAVIS recipe; the original indexes a video and reads its 3 frames from JPEG/PNG files, ours streams",
                "local shards (planned video epochs). Static: the original's StaticTransformDataset (method 1,",
                "XXX.jpg + XXX.png, TPS with p = 0.33) against ours (the same recipe) from local shards.",
                f"Best of {args.rounds} alternating rounds of {args.original_samples} samples. {ratio}.",
                f"Cores per GPU = samples/s per GPU / samples/s per core, with {rate}.",
                "The original's dataset/tps.py imports `thinplate` (github.com/cheind/py-thin-plate-spline; `pip`",
                "finds no such package on PyPI): the benchmark puts a stand-in module on sys.path for that import",
                "only (THINPLATE_STAND_IN: the three functions it calls, the spline solved with our",
                "stcn.data.stream.tps and evaluated at every pixel as that package does).",
                "One BLAS thread (OMP_NUM_THREADS=1 unless set). " + shared,
            ])  # fmt: skip
            print(write_section("Loader per core vs the original release", pd.DataFrame(rows), notes))


if __name__ == "__main__":
    main()
