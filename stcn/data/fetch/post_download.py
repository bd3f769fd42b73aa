"""The steps after a download that a layout needs: DAVIS 2016's `ImageSets/2016` lists, and a YouTube-VOS train split
resized to the original `train_480p`."""

from __future__ import annotations

import os
from pathlib import Path

from stcn.data.fetch.transport import Log
from stcn.errors import UserError


def davis16_image_sets(root: Path) -> None:
    """Derive `ImageSets/2016/<split>.txt` (sequence names) from DAVIS 2016's `ImageSets/480p` lists."""
    for split in ("train", "val", "trainval"):
        src, dst = root / "ImageSets" / "480p" / f"{split}.txt", root / "ImageSets" / "2016" / f"{split}.txt"
        if src.is_file() and not dst.exists():
            names = []
            for line in src.read_text().split():
                parts = [p for p in line.split("/") if p]
                if line.startswith("/JPEGImages") and len(parts) >= 3 and parts[2] not in names:
                    names.append(parts[2])
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.write_text("".join(f"{n}\n" for n in names))


def _resize_one(args: tuple[Path, Path, int]) -> None:
    from PIL import Image

    src, dst, size = args
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        with Image.open(src) as im:
            w, h = im.size
            if min(w, h) == size:
                dst.write_bytes(src.read_bytes())
                return
            new = (size, round(h * size / w)) if w < h else (round(w * size / h), size)
            if src.suffix.lower() == ".png":  # a mask: labels must stay labels
                im.resize(new, Image.NEAREST).save(dst)
            else:
                im.convert("RGB").resize(new, Image.BICUBIC).save(dst, quality=90)
    except OSError as e:
        raise UserError(f"cannot resize {src}: {e}") from None


def resize_youtube_split(src: str | Path, dst: str | Path, size: int = 480, workers: int | None = None,
                         log: Log = lambda _: None) -> Path:  # fmt: skip
    """Copy a YouTube-VOS split (`JPEGImages/`, `Annotations/`) with the shorter side resized to
    `size` (frames bicubic, masks nearest, palette kept), like the original `train_480p`.
    Written to `dst.tmp` and renamed, so an existing `dst` is complete."""
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    src, dst = Path(src), Path(dst)
    if dst.is_dir():
        log(f"{dst} exists: already resized")
        return dst
    if not (src / "JPEGImages").is_dir():
        raise UserError(f"not a YouTube-VOS split folder (no JPEGImages/): {src}")
    tmp = dst.with_name(dst.name + ".tmp")
    jobs = [
        (p, tmp / p.relative_to(src), size)
        for sub in ("JPEGImages", "Annotations")
        for p in sorted((src / sub).rglob("*"))
        if p.suffix.lower() in (".jpg", ".jpeg", ".png")
    ]
    log(f"resizing {len(jobs)} images of {src} to shorter side {size}")
    workers = workers or min(8, os.cpu_count() or 1)
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            try:
                list(pool.map(_resize_one, jobs, chunksize=64))
            except BrokenProcessPool:
                raise UserError("a resize worker process died (killed or out of memory); re-run it") from None
    else:
        for job in jobs:
            _resize_one(job)
    os.replace(tmp, dst)
    return dst
