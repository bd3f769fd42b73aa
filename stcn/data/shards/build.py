"""Public sharding entry points: DAVIS, YouTube-VOS, static images and BL30K to WebDataset shards.

The shard layout is defined in `stcn.data.shards.format`; `write_shards` (shard_writer) makes the
output deterministic and resumable, locally or on S3.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from stcn.atomic import output_errors
from stcn.data.shards.bl30k import Bl30kIndex, Bl30kReader, bl30k_pending
from stcn.data.shards.format import DEFAULT_SHARD_SIZE_MB
from stcn.data.folders import davis_sequences, detect_layout, youtube_sequences
from stcn.data.shards.inputs import (
    davis_pending,
    sequence_pending,
    static_pending,
    youtube_pending,
    youtube_split_folder,
)
from stcn.data.shards.writer import write_shards
from stcn.errors import UserError

Log = Callable[[str], None]


def _size(shard_size_mb: float) -> int:
    """Shard size in bytes; checked before any input is read."""
    if shard_size_mb <= 0:
        raise UserError(f"--shard-size-mb must be positive, got {shard_size_mb}")
    return int(shard_size_mb * 2**20)


def _write(samples: list, out: str, dataset: str, split: str, source: str, size: int, log: Log) -> dict[str, Any]:
    with output_errors(f"shards to {out}"):  # disk full, read-only: one line
        return write_shards(samples, str(out), dataset=dataset, split=split, source=source, shard_size_bytes=size,
                            log=log)  # fmt: skip


def shard_davis(
    root: str | Path,
    out: str,
    *,
    year: int | str = 2017,
    split: str = "train",
    shard_size_mb: float = DEFAULT_SHARD_SIZE_MB,
    log: Log = lambda _: None,
) -> dict[str, Any]:
    """Shard a DAVIS split (one sample per sequence); returns the index."""
    if str(year) not in ("2016", "2017"):
        raise UserError(f"DAVIS year must be 2016 or 2017, got {year}")
    size = _size(shard_size_mb)
    return _write(davis_pending(root, year, split), out, f"davis{year}", split, f"davis{year}/{split}", size, log)


def shard_youtube(
    root: str | Path,
    out: str,
    *,
    split: str = "train",
    shard_size_mb: float = DEFAULT_SHARD_SIZE_MB,
    log: Log = lambda _: None,
) -> dict[str, Any]:
    """Shard a YouTube-VOS split (`train` reads `train_480p` when it exists); returns the index."""
    size = _size(shard_size_mb)
    return _write(youtube_pending(root, split), out, "youtube", split, f"youtube/{split}", size, log)


def shard_static(
    root: str | Path,
    out: str,
    *,
    split: str = "train",
    shard_size_mb: float = DEFAULT_SHARD_SIZE_MB,
    log: Log = lambda _: None,
) -> dict[str, Any]:
    """Shard image + mask pairs found recursively under `root` (one sample per image)."""
    size = _size(shard_size_mb)
    return _write(static_pending(root), out, "static", split, "static", size, log)


def shard_bl30k(
    segments: Sequence[str | Path],
    out: str,
    *,
    split: str = "train",
    shard_size_mb: float = DEFAULT_SHARD_SIZE_MB,
    log: Log = lambda _: None,
) -> dict[str, Any]:
    """Shard BL30K straight from its segment tars (no extraction); one sample per video."""
    if not segments:
        raise UserError("no BL30K segments given (--segments BL30K_a.tar ...)")
    size = _size(shard_size_mb)
    paths = [str(s) for s in segments]
    log(f"indexing {len(paths)} segment(s)")
    index = Bl30kIndex(paths)
    with Bl30kReader(index) as reader:
        samples = bl30k_pending(index, reader)
        log(f"{len(samples)} videos, {len(index.rows['vid'])} members")
        return _write(samples, out, "bl30k", split, "bl30k", size, log)


def shard_generic(
    root: str | Path,
    out: str,
    *,
    layout: str | None = None,
    split: str = "train",
    name: str = "generic",
    shard_size_mb: float = DEFAULT_SHARD_SIZE_MB,
    log: Log = lambda _: None,
) -> dict[str, Any]:
    """Shard your own videos: a folder in DAVIS layout (`JPEGImages[/480p]/<seq>`, `Annotations[/480p]/<seq>`,
    with or without `ImageSets`; without, every sequence) or YouTube-VOS layout (`<split>/JPEGImages/<video>`).

    Every frame needs its mask for training. `layout` None: detected from the folder.
    """
    layout = layout or detect_layout(root)
    size = _size(shard_size_mb)
    if layout == "davis":
        seqs = sorted(davis_sequences(root, 2017, split), key=lambda s: s.name)
    elif layout == "youtube":
        seqs = youtube_sequences(root, youtube_split_folder(root, split))
    else:
        raise UserError(f"unknown layout {layout!r}; choose davis or youtube")
    pending = [sequence_pending(s, f"{name}/{split}") for s in seqs]
    return _write(pending, out, name, split, f"{name}/{split}", size, log)
