"""Public sharding entry points: DAVIS, YouTube-VOS, static images and BL30K to WebDataset shards.

The shard layout is defined in `stcn.data.shard_format`; `write_shards` (shard_writer) makes the
output deterministic and resumable, locally or on S3.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from stcn.data.shard_bl30k import Bl30kIndex, Bl30kReader, bl30k_pending
from stcn.data.shard_format import DEFAULT_SHARD_SIZE_MB
from stcn.data.shard_inputs import davis_pending, static_pending, youtube_pending
from stcn.data.shard_writer import write_shards
from stcn.errors import UserError

Log = Callable[[str], None]


def _size(shard_size_mb: float) -> int:
    if shard_size_mb <= 0:
        raise UserError(f"--shard-size-mb must be positive, got {shard_size_mb}")
    return int(shard_size_mb * 2**20)


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
    samples = davis_pending(root, year, split)
    return write_shards(samples, str(out), dataset=f"davis{year}", split=split, source=f"davis{year}/{split}",
                        shard_size_bytes=_size(shard_size_mb), log=log)  # fmt: skip


def shard_youtube(
    root: str | Path,
    out: str,
    *,
    split: str = "train",
    shard_size_mb: float = DEFAULT_SHARD_SIZE_MB,
    log: Log = lambda _: None,
) -> dict[str, Any]:
    """Shard a YouTube-VOS split (`train` reads `train_480p` when it exists); returns the index."""
    samples = youtube_pending(root, split)
    return write_shards(samples, str(out), dataset="youtube", split=split, source=f"youtube/{split}",
                        shard_size_bytes=_size(shard_size_mb), log=log)  # fmt: skip


def shard_static(
    root: str | Path,
    out: str,
    *,
    split: str = "train",
    shard_size_mb: float = DEFAULT_SHARD_SIZE_MB,
    log: Log = lambda _: None,
) -> dict[str, Any]:
    """Shard image + mask pairs found recursively under `root` (one sample per image)."""
    samples = static_pending(root)
    return write_shards(samples, str(out), dataset="static", split=split, source="static",
                        shard_size_bytes=_size(shard_size_mb), log=log)  # fmt: skip


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
    paths = [str(s) for s in segments]
    log(f"indexing {len(paths)} segment(s)")
    index = Bl30kIndex(paths)
    with Bl30kReader(index) as reader:
        samples = bl30k_pending(index, reader)
        log(f"{len(samples)} videos, {len(index.rows['vid'])} members")
        return write_shards(samples, str(out), dataset="bl30k", split=split, source="bl30k",
                            shard_size_bytes=_size(shard_size_mb), log=log)  # fmt: skip
