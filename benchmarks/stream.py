"""Benchmark training-sample throughput (full STCN augmentation) from local shards, S3 shards
(a real `rclone serve s3` on 127.0.0.1) and the unpacked folder tree, for stage 0 and video.

Data: the bundled real DAVIS sample (4 videos, 164 frames; stage 0 uses each frame as a static
image). Each row: a fresh `make_loader` (resampled mode), the first batch (worker start-up)
excluded, then `--batches` batches timed.

    python benchmarks/stream.py [--batches 12] [--batch-size 4] [--workers 2] [--crop N (default: TrainConfig's)]
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

import numpy as np
import pandas as pd
import webdataset as wds
from torch.utils.data import DataLoader, IterableDataset

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
from benchmarks.report import write_section  # noqa: E402
from stcn.data.shards.inputs import davis_pending, static_pending  # noqa: E402
from stcn.data.shards.writer import write_shards  # noqa: E402
from stcn.data.stream.loader import (  # noqa: E402
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
    static = tmp / "static-images"
    static.mkdir()
    for jpg in sorted(DAVIS.glob("JPEGImages/480p/*/*.jpg")):
        name = f"{jpg.parent.name}_{jpg.stem}"
        shutil.copyfile(jpg, static / f"{name}.jpg")
        shutil.copyfile(DAVIS / "Annotations/480p" / jpg.parent.name / f"{jpg.stem}.png", static / f"{name}.png")
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", type=int, default=12)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--workers", type=int, default=2)
    crop = TRAIN_DEFAULTS["crop"].default
    ap.add_argument("--crop", type=int, default=crop, help="default: TrainConfig's (%(default)s)")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved repetitions; the best is reported")
    args = ap.parse_args()
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


if __name__ == "__main__":
    main()
