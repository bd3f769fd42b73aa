"""Where shards live: a local folder or an fsspec URL (s3://bucket/prefix); index.json I/O."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
from collections.abc import Iterator
from typing import Any, BinaryIO

import fsspec
from fsspec.implementations.local import LocalFileSystem

from stcn.data.storage import bounded, is_url, storage_options  # noqa: F401  (is_url re-exported)
from stcn.data.shards.format import INDEX
from stcn.errors import UserError
from stcn.names import check_relative

CHUNK = 4 << 20


class _HashingWriter:
    """File wrapper that counts and sha256-hashes everything written (tarfile needs tell())."""

    def __init__(self, f: BinaryIO) -> None:
        self.f, self.sha, self.n = f, hashlib.sha256(), 0

    def write(self, data: bytes) -> int:
        self.sha.update(data)
        self.n += len(data)
        self.f.write(data)
        return len(data)

    def tell(self) -> int:
        return self.n


class Store:
    """A shard output location. Local writes go to a temp name renamed on success; remote
    (S3) writes go straight to the key, which only appears when the upload completes."""

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")
        try:
            self.fs, self.root = fsspec.core.url_to_fs(self.url, **storage_options(self.url))
            bounded(self.fs)
        except (ImportError, ValueError) as e:
            raise UserError(f"unsupported output location {url!r}: {e}") from None
        self.local = isinstance(self.fs, LocalFileSystem)
        self.fs.invalidate_cache()  # fsspec reuses filesystem instances: drop listings of earlier runs
        if self.local:
            try:
                os.makedirs(self.root, exist_ok=True)
            except OSError as e:
                raise UserError(f"cannot create output folder {self.root}: {e}") from None

    def path(self, name: str) -> str:
        return f"{self.root}/{name}"

    def url_of(self, name: str) -> str:
        return f"{self.url}/{name}"

    def _guard(self, what: str, name: str):
        return _Guard(f"{what} {self.url_of(name)}")

    def exists(self, name: str) -> bool:
        with self._guard("cannot check", name):
            return self.fs.exists(self.path(name))

    def size(self, name: str) -> int:
        with self._guard("cannot stat", name):
            return int(self.fs.size(self.path(name)))

    def sha256(self, name: str) -> str:
        sha = hashlib.sha256()
        with self._guard("cannot read", name), self.fs.open(self.path(name), "rb") as f:
            while chunk := f.read(CHUNK):
                sha.update(chunk)
        return sha.hexdigest()

    def remove(self, name: str) -> None:
        with contextlib.suppress(FileNotFoundError), self._guard("cannot remove", name):
            self.fs.rm(self.path(name))

    def names(self) -> list[str]:
        with self._guard("cannot list", ""):
            if not self.fs.exists(self.root):
                return []
            return sorted(p.rsplit("/", 1)[-1] for p in self.fs.ls(self.root, detail=False))

    def create(self, name: str) -> PendingFile:
        """Start writing `name`; it becomes visible only on `commit()` (`discard()` drops it)."""
        return PendingFile(self, name)

    @contextlib.contextmanager
    def writer(self, name: str) -> Iterator[_HashingWriter]:
        """`create` as a context manager: committed if the block exits without error."""
        pending = self.create(name)
        try:
            yield pending.out
        except BaseException:
            pending.discard()
            raise
        pending.commit()

    def read_index(self) -> dict[str, Any] | None:
        """The parsed index.json, or None when there is none."""
        if not self.exists(INDEX):
            return None
        with self._guard("cannot read", INDEX), self.fs.open(self.path(INDEX), "rb") as f:
            raw = f.read()
        try:
            return json.loads(raw)
        except ValueError as e:
            raise UserError(f"corrupt shard index {self.url_of(INDEX)}: {e}") from None

    def write_index(self, index: dict[str, Any]) -> None:
        data = (json.dumps(index, indent=1, sort_keys=True) + "\n").encode()
        with self.writer(INDEX) as w:
            w.write(data)


class PendingFile:
    """A file being written to a store (see `Store.create`); `out` counts and hashes the bytes."""

    def __init__(self, store: Store, name: str) -> None:
        self.store, self.name = store, name
        self.final = store.path(name)
        self.tmp = store.path(f".{name}.tmp") if store.local else self.final
        with store._guard("cannot write", name):
            f = open(self.tmp, "wb") if store.local else store.fs.open(self.final, "wb")  # noqa: SIM115
        self.out = _HashingWriter(f)

    def commit(self) -> None:
        f = self.out.f
        with self.store._guard("cannot write", self.name):
            if self.store.local:
                f.flush()
                os.fsync(f.fileno())
                f.close()
                os.replace(self.tmp, self.final)
            else:
                try:
                    f.close()
                except FileNotFoundError as e:  # s3fs: the bucket does not exist
                    raise UserError(f"cannot write {self.store.url_of(self.name)}: {e}") from None

    def discard(self) -> None:
        f = self.out.f
        with contextlib.suppress(Exception):
            f.close() if self.store.local else f.discard()
        if self.store.local:
            with contextlib.suppress(OSError):
                os.remove(self.tmp)


class _Guard(contextlib.AbstractContextManager):
    """Turn storage failures (OSError, client/network errors) into a one-line UserError naming the location."""

    def __init__(self, what: str) -> None:
        self.what = what

    def __exit__(self, typ, exc, tb) -> bool:
        if isinstance(exc, Exception) and not isinstance(exc, (FileNotFoundError, UserError)):
            raise UserError(f"{self.what}: {exc}") from None
        return False


def shard_urls(out: str, split: str) -> list[str]:
    """URLs (or paths) of the shards of `split` listed in `out`/index.json, in order."""
    store = Store(out)
    index = store.read_index()
    if index is None:
        raise UserError(f"no {INDEX} in {out} (run `stcn shard` first)")
    entry = index.get("splits", {}).get(split)
    if entry is None:
        raise UserError(f"{store.url_of(INDEX)} has no split {split!r} (has: {sorted(index.get('splits', {}))})")
    if not isinstance(entry, dict) or not entry.get("complete"):
        raise UserError(f"shards of split {split!r} in {out} are incomplete (re-run `stcn shard` to finish)")
    where = f"corrupt shard index {store.url_of(INDEX)}"
    shards = entry.get("shards")
    if not isinstance(shards, list) or not all(isinstance(s, dict) for s in shards):
        raise UserError(f"{where}: `shards` of {split!r} must be a list of mappings")
    names = [check_relative(s.get("name"), f"{where}: shard name") for s in shards]  # never `../other/x.tar`
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise UserError(f"{where}: shard {twice[0]} is listed twice")
    return [store.url_of(name) for name in names]
