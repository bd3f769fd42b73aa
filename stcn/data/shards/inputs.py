"""Samples to shard from DAVIS / YouTube-VOS / static image folders, with the input checks."""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from stcn.data.folders import Sequence, davis_sequences, youtube_sequences
from stcn.data.shards.format import safe_key, static_members, video_members
from stcn.data.shards.writer import Members, Pending
from stcn.errors import UserError

JPEG_SUFFIXES = (".jpg", ".jpeg")
CHECKS = ("header", "full")
DEFAULT_CHECK = "header"
_CHECK = {"level": DEFAULT_CHECK, "threads": 0}  # set by `check_level`; forked shard workers inherit it


@contextlib.contextmanager
def check_level(level: str, threads: int = 0) -> Iterator[None]:
    """Check images at `level` while the block runs: "header" reads only what the image headers say
    (format, size, PNG mode, an end marker), "full" decodes every JPEG and mask (and lists the mask
    labels in "objects"). `threads`: image-check threads per process (0: the CPU count)."""
    if level not in CHECKS:
        raise UserError(f"unknown check level {level!r} (one of: {', '.join(CHECKS)})")
    saved = dict(_CHECK)
    _CHECK.update(level=level, threads=threads)
    try:
        yield
    finally:
        _CHECK.update(saved)


_UNREADABLE = (UnidentifiedImageError, OSError, SyntaxError, ValueError)  # what PIL raises on a bad image


@contextlib.contextmanager
def _opened_jpeg(data: bytes, where: str) -> Iterator[Image.Image]:
    """JPEG bytes opened lazily; another format or a PIL failure (also while the caller reads) is a UserError."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            if im.format != "JPEG":
                raise UserError(f"not a JPEG ({im.format}): {where}")
            yield im
    except _UNREADABLE as e:
        raise UserError(f"corrupt JPEG: {where} ({e})") from None


@contextlib.contextmanager
def _opened_mask(data: bytes, where: str, size: tuple[int, int]) -> Iterator[Image.Image]:
    """Mask PNG bytes opened lazily and checked against its frame's (H, W); failures are UserErrors."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            if im.format != "PNG":
                raise UserError(f"mask is not a PNG ({im.format}): {where}")
            if (im.height, im.width) != tuple(size):
                raise UserError(f"mask size {im.height}x{im.width} differs from its frame {size[0]}x{size[1]}: {where}")
            yield im
    except _UNREADABLE as e:
        raise UserError(f"corrupt mask PNG: {where} ({e})") from None


def peek_jpeg(data: bytes, where: str) -> tuple[int, int]:
    """(H, W) of JPEG bytes from the header alone, plus an end-of-image marker near the end
    (catches truncated files); pixels are not decoded."""
    with _opened_jpeg(data, where) as im:
        size = (im.height, im.width)
    if b"\xff\xd9" not in data[-1024:]:
        raise UserError(f"corrupt JPEG: {where} (no end-of-image marker: truncated?)")
    return size


def peek_mask(data: bytes, where: str, size: tuple[int, int]) -> None:
    """Check a mask PNG from its header (format, size, mode) and its IEND chunk; no decoding."""
    with _opened_mask(data, where, size):
        pass
    if data[-8:-4] != b"IEND":
        raise UserError(f"corrupt mask PNG: {where} (no IEND chunk: truncated?)")


def frame_size(data: bytes, where: str) -> tuple[int, int]:
    """(H, W) of a frame, checked at the current level (`check_level`)."""
    return check_jpeg(data, where) if _CHECK["level"] == "full" else peek_jpeg(data, where)


def mask_labels(data: bytes, where: str, size: tuple[int, int]) -> np.ndarray | None:
    """The label values a mask holds (full check), or None after a header-only check."""
    if _CHECK["level"] == "full":
        return check_mask(data, where, size)
    peek_mask(data, where, size)
    return None


def check_jpeg(data: bytes, where: str) -> tuple[int, int]:
    """(H, W) of JPEG bytes after decoding them fully (at 1/8 scale); UserError naming `where`."""
    with _opened_jpeg(data, where) as im:
        size = (im.height, im.width)
        im.draft("RGB", (max(1, im.width // 8), max(1, im.height // 8)))
        im.load()
    return size


def check_mask(data: bytes, where: str, size: tuple[int, int]) -> np.ndarray:
    """Which label values (0..255) a mask PNG holds (bool[256]); checks decodability and size."""
    with _opened_mask(data, where, size) as im:
        if im.mode in ("P", "L"):
            counts = im.histogram()  # decodes the PNG; counts per palette index / grey value
        elif im.mode == "1":
            counts = im.convert("L").histogram()
        else:  # an RGB-saved mask: a pixel is an object where it is not black (see images.read_mask)
            grey = im.convert("L").histogram()
            counts = [grey[0], sum(grey[1:])] + [0] * 254
    return np.asarray(counts[:256]) > 0


def _threads() -> ThreadPoolExecutor:
    """Workers for the image checks (PIL decodes without holding the GIL)."""
    global _POOL
    if _POOL is None:
        threads = _CHECK["threads"] or os.cpu_count() or 1
        _POOL = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="stcn-shard-check")
    return _POOL


_POOL: ThreadPoolExecutor | None = None


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise UserError(f"cannot read {path}: {e}") from None


def video_sample_members(
    name: str,
    source: str,
    frames: list[tuple[str, str, Callable[[], bytes]]],
    masks: dict[str, tuple[str, Callable[[], bytes]]],
    mask_required: bool = False,
    extra: dict | None = None,
) -> Members:
    """Read and check one video; `frames` = [(stem, where, read)], `masks` = {stem: (where, read)}."""
    stems = [s for s, _, _ in frames]
    orphans = sorted(set(masks) - set(stems))
    if orphans:
        raise UserError(f"mask without a frame: {masks[orphans[0]][0]}")
    if mask_required:
        missing = [(s, w) for s, w, _ in frames if s not in masks]
        if missing:
            raise UserError(f"frame without a mask: {missing[0][1]}")
    jpgs = {stem: (where, read()) for stem, where, read in frames}
    pngs = {stem: (where, read()) for stem, (where, read) in masks.items()}
    # threads only for full decodes on a process of its own (header reads are too small; one thread per worker)
    run = _threads().map if _CHECK["level"] == "full" and _CHECK["threads"] != 1 else map
    sizes = list(run(lambda s: frame_size(jpgs[s][1], jpgs[s][0]), stems))
    size = sizes[0]
    for stem, hw in zip(stems, sizes, strict=True):
        if hw != size:
            raise UserError(f"frame size {hw[0]}x{hw[1]} differs from the video's {size[0]}x{size[1]}: {jpgs[stem][0]}")
    annotated = [s for s in stems if s in pngs]
    present: np.ndarray | None = np.zeros(256, bool)
    for labels in run(lambda s: mask_labels(pngs[s][1], pngs[s][0], size), annotated):
        present = None if labels is None or present is None else present | labels
    meta = {
        "video": name,
        "frames": stems,
        "annotated": annotated,
        # header-only check: the labels are not known without decoding (training decodes the masks anyway)
        "objects": None if present is None else [int(i) for i in np.flatnonzero(present) if i not in (0, 255)],
        "size": list(size),
        "source": source,
        **(extra or {}),
    }
    return video_members(
        safe_key(name), meta, {s: d for s, (_, d) in jpgs.items()}, {s: d for s, (_, d) in pngs.items()}
    )


def _reader(path: Path) -> Callable[[], bytes]:
    return lambda: _read(path)


def _stat(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError as e:
        raise UserError(f"cannot read {path}: {e}") from None


def sequence_pending(seq: Sequence, source: str) -> Pending:
    """A pending video sample for a folder sequence (DAVIS / YouTube-VOS)."""
    for p in seq.frames:
        if p.suffix.lower() not in JPEG_SUFFIXES:
            raise UserError(f"frame is not a .jpg (shards keep the original JPEG bytes): {p}")
    frames = [(p.stem, str(p), _reader(p)) for p in seq.frames]
    masks = {stem: (str(p), _reader(p)) for stem, p in seq.annotations.items()}
    extra = {}
    if seq.required is not None and seq.required != set(seq.stems):
        extra["required"] = [s for s in seq.stems if s in seq.required]
    files = [*seq.frames, *seq.annotations.values()]
    fingerprint = ";".join(f"{p.name}:{_stat(p)}" for p in files)
    return Pending(
        safe_key(seq.name), fingerprint, lambda: video_sample_members(seq.name, source, frames, masks, extra=extra)
    )


def davis_pending(root: str | Path, year: str | int, split: str) -> list[Pending]:
    """One pending sample per sequence of a DAVIS split, in name order."""
    seqs = sorted(davis_sequences(root, year, split), key=lambda s: s.name)
    return [sequence_pending(s, f"davis{year}/{split}") for s in seqs]


def youtube_split_folder(root: str | Path, split: str) -> str:
    """The folder name to read for a split: `train` prefers the prepared `train_480p`."""
    if split == "train" and (Path(root) / "train_480p" / "JPEGImages").is_dir():
        return "train_480p"
    return split


def youtube_pending(root: str | Path, split: str) -> list[Pending]:
    """One pending sample per video of a YouTube-VOS split, in name order."""
    folder = youtube_split_folder(root, split)
    return [sequence_pending(s, f"youtube/{split}") for s in youtube_sequences(root, folder)]


def static_pending(root: str | Path) -> list[Pending]:
    """One pending sample per `name.jpg` + `name.png` pair found recursively under `root`."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"static dataset folder not found: {root}")
    images, masks = {}, {}
    for p in sorted(root.rglob("*")):
        if not p.is_file() or any(part.startswith(".") for part in p.relative_to(root).parts):
            continue
        name = p.relative_to(root).with_suffix("").as_posix()
        if p.suffix.lower() in JPEG_SUFFIXES:
            images[name] = p
        elif p.suffix.lower() == ".png":
            masks[name] = p
    if not images:
        raise UserError(f"no images (*.jpg) under {root}")
    for name in sorted(set(images) - set(masks)):
        raise UserError(f"image without a mask (expected {name}.png): {images[name]}")
    for name in sorted(set(masks) - set(images)):
        raise UserError(f"mask without an image (expected {name}.jpg): {masks[name]}")
    out = []
    for name in sorted(images):
        img, msk = images[name], masks[name]
        sub = name.split("/", 1)[0] if "/" in name else "."
        out.append(Pending(safe_key(name), f"{_stat(img)}:{_stat(msk)}", _static_loader(name, img, msk, sub)))
    return out


def _static_loader(name: str, img: Path, msk: Path, sub: str) -> Callable[[], Members]:
    def load() -> Members:
        jpg, png = _read(img), _read(msk)
        size = frame_size(jpg, str(img))
        mask_labels(png, str(msk), size)
        meta = {"name": name, "source": "static" if sub == "." else f"static/{sub}", "size": list(size)}
        return static_members(safe_key(name), meta, jpg, png)

    return load
