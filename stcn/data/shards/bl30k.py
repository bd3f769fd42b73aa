"""BL30K samples read straight from its segment tars, without extracting them.

Pass 1 reads only the member headers of every segment (tarfile seeks over the data) and keeps a
compact index (31 bytes per member, ~45 more while sorting it). Pass 2 reads one video at a time
by offset, so members of a video may be anywhere, even in different segments, while memory holds
about one video; its members are fetched by byte-range requests (nearby members coalesced into one,
`stcn.data.storage.read_ranges`), so a run over some videos of a segment in S3 fetches about their bytes.

Index once: pass 1 over S3 fetches every byte of every segment (tar headers are spread through the
data), so `Bl30kIndex.save` writes the index to one small file (`--index`, local or S3) and every
`--part` run on every machine loads it (`Bl30kIndex.load`) instead of scanning; it records each
segment's name and size, and a segment of another size is a one-line error naming it.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
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
from stcn.data.shards.writer import Members, Pending
from stcn.data.storage import is_url, read_ranges, storage_options
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


INDEX_FORMAT = 1
COLUMNS = {"vid": "i", "stem": "i", "kind": "b", "seg": "b", "head": "i", "ext": "b", "off": "q", "size": "q"}
NAMES = ("videos", "stems", "heads", "exts")


class Bl30kIndex:
    """Where each frame and mask of each video lies in the segments (pass 1)."""

    def __init__(self, segments: list[str], *, scan: bool = True) -> None:
        self.segments = segments
        self.sizes: list[int] = []  # bytes of each segment when it was scanned
        self.videos, self.stems, self.heads, self.exts = _Interner(), _Interner(), _Interner(), _Interner()
        self.cols = {k: array(t) for k, t in COLUMNS.items()}
        if not scan:
            return
        for i, path in enumerate(segments):
            self._scan(i, path)
        self._finish()

    def _finish(self) -> None:
        self.rows = {k: np.frombuffer(v, dtype=v.typecode) if len(v) else np.zeros(0) for k, v in self.cols.items()}
        if not len(self.cols["vid"]):
            raise UserError(f"no BL30K members (JPEGImages/<video>/*.jpg) in {', '.join(self.segments)}")

    def save(self, url: str) -> None:
        """Write this index to `url` (a path or s3://...; atomic where local): segment names and sizes, the
        interned names and the columns, in one .npz file (a few MB for the 700 GB release)."""
        meta = {"format": INDEX_FORMAT, "segments": [_base(p) for p in self.segments], "sizes": self.sizes}
        meta |= {k: getattr(self, k).values for k in NAMES}
        buf = io.BytesIO()
        np.savez_compressed(buf, meta=np.frombuffer(json.dumps(meta).encode(), np.uint8), **self.rows)
        if is_url(url):
            with fsspec.open(url, "wb", **storage_options(url)) as f:
                f.write(buf.getvalue())
        else:
            tmp = f"{url}.tmp"
            with open(tmp, "wb") as f:
                f.write(buf.getvalue())
            os.replace(tmp, url)

    @classmethod
    def load(cls, url: str, segments: list[str]) -> Bl30kIndex:
        """The index `save` wrote, for `segments` (same names and sizes, else a one-line error)."""
        try:
            opened = fsspec.open(url, "rb", **storage_options(url)) if is_url(url) else open(url, "rb")  # noqa: SIM115
            with opened as f:
                data = np.load(io.BytesIO(f.read()))
            meta = json.loads(data["meta"].tobytes())
            rows = {k: data[k] for k in COLUMNS}
        except (OSError, ValueError, KeyError) as e:
            raise UserError(f"cannot read BL30K index {url}: {e}") from None
        if not isinstance(meta, dict):
            raise UserError(f"corrupt BL30K index {url}: its meta is not a mapping")
        if meta.get("format") != INDEX_FORMAT or meta.get("segments") != [_base(p) for p in segments]:
            raise UserError(f"BL30K index {url} lists segments {meta.get('segments')}, not these {segments}")
        _check_index(url, meta, rows, len(segments))
        for path, size in zip(segments, meta["sizes"], strict=True):
            with contextlib.closing(_open(path)) as f:
                if _size(f) != size:
                    raise UserError(f"BL30K segment {path} has changed since {url} indexed it ({size} bytes then)")
        index = cls(segments, scan=False)
        index.sizes = list(meta["sizes"])
        for k in NAMES:
            interner = getattr(index, k)
            interner.values = list(meta[k])
            interner.ids = {v: i for i, v in enumerate(interner.values)}
        index.rows = {k: rows[k].astype(np.dtype(t) if t != "q" else np.int64) for k, t in COLUMNS.items()}
        if not len(index.rows["vid"]):
            raise UserError(f"BL30K index {url} lists no members")
        return index

    def video_bytes(self, rows: np.ndarray) -> int:
        """Bytes of the members at `rows` (one video's frames and masks)."""
        return int(self.rows["size"][rows].sum())

    def _scan(self, seg: int, path: str) -> None:
        with contextlib.closing(_open(path)) as f:
            fsize = _size(f)
            self.sizes.append(fsize)
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


def _check_index(url: str, meta: dict, rows: dict[str, np.ndarray], segments: int) -> None:
    """The index is input too: every column as long as the others, every id inside its table, every member inside
    its segment (a negative id would wrap around and read another tar's bytes); else one line naming `url`."""

    def bad(what: str) -> UserError:
        return UserError(f"corrupt BL30K index {url}: {what}; delete it to scan the segments again")

    sizes = meta.get("sizes")
    if not isinstance(sizes, list) or len(sizes) != segments or any(type(n) is not int or n < 0 for n in sizes):
        raise bad(f"sizes must be {segments} byte counts, got {sizes!r}")
    for k in NAMES:
        if not isinstance(meta.get(k), list) or not all(isinstance(v, str) for v in meta[k]):
            raise bad(f"{k} must be a list of names")
    n = len(rows["vid"])
    for k, column in rows.items():
        if column.ndim != 1 or len(column) != n or column.dtype.kind not in "iu":
            raise bad(f"column {k} must be {n} integers, got {column.dtype} of shape {column.shape}")
    limits = {"vid": len(meta["videos"]), "stem": len(meta["stems"]), "kind": len(KINDS), "seg": segments,
              "head": len(meta["heads"]), "ext": len(meta["exts"])}  # fmt: skip
    for k, limit in limits.items():
        out = np.flatnonzero((rows[k] < 0) | (rows[k] >= limit))
        if len(out):
            raise bad(f"row {out[0]}: {k} {rows[k][out[0]]} is outside 0..{limit - 1}")
    off, size = rows["off"].astype(np.int64), rows["size"].astype(np.int64)
    end = np.asarray(sizes, np.int64)[rows["seg"].astype(np.int64)] if n else np.zeros(0, np.int64)
    out = np.flatnonzero((off < 0) | (size < 0) | (off > end - size))
    if len(out):
        raise bad(f"row {out[0]}: bytes {off[out[0]]}+{size[out[0]]} lie outside its segment")


def _ranks(values: list[str]) -> np.ndarray:
    """Position of each value in sorted order (int32)."""
    ranks = np.empty(len(values), np.int32)
    ranks[sorted(range(len(values)), key=values.__getitem__)] = np.arange(len(values), dtype=np.int32)
    return ranks


def _base(path: str) -> str:
    return str(path).rstrip("/").rsplit("/", 1)[-1]


class Bl30kReader:
    """Open segment files for pass 2 (close with `close()` or use as a context manager); `read_many`
    fetches a video's members by coalesced byte ranges."""

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

    def read_many(self, rows: np.ndarray) -> dict[int, bytes]:
        """The bytes of each member at `rows`, one coalesced range request per nearby group and segment."""
        r = self.index.rows
        out: dict[int, bytes] = {}
        for seg in np.unique(r["seg"][rows]).tolist():
            mine = [int(i) for i in rows if r["seg"][i] == seg]
            ranges = [(int(r["off"][i]), int(r["size"][i])) for i in mine]
            try:
                got = read_ranges(self.index.segments[seg], ranges)
            except UserError as e:
                raise UserError(f"BL30K segment {self.index.segments[seg]}: {e}") from None
            out |= dict(zip(mine, got, strict=True))
        return out

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
    return Pending(safe_key(name), fingerprint, _loader(index, reader, name, rows), size=index.video_bytes(rows))


def _loader(index: Bl30kIndex, reader: Bl30kReader, name: str, rows: np.ndarray) -> Callable[[], Members]:
    def load() -> Members:
        r = index.rows
        data = reader.read_many(rows)
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
