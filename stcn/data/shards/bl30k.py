"""BL30K samples read straight from its segment tars, without extracting them.

Pass 1 reads only the member headers of every segment (tarfile seeks over the data) and keeps a
compact index (31 bytes per member, ~45 more while sorting it). Pass 2 reads one video at a time
by offset, so members of a video may be anywhere, even in different segments, while memory holds
about one video.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tarfile
from array import array
from collections.abc import Callable, Iterator
from typing import BinaryIO

import fsspec
import numpy as np

from stcn.data.shards.format import safe_key
from stcn.data.shards.inputs import video_sample_members
from stcn.data.shards.store import is_url, storage_options
from stcn.data.shards.writer import Members, Pending
from stcn.errors import UserError

MEMBER = re.compile(r"^(.*?)(JPEGImages|Annotations)/([^/]+)/([^/]+?)(\.[^./]*)$")
KINDS = ("JPEGImages", "Annotations")
EXTS = {"JPEGImages": (".jpg", ".jpeg"), "Annotations": (".png",)}


def _open(path: str) -> BinaryIO:
    try:
        if is_url(path):
            return fsspec.open(path, "rb", **storage_options(path)).open()
        return open(path, "rb")  # noqa: SIM115
    except OSError as e:
        raise UserError(f"cannot open BL30K segment {path}: {e}") from None


def _size(f: BinaryIO) -> int:
    f.seek(0, os.SEEK_END)
    size = f.tell()
    f.seek(0)
    return size


class _Interner:
    def __init__(self) -> None:
        self.ids: dict[str, int] = {}
        self.values: list[str] = []

    def __call__(self, value: str) -> int:
        i = self.ids.get(value)
        if i is None:
            i = self.ids[value] = len(self.values)
            self.values.append(value)
        return i


class Bl30kIndex:
    """Where each frame and mask of each video lies in the segments (pass 1)."""

    def __init__(self, segments: list[str]) -> None:
        self.segments = segments
        self.videos, self.stems, self.heads, self.exts = _Interner(), _Interner(), _Interner(), _Interner()
        cols = {"vid": "i", "stem": "i", "kind": "b", "seg": "b", "head": "i", "ext": "b", "off": "q", "size": "q"}
        self.cols = {k: array(t) for k, t in cols.items()}
        for i, path in enumerate(segments):
            self._scan(i, path)
        self.rows = {k: np.frombuffer(v, dtype=v.typecode) if len(v) else np.zeros(0) for k, v in self.cols.items()}
        if not len(self.cols["vid"]):
            raise UserError(f"no BL30K members (JPEGImages/<video>/*.jpg) in {', '.join(segments)}")

    def _scan(self, seg: int, path: str) -> None:
        with contextlib.closing(_open(path)) as f:
            fsize = _size(f)
            try:
                tar = tarfile.open(fileobj=f, mode="r:")  # noqa: SIM115
            except tarfile.ReadError as e:
                raise UserError(f"not a readable (uncompressed) tar: {path} ({e})") from None
            last = "(start)"
            while True:
                try:
                    info = tar.next()
                except (tarfile.ReadError, EOFError, UnicodeDecodeError) as e:
                    raise UserError(f"truncated or corrupt tar: {path} (after member {last}: {e})") from None
                if info is None:
                    break
                tar.members.clear()  # tarfile keeps every header otherwise
                last = info.name
                if info.offset_data + info.size > fsize:
                    raise UserError(f"truncated tar: {path} (member {info.name} is cut off)")
                m = MEMBER.match(info.name)
                if not info.isfile() or not m:
                    continue
                head, kind, vid, stem, ext = m.groups()
                if ext.lower() not in EXTS[kind]:
                    raise UserError(f"unexpected file in BL30K {kind}: {path}:{info.name}")
                c = self.cols
                c["vid"].append(self.videos(vid))
                c["stem"].append(self.stems(stem))
                c["kind"].append(KINDS.index(kind))
                c["seg"].append(seg)
                c["head"].append(self.heads(head))
                c["ext"].append(self.exts(ext))
                c["off"].append(info.offset_data)
                c["size"].append(info.size)
            f.seek(tar.offset)
            if f.read(512) != bytes(512):
                raise UserError(
                    f"truncated or corrupt tar: {path} (no valid header or end marker at byte {tar.offset}, "
                    f"after member {last})"
                )

    def name(self, row: int) -> str:
        """The tar member name of an index row."""
        r = self.rows
        return (
            f"{self.heads.values[r['head'][row]]}{KINDS[r['kind'][row]]}/{self.videos.values[r['vid'][row]]}/"
            f"{self.stems.values[r['stem'][row]]}{self.exts.values[r['ext'][row]]}"
        )

    def member(self, row: int) -> str:
        """`segment:member name` of an index row, for messages."""
        return f"{self.segments[self.rows['seg'][row]]}:{self.name(row)}"

    def groups(self) -> Iterator[tuple[str, np.ndarray]]:
        """(video name, its rows sorted by frame name then kind), videos in name order."""
        r = self.rows
        vid_rank = _ranks(self.videos.values)[r["vid"]]
        stem_rank = _ranks(self.stems.values)[r["stem"]]
        order = np.lexsort((r["kind"], stem_rank, vid_rank))
        vid_rank, stem_rank, kind = vid_rank[order], stem_rank[order], r["kind"][order]
        same = (vid_rank[1:] == vid_rank[:-1]) & (stem_rank[1:] == stem_rank[:-1]) & (kind[1:] == kind[:-1])
        dup = np.flatnonzero(same)
        if len(dup):
            raise UserError(f"duplicate BL30K member: {self.member(order[dup[0] + 1])}")
        del stem_rank, kind, same
        bounds = np.flatnonzero(np.diff(vid_rank)) + 1
        for rows in np.split(order, bounds):
            yield self.videos.values[r["vid"][rows[0]]], rows


def _ranks(values: list[str]) -> np.ndarray:
    """Position of each value in sorted order (int32)."""
    ranks = np.empty(len(values), np.int32)
    ranks[sorted(range(len(values)), key=values.__getitem__)] = np.arange(len(values), dtype=np.int32)
    return ranks


class Bl30kReader:
    """Open segment files for pass 2 (close with `close()` or use as a context manager)."""

    def __init__(self, index: Bl30kIndex) -> None:
        self.index = index
        self.files: dict[int, BinaryIO] = {}

    def read(self, row: int) -> bytes:
        r = self.index.rows
        seg = int(r["seg"][row])
        f = self.files.get(seg) or self.files.setdefault(seg, _open(self.index.segments[seg]))
        f.seek(int(r["off"][row]))
        data = f.read(int(r["size"][row]))
        if len(data) != r["size"][row]:
            raise UserError(f"truncated tar: {self.index.member(row)} is cut off")
        return data

    def close(self) -> None:
        for f in self.files.values():
            f.close()
        self.files.clear()

    def __enter__(self) -> Bl30kReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def bl30k_pending(index: Bl30kIndex, reader: Bl30kReader) -> list[Pending]:
    """One pending sample per BL30K video (name order); every frame needs its mask."""
    return [video_pending(index, reader, name, rows) for name, rows in index.groups()]


def video_pending(index: Bl30kIndex, reader: Bl30kReader, name: str, rows: np.ndarray) -> Pending:
    """The pending sample of one video (`rows`: its index rows, as `Bl30kIndex.groups` gives them)."""
    r = index.rows
    parts = (f"{index.stems.values[r['stem'][i]]}:{r['kind'][i]}:{r['size'][i]}" for i in rows)
    fingerprint = hashlib.sha1(";".join(parts).encode()).hexdigest()
    return Pending(safe_key(name), fingerprint, _loader(index, reader, name, rows))


def _loader(index: Bl30kIndex, reader: Bl30kReader, name: str, rows: np.ndarray) -> Callable[[], Members]:
    def load() -> Members:
        r = index.rows
        by_place = rows[np.lexsort((r["off"][rows], r["seg"][rows]))]  # sequential reads
        data = {int(row): reader.read(int(row)) for row in by_place}
        frames, masks = [], {}
        for row in rows:
            stem, where = index.stems.values[r["stem"][row]], index.member(row)
            read = _const(data[int(row)])
            if r["kind"][row] == 0:
                frames.append((stem, where, read))
            else:
                masks[stem] = (where, read)
        return video_sample_members(name, "bl30k", frames, masks, mask_required=True)

    return load


def _const(value: bytes) -> Callable[[], bytes]:
    return lambda: value
