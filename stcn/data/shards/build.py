"""Public sharding entry points: DAVIS, YouTube-VOS, static images and BL30K to WebDataset shards.

The shard layout is defined in `stcn.data.shards.format`; `write_shards` (shard_writer) makes the
output deterministic and resumable, locally or on S3.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from stcn.atomic import output_errors
from stcn.data.folders import davis_sequences, detect_layout, youtube_sequences
from stcn.data.shards.bl30k import Bl30kIndex, Bl30kReader, bl30k_pending
from stcn.data.storage import is_url, storage_options
from stcn.data.shards.format import DEFAULT_SHARD_SIZE_MB, safe_key
from stcn.data.shards.inputs import (
    DEFAULT_CHECK,
    check_level,
    davis_pending,
    sequence_pending,
    static_pending,
    youtube_pending,
    youtube_split_folder,
)
from stcn.data.shards.parallel import parallel_loads, parse_part, part_dir, select_part
from stcn.data.shards.writer import input_digest, write_shards
from stcn.errors import UserError
from stcn.layouts import Bl30k, Davis, Layout, Static, YouTube
from stcn.registry import Dataset

Log = Callable[[str], None]


def _size(shard_size_mb: float) -> int:
    """Shard size in bytes; checked before any input is read."""
    if not math.isfinite(shard_size_mb) or shard_size_mb <= 0 or shard_size_mb * 2**20 > 2**53:
        raise UserError(f"--shard-size-mb must be positive, got {shard_size_mb} (a finite number of MiB)")
    return int(shard_size_mb * 2**20)


def _write(
    samples: list, out: str, dataset: str, split: str, source: str, size: int, log: Log, run: dict[str, Any]
) -> dict[str, Any]:
    """Write (this part of) the samples with the run's check level and worker processes."""
    part = parse_part(run.get("part"))
    workers = run.get("workers")
    if workers is not None and workers < 1:
        raise UserError(f"--workers must be at least 1, got {workers}")
    out = str(out).rstrip("/")
    listing = None
    if part is not None:
        if not samples:
            raise UserError(f"no samples to shard for {source}")
        listing = input_digest(samples)  # the whole input: `merge` refuses parts made from different inputs
        samples, out = select_part(samples, part), f"{out}/{part_dir(part)}"
        log(f"part {part[0]}/{part[1]}: {len(samples)} samples -> {out}")
    with check_level(run.get("check") or DEFAULT_CHECK, threads=1), output_errors(f"shards to {out}"):
        return write_shards(samples, out, dataset=dataset, split=split, source=source, shard_size_bytes=size,
                            log=log, loads=parallel_loads(workers), listing_sha256=listing)  # fmt: skip


def _run(check: str, workers: int | None, part: str | None) -> dict[str, Any]:
    """The run options of every shard command, checked before any input is read."""
    parse_part(part)
    with check_level(check):
        pass
    return {"check": check, "workers": workers, "part": part}


def shard_davis(
    root: str | Path,
    out: str,
    *,
    year: int | str = 2017,
    split: str = "train",
    shard_size_mb: float = DEFAULT_SHARD_SIZE_MB,
    log: Log = lambda _: None,
    check: str = DEFAULT_CHECK,
    workers: int | None = None,
    part: str | None = None,
) -> dict[str, Any]:
    """Shard a DAVIS split (one sample per sequence); returns the index.

    Every shard command: `check` "header" (default) or "full" (see `check_level`), `workers`
    processes (default: the CPU count), `part` "I/N" to write only part I of N (`shard_parallel`)."""
    if str(year) not in ("2016", "2017"):
        raise UserError(f"DAVIS year must be 2016 or 2017, got {year}")
    size, run = _size(shard_size_mb), _run(check, workers, part)
    return _write(davis_pending(root, year, split), out, f"davis{year}", split, f"davis{year}/{split}", size, log, run)


def shard_youtube(
    root: str | Path,
    out: str,
    *,
    split: str = "train",
    shard_size_mb: float = DEFAULT_SHARD_SIZE_MB,
    log: Log = lambda _: None,
    check: str = DEFAULT_CHECK,
    workers: int | None = None,
    part: str | None = None,
    subset: str | Path | None = None,
) -> dict[str, Any]:
    """Shard a YouTube-VOS split (`train` reads `train_480p` when it exists); returns the index.

    `subset`: a file listing the video names to keep, one a line (the release trains on the 3464
    videos of `stcn/data/youtube_train_subset.txt`); every listed video must exist."""
    size, run = _size(shard_size_mb), _run(check, workers, part)
    pending = youtube_pending(root, split)
    if subset:
        pending = youtube_subset(pending, subset, f"{root}/{split}")
        log(f"subset {subset}: {len(pending)} videos")
    return _write(pending, out, "youtube", split, f"youtube/{split}", size, log, run)


def youtube_subset(pending: list, subset: str | Path, where: str) -> list:
    """The pending videos named in the `subset` file (name order kept); a listed video that is
    missing is a UserError."""
    try:
        names = [n.strip() for n in Path(subset).read_text().splitlines() if n.strip()]
    except OSError as e:
        raise UserError(f"cannot read the YouTube-VOS subset list {subset}: {e}") from None
    wanted = {safe_key(n): n for n in names}
    have = {p.key for p in pending}
    missing = sorted(n for k, n in wanted.items() if k not in have)
    if missing:
        raise UserError(f"{len(missing)} video(s) of {subset} are not in {where}, e.g. {missing[0]}")
    return [p for p in pending if p.key in wanted]


def shard_static(
    root: str | Path,
    out: str,
    *,
    split: str = "train",
    shard_size_mb: float = DEFAULT_SHARD_SIZE_MB,
    log: Log = lambda _: None,
    check: str = DEFAULT_CHECK,
    workers: int | None = None,
    part: str | None = None,
) -> dict[str, Any]:
    """Shard image + mask pairs found recursively under `root` (one sample per image)."""
    size, run = _size(shard_size_mb), _run(check, workers, part)
    return _write(static_pending(root), out, "static", split, "static", size, log, run)


def shard_bl30k(
    segments: Sequence[str | Path],
    out: str,
    *,
    split: str = "train",
    shard_size_mb: float = DEFAULT_SHARD_SIZE_MB,
    log: Log = lambda _: None,
    check: str = DEFAULT_CHECK,
    workers: int | None = None,
    part: str | None = None,
    index: str | None = None,
) -> dict[str, Any]:
    """Shard BL30K straight from its segment tars (no extraction); one sample per video. `index`: a file
    (path or s3://) holding the member index: loaded when it exists, else written after the scan (index once)."""
    if not segments:
        raise UserError("no BL30K segments given (--segments BL30K_a.tar ...)")
    size, run = _size(shard_size_mb), _run(check, workers, part)
    paths = [str(s) for s in segments]
    bl30k_index = bl30k_member_index(paths, index, log)
    with Bl30kReader(bl30k_index) as reader:
        samples = bl30k_pending(bl30k_index, reader)
        log(f"{len(samples)} videos, {len(bl30k_index.rows['vid'])} members")
        return _write(samples, out, "bl30k", split, "bl30k", size, log, run)


def _exists(url: str) -> bool:
    if not is_url(url):
        return Path(url).is_file()
    import fsspec

    try:
        fs, path = fsspec.core.url_to_fs(url, **storage_options(url))
        return bool(fs.exists(path))
    except Exception as e:
        raise UserError(f"cannot check {url}: {e}") from None


def bl30k_member_index(paths: list[str], index: str | None, log: Log) -> Bl30kIndex:
    """The segments' member index: loaded from `index` when that file exists, else scanned (and saved there)."""
    if index and _exists(index):
        log(f"reading the member index {index}")
        return Bl30kIndex.load(index, paths)
    log(f"indexing {len(paths)} segment(s)")
    found = Bl30kIndex(paths)
    if index:
        found.save(index)
        log(f"member index written to {index}")
    return found


def shard_generic(
    root: str | Path,
    out: str,
    *,
    layout: str | None = None,
    split: str = "train",
    name: str = "generic",
    shard_size_mb: float = DEFAULT_SHARD_SIZE_MB,
    log: Log = lambda _: None,
    check: str = DEFAULT_CHECK,
    workers: int | None = None,
    part: str | None = None,
    subset: str | Path | None = None,
) -> dict[str, Any]:
    """Shard your own videos: a folder in DAVIS layout (`JPEGImages[/480p]/<seq>`, `Annotations[/480p]/<seq>`,
    with or without `ImageSets`; without, every sequence) or YouTube-VOS layout (`<split>/JPEGImages/<video>`).

    Every frame needs its mask for training. `layout` None: detected from the folder. `subset`: a file of the
    video names to keep (see `youtube_subset`).
    """
    run = _run(check, workers, part)
    layout = layout or detect_layout(root)
    size = _size(shard_size_mb)
    if layout == "davis":
        seqs = sorted(davis_sequences(root, 2017, split), key=lambda s: s.name)
    elif layout == "youtube":
        seqs = youtube_sequences(root, youtube_split_folder(root, split))
    else:
        raise UserError(f"unknown layout {layout!r}; choose davis or youtube")
    pending = [sequence_pending(s, f"{name}/{split}") for s in seqs]
    if subset:
        pending = youtube_subset(pending, subset, f"{root} ({split})")
        log(f"subset {subset}: {len(pending)} videos")
    return _write(pending, out, name, split, f"{name}/{split}", size, log, run)


def shard_dataset(ds: Dataset, out: str, *, root: str | Path | None = None, **options: Any) -> dict[str, Any]:
    """Shard the registry dataset `ds` (its folder, or `root`) by its layout: static image pairs, BL30K segment
    tars (`*.tar` in the folder), or DAVIS / YouTube-VOS videos under the dataset's name (`shard_generic`).
    `options`: those of the shard function (split, shard_size_mb, check, workers, part, log; subset for videos)."""
    if not ds.layout_type.sharded:
        raise UserError(f"{ds.name} (layout {ds.layout}) is not a dataset that can be sharded")
    return READERS[type(ds.layout_type)](ds, Path(root or ds.folder), out, **options)


# how each sharded layout (stcn.layouts: `sharded`) is read: (registry entry, its folder, out, options) -> index
READERS: dict[type[Layout], Callable[..., dict[str, Any]]] = {
    Davis: lambda ds, root, out, **o: shard_generic(root, out, layout=ds.layout, name=ds.name, **o),
    YouTube: lambda ds, root, out, **o: shard_generic(root, out, layout=ds.layout, name=ds.name, **o),
    Static: lambda ds, root, out, **o: shard_static(root, out, **o),
    Bl30k: lambda ds, root, out, **o: shard_bl30k(sorted(root.glob("*.tar")), out, **o),
}
