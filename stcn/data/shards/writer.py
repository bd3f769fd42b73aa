"""Deterministic, resumable writing of samples into `<split>-%06d.tar` shards plus index.json."""

from __future__ import annotations

import hashlib
import re
import tarfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from stcn.data.shards.format import (
    TAR_GID,
    TAR_GNAME,
    TAR_MODE,
    TAR_MTIME,
    TAR_UID,
    TAR_UNAME,
    shard_name,
)
from stcn.data.shards.store import Store
from stcn.errors import UserError
from stcn.progress import progress_bar

FORMAT_VERSION = 1
Members = list[tuple[str, bytes]]


@dataclass
class Pending:
    """A sample not read yet: its key, a cheap fingerprint of its input (names and sizes),
    `load()` which reads, checks and returns its tar members, and its input bytes when known
    (0: unknown; `--part` then balances parts by sample count instead of bytes)."""

    key: str
    fingerprint: str
    load: Callable[[], Members]
    size: int = 0


def tar_info(name: str, size: int) -> tarfile.TarInfo:
    """A tar header with the fixed metadata of the shard format."""
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = size, TAR_MTIME, TAR_MODE
    info.uid, info.gid, info.uname, info.gname = TAR_UID, TAR_GID, TAR_UNAME, TAR_GNAME
    info.type = tarfile.REGTYPE
    return info


def _tar_bytes(members: Members) -> int:
    """Bytes the members take in a GNU tar (headers, long-name records, padding)."""
    total = 0
    for name, data in members:
        total += 512 + -(-len(data) // 512) * 512
        if len(name.encode()) >= 100:
            total += 512 + -(-(len(name.encode()) + 1) // 512) * 512
    return total


def input_digest(samples: Sequence[Pending]) -> str:
    sha = hashlib.sha256()
    for s in samples:
        sha.update(f"{s.key}\0{s.fingerprint}\n".encode())
    return sha.hexdigest()


def _shard_re(split: str) -> re.Pattern[str]:
    return re.compile(rf"^\.?{re.escape(split)}-(\d{{6}})\.tar(\.tmp)?$")


def _totals(shards: list[dict[str, Any]]) -> dict[str, int]:
    return {
        "shards": len(shards),
        "samples": sum(s["samples"] for s in shards),
        "bytes": sum(s["bytes"] for s in shards),
    }


def _save(store: Store, index: dict[str, Any], split: str, entry: dict[str, Any]) -> None:
    entry["totals"] = _totals(entry["shards"])
    index["splits"][split] = entry
    flat = [{**s, "split": name} for name, e in sorted(index["splits"].items()) for s in e["shards"]]
    index["shards"], index["totals"] = flat, _totals(flat)
    store.write_index(index)


def _kept_shards(store: Store, previous: dict[str, Any] | None, settings: dict[str, Any], log) -> list:
    """The leading shards of a previous run with the same settings whose bytes still match."""
    if not previous or any(previous.get(k) != v for k, v in settings.items()):
        if previous:
            log("settings or input changed since the last run: rebuilding all shards")
        return []
    kept = []
    for s in previous["shards"]:
        try:
            same = store.size(s["name"]) == s["bytes"] and store.sha256(s["name"]) == s["sha256"]
        except FileNotFoundError:
            same = False
        if not same:
            log(f"shard {s['name']} is missing or changed: rewriting from there")
            break
        kept.append(s)
    return kept


def write_shards(
    samples: Sequence[Pending],
    out: str,
    *,
    dataset: str,
    split: str,
    source: str,
    shard_size_bytes: int,
    log: Callable[[str], None] = lambda _: None,
    loads: Callable[[Sequence[Pending]], Iterator[Members | bytes]] | None = None,
    listing_sha256: str | None = None,
) -> dict[str, Any]:
    """Write `samples` (in the given order) to `out` and return the index; resumes a killed run.

    `loads(samples)` yields each sample's members (or their `tar_record`) in order (default: `sample.load()`;
    `stcn.data.shards.parallel.parallel_loads` reads and checks them in worker processes).

    A sample never spans shards; a shard is closed before a sample would push it past
    `shard_size_bytes`. Each finished shard is recorded in index.json at once, so a re-run keeps
    the finished shards whose sha256 still matches and continues with the next sample.

    `listing_sha256`: for one part of a `--part I/N` run, the `input_digest` of the whole input (all parts),
    recorded so that `merge` can refuse parts made from different inputs; such a part may hold no sample.
    """
    if not samples and listing_sha256 is None:
        raise UserError(f"no samples to shard for {source}")
    if shard_size_bytes <= 0:
        raise UserError(f"shard size must be positive, got {shard_size_bytes} bytes")
    if not re.fullmatch(r"[A-Za-z0-9_\-]+", split):
        raise UserError(f"split name {split!r} may only hold letters, digits, '_' and '-'")
    store = Store(out)
    index = store.read_index() or {}
    if index.get("dataset", dataset) != dataset:
        raise UserError(f"{store.url_of('index.json')} belongs to dataset {index['dataset']!r}, not {dataset!r}")
    index = {"format": FORMAT_VERSION, "dataset": dataset, "splits": index.get("splits", {})}
    settings = {
        "format": FORMAT_VERSION,
        "source": source,
        "shard_size_bytes": shard_size_bytes,
        "input_sha256": input_digest(samples),
        "input_samples": len(samples),
        **({"listing_sha256": listing_sha256} if listing_sha256 is not None else {}),
    }
    previous = index["splits"].get(split)
    kept = _kept_shards(store, previous, settings, log)
    done = sum(s["samples"] for s in kept)
    if previous and previous.get("complete") and len(kept) == len(previous["shards"]):
        log(f"{split}: {len(kept)} shards already complete in {out}")
        return index
    if kept:
        log(f"{split}: resuming after {len(kept)} complete shards ({done} samples)")
    entry = {**settings, "complete": False, "shards": kept}
    _save(store, index, split, entry)

    shard = _OpenShard(store, shard_name(split, len(kept)))
    try:
        todo = samples[done:]
        with progress_bar(f"shard {dataset} {split}", len(samples), "samples", start=done) as bar:
            for members in (s.load() for s in todo) if loads is None else loads(todo):
                size = len(members) if isinstance(members, bytes) else _tar_bytes(members)
                if shard.samples and shard.bytes + size > shard_size_bytes:
                    entry["shards"].append(shard.close())
                    _save(store, index, split, entry)
                    log(f"wrote {shard.name} ({shard.samples} samples, {shard.bytes / 2**20:.1f} MiB)")
                    shard = _OpenShard(store, shard_name(split, len(entry["shards"])))
                shard.add(members)
                bar.advance(1, info=shard.name)
    except BaseException:
        shard.abort()
        raise
    if shard.samples:
        entry["shards"].append(shard.close())
        log(f"wrote {shard.name} ({shard.samples} samples, {shard.bytes / 2**20:.1f} MiB)")
    else:
        shard.abort()
    entry["complete"] = True
    _save(store, index, split, entry)
    _remove_stale(store, split, len(entry["shards"]))
    return index


def _remove_stale(store: Store, split: str, count: int) -> None:
    """Delete shards of `split` numbered past `count` and leftover temp files (earlier runs)."""
    pattern = _shard_re(split)
    for name in store.names():
        m = pattern.match(name)
        if m and (m.group(2) or name.startswith(".") or int(m.group(1)) >= count):
            store.remove(name)


def tar_record(members: Members) -> bytes:
    """The bytes `members` take in a GNU tar (header, long-name records, data, padding), as
    `tarfile` writes them; shard workers build these so the writer only hashes and writes."""
    parts = []
    for name, data in members:
        parts.append(tar_info(name, len(data)).tobuf(tarfile.GNU_FORMAT, tarfile.ENCODING, "surrogateescape"))
        parts.append(data)
        if len(data) % tarfile.BLOCKSIZE:
            parts.append(bytes(tarfile.BLOCKSIZE - len(data) % tarfile.BLOCKSIZE))
    return b"".join(parts)


class _OpenShard:
    """One shard being written: a deterministic GNU tar streamed into the store (byte for byte what
    `tarfile` writes: member records, two zero blocks, zeros up to a whole 10240-byte record)."""

    def __init__(self, store: Store, name: str) -> None:
        self.name, self.samples = name, 0
        self._file = store.create(name)

    @property
    def bytes(self) -> int:
        return self._file.out.n

    def add(self, members: Members | bytes) -> None:
        """Append one sample: its members, or their `tar_record` bytes."""
        self._file.out.write(members if isinstance(members, bytes) else tar_record(members))
        self.samples += 1

    def close(self) -> dict[str, Any]:
        out = self._file.out
        out.write(bytes(2 * tarfile.BLOCKSIZE))
        if out.n % tarfile.RECORDSIZE:
            out.write(bytes(tarfile.RECORDSIZE - out.n % tarfile.RECORDSIZE))
        self._file.commit()
        return {"name": self.name, "samples": self.samples, "bytes": out.n, "sha256": out.sha.hexdigest()}

    def abort(self) -> None:
        self._file.discard()
