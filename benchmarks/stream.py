"""Benchmark training-sample throughput (full STCN augmentation) from local shards, S3 shards
(a real `rclone serve s3` on 127.0.0.1) and the unpacked folder tree, for stage 0 and video.

Data: the bundled real DAVIS sample (4 videos, 164 frames; stage 0 uses each frame as a static
image). Each row: a fresh `make_loader` (resampled mode), the first batch (worker start-up)
excluded, then `--batches` batches timed.

    python benchmarks/stream.py [--batches 12] [--batch-size 4] [--workers 2] [--crop 384]
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

import pandas as pd
import webdataset as wds
from torch.utils.data import DataLoader, IterableDataset

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
from benchmarks.report import write_section  # noqa: E402
from stcn.data.shard_inputs import davis_pending, static_pending  # noqa: E402
from stcn.data.shard_writer import write_shards  # noqa: E402
from stcn.data.stream import (  # noqa: E402
    SharedState,
    StreamLoader,
    ToTrainingSample,
    collate,
    init_worker,
    make_loader,
    worker_rng,
)

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


def timed(loader: StreamLoader, batches: int) -> tuple[int, float]:
    """Samples and seconds for `batches` batches after the first one."""
    it = iter(loader)
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", type=int, default=12)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--crop", type=int, default=384)
    args = ap.parse_args()
    from s3_server import start_rclone_s3

    load_start = os.getloadavg()[0]
    rows = []
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
            n, w, c = args.batch_size, args.workers, args.crop
            total = args.batches * n
            for stage, kind in ((0, "static"), (2, "video")):
                sources = {
                    "local shards": lambda kind=kind, stage=stage: make_loader(
                        paths["shards"] / ("static" if kind == "static" else "davis"), stage, n, w,
                        samples_per_rank=total * 4, crop=c,
                    ),
                    "S3 shards (rclone, 127.0.0.1)": lambda kind=kind, stage=stage: make_loader(
                        f"s3://bench/shards/{'static' if kind == 'static' else 'davis'}", stage, n, w,
                        samples_per_rank=total * 4, crop=c,
                    ),
                    "folder tree": lambda kind=kind: folder_loader(
                        static_items(paths["static"]) if kind == "static" else video_items(DAVIS), kind, n, w, c,
                        args.batches * 4,
                    ),
                }  # fmt: skip
                for source, build in sources.items():
                    samples, seconds = timed(build(), args.batches)
                    rows.append(
                        {
                            "stage": f"{stage} ({kind})",
                            "source": source,
                            "workers": w,
                            "samples": samples,
                            "seconds": round(seconds, 2),
                            "samples/s": round(samples / seconds, 2),
                            "ms/sample per worker": round(1000 * seconds * max(1, w) / samples, 1),
                        }
                    )
                    print(rows[-1], flush=True)
        finally:
            server.stop()
    table = pd.DataFrame(rows)
    notes = (
        f"Real bundled DAVIS data (4 videos, 164 frames at 854x480; stage 0 treats each frame as a static image). "
        f"Resampled mode, batch {args.batch_size}, crop {args.crop}, {args.workers} DataLoader workers "
        f"(forkserver), full augmentation (stage 0 incl. TPS p=0.33); first batch (worker start-up) excluded. "
        f"The folder-tree reader draws a video/image at random and reads its files (a video sample reads all its "
        f"frames, as a shard sample does). Load average at start: {load_start:.1f} on {os.cpu_count()} cores "
        f"(other jobs were running), so the absolute rates are pessimistic; a video sample decodes 3 JPEGs + 3 PNGs, "
        f"a stage-0 sample decodes 1 + 1 and warps 3 times."
    )
    print(write_section("Training-sample throughput", table, notes))


if __name__ == "__main__":
    main()
