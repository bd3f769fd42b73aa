"""BL30K with bounded local disk: download one segment, shard what it completes, drop it, go on.

BL30K is six ~115 GB tars. Downloading all of them before sharding needs ~700 GB for the tars
plus the shards. Here segment i is downloaded into a work folder, indexed together with the
*spill* of segment i-1, and every video whose frames all have their masks is sharded into
`<out>/segments/<segment>/`; the members of videos still missing masks (or frames) are copied
into a small spill tar, carried to segment i+1, and the segment is deleted. Peak local disk is one
segment + the spill + the shards (nothing of the shards when `out` is s3://). At the end
`<out>/index.json` lists the segments' shards in order (`merge_dirs`).

A video seen complete and sharded must not show up again in a later segment (it would be split in
two samples): that is a UserError naming it; shard from the downloaded tars (`shard_bl30k`) then.

Resumable: `<work>/state.json` records the segments finished (and the spill), each segment's
shards resume like any `write_shards` run, and a downloaded segment is verified, not refetched.
"""

from __future__ import annotations

import json
import os
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from stcn.data.shards.bl30k import Bl30kIndex, Bl30kReader, video_pending
from stcn.data.shards.inputs import DEFAULT_CHECK, check_level
from stcn.data.shards.parallel import merge_dirs, parallel_loads
from stcn.data.shards.writer import tar_info, write_shards
from stcn.errors import UserError
from stcn.registry import Dataset

Log = Callable[[str], None]
Fetch = Callable[[int, Path], Path]  # (segment number, destination file) -> the downloaded file
STATE = "state.json"


def segment_fetcher(ds: Dataset, source: str | None, url: str | None, log: Log) -> tuple[list[str], Fetch]:
    """Names of the segments of the BL30K registry entry `ds` (its `files`) and a function downloading
    segment i (any `stcn download` source)."""
    from stcn.data.fetch.download import fetch_first
    from stcn.data.fetch.sources import bundled_bl30k_segments, default_source, file_url, own_sources, write_tar

    if not ds.layout_type.segment_tars or not ds.files:
        raise UserError(f"{ds.name} is not a BL30K dataset with segment files (layout {ds.layout})")
    own = source is None and not url  # each segment from its own sources, in order
    source = source or default_source(ds)
    names = [a.name for a in ds.files]
    if source == "bundled":
        segments = bundled_bl30k_segments()
        names = names[: len(segments)]

        def build(i: int, dest: Path) -> Path:
            return write_tar(dest, segments[i])

        return names, build
    # bad source / url fail before any download
    urls = [own_sources(a) if own else [file_url(ds, a, source, url)] for a in ds.files]

    def download(i: int, dest: Path) -> Path:
        return fetch_first(urls[i], dest, checksum=ds.files[i].checksum, log=log)

    return names, download


def _complete(index: Bl30kIndex, rows) -> bool:
    """Every frame of the video has its mask and every mask its frame (the BL30K layout)."""
    r = index.rows
    frames = {int(r["stem"][i]) for i in rows if r["kind"][i] == 0}
    masks = {int(r["stem"][i]) for i in rows if r["kind"][i] == 1}
    return bool(frames) and frames == masks


def _write_spill(path: Path, index: Bl30kIndex, reader: Bl30kReader, groups: list) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with tarfile.open(tmp, "w", format=tarfile.GNU_FORMAT) as tar:
        for _, rows in groups:
            for row in rows:
                data = reader.read(int(row))
                tar.addfile(tar_info(index.name(int(row)), len(data)), _Bytes(data))
    os.replace(tmp, path)


class _Bytes:
    """A minimal file object over bytes for `tarfile.addfile` (no extra copy)."""

    def __init__(self, data: bytes) -> None:
        self.view, self.pos = memoryview(data), 0

    def read(self, n: int = -1) -> bytes:
        end = len(self.view) if n < 0 else self.pos + n
        out = self.view[self.pos : end].tobytes()
        self.pos += len(out)
        return out


def _drop(path: Path) -> None:
    for p in (path, path.with_name(path.name + ".sha256"), path.with_name(path.name + ".part")):
        p.unlink(missing_ok=True)


def shard_bl30k_streamed(
    names: list[str],
    fetch: Fetch,
    out: str,
    work: str | Path,
    *,
    split: str = "train",
    shard_size_mb: float = 256,
    check: str = DEFAULT_CHECK,
    workers: int | None = None,
    log: Log = lambda _: None,
) -> dict[str, Any]:
    """Shard the segments `names` (fetched one at a time by `fetch` into `work`) into `out`."""
    from stcn.data.shards.build import _run, _size

    size, run = _size(shard_size_mb), _run(check, workers, None)
    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    settings = {"segments": names, "split": split, "shard_size_bytes": size, "check": check, "out": out}
    state_path = work / STATE
    state = json.loads(state_path.read_text()) if state_path.exists() else {}
    if state.get("settings") != settings:
        state = {"settings": settings, "done": 0, "spill": None, "sharded": []}
    sharded = set(state["sharded"])
    for name in names[: state["done"]]:  # killed after a segment was finished, before it was deleted
        _drop(work / name)
    for old in work.glob("spill-*.tar*"):
        if old.name != state["spill"]:
            old.unlink()
    subdirs = [f"segments/{Path(n).stem}" for n in names]
    for i in range(state["done"], len(names)):
        seg = fetch(i, work / names[i])
        spill = work / state["spill"] if state["spill"] else None
        index = Bl30kIndex([str(p) for p in (spill, seg) if p])
        with Bl30kReader(index) as reader:
            groups = list(index.groups())
            again = [name for name, _ in groups if name in sharded]
            if again:
                raise UserError(
                    f"BL30K video {again[0]} continues in {names[i]} after it was sharded complete from earlier "
                    "segments; download every segment and use `stcn shard bl30k` instead"
                )
            done = [(n, rows) for n, rows in groups if _complete(index, rows)]
            carry = [(n, rows) for n, rows in groups if not _complete(index, rows)]
            log(f"{names[i]}: {len(done)} complete videos to shard, {len(carry)} continue in the next segment")
            pending = [video_pending(index, reader, n, rows) for n, rows in done]
            sub = f"{out.rstrip('/')}/{subdirs[i]}"
            with check_level(run["check"], threads=1):  # one core per worker process
                loads = parallel_loads(run["workers"], spool_root=work)  # spool counted in the work folder
                if pending:
                    write_shards(pending, sub, dataset="bl30k", split=split, source="bl30k", shard_size_bytes=size,
                                 log=log, loads=loads)  # fmt: skip
                else:
                    _empty_part(sub, split, size, log)
            new_spill = f"spill-{i}.tar" if carry else None
            if carry:
                _write_spill(work / new_spill, index, reader, carry)
        sharded |= {n for n, _ in done}
        state.update(done=i + 1, spill=new_spill, sharded=sorted(sharded))
        tmp = state_path.with_name(STATE + ".tmp")
        tmp.write_text(json.dumps(state))
        os.replace(tmp, state_path)
        _drop(seg)
        if spill:
            spill.unlink(missing_ok=True)
        log(f"{names[i]}: done, segment deleted")
    if state["spill"]:
        left = Bl30kIndex([str(work / state["spill"])])
        name, rows = next(iter(left.groups()))
        r = left.rows
        masks = {int(r["stem"][i]) for i in rows if r["kind"][i] == 1}
        frames = {int(r["stem"][i]) for i in rows if r["kind"][i] == 0}
        lone = [int(i) for i in rows if (r["kind"][i] == 0 and r["stem"][i] not in masks)]
        lone = lone or [int(i) for i in rows if (r["kind"][i] == 1 and r["stem"][i] not in frames)]
        what = "frame without a mask" if r["kind"][lone[0]] == 0 else "mask without a frame"
        raise UserError(f"{what} after the last BL30K segment: {left.name(lone[0])} (video {name})")
    return merge_dirs(out, split, subdirs, {"segments": names})


def _empty_part(sub: str, split: str, size: int, log: Log) -> None:
    """A finished, empty shard list for a segment that completes no video."""
    from stcn.data.shards.store import Store
    from stcn.data.shards.writer import FORMAT_VERSION

    entry = {"format": FORMAT_VERSION, "complete": True, "shard_size_bytes": size, "input_sha256": "", "shards": []}
    entry["totals"] = {"shards": 0, "samples": 0, "bytes": 0}
    index = {"format": FORMAT_VERSION, "dataset": "bl30k", "splits": {split: entry}, "shards": []}
    Store(sub).write_index({**index, "totals": entry["totals"]})
    log(f"{sub}: no complete video in this segment")
