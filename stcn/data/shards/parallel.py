"""Sharding on many cores and many machines.

`parallel_loads` reads and checks samples in worker processes (forked, so the pending samples and
the BL30K index are shared copy-on-write) while the calling process writes them in order: the
shards are byte-identical to a one-process run. At most `4 * workers` samples are in flight, so
memory stays bounded. Each worker hands its sample over as a file in a private spool folder
`stcn-shard-<writer pid>-*` (never as a multi-megabyte pipe message: a worker killed half-way through
such a message would leave the pool waiting for the rest of it forever). The spool lives under the
stage's work folder when it has one (`bl30k-stream --work`, counted in its disk bound), else under
`TMPDIR`. A run first removes the spools its killed predecessors left (a kill of the whole process
group leaves no process to clean up): in a work folder every spool, in `TMPDIR` those whose writer
process is gone. With the default worker count the samples in flight are limited so that the spool
stays under SPOOL_LIMIT (1 GiB) bytes: at most SPOOL_LIMIT // (largest sample so far) of them, so BL30K's
~23 MB videos run at most ~44 at a time whatever the CPU count; `--workers N` asks for 4 N in flight.
A worker that dies (killed, out of memory) fails the run with one line; the re-run resumes from the
last finished shard like any interrupted run.

`--part I/N` splits the samples (name order) into N contiguous parts of about equal input bytes
(BL30K: from its index; other datasets: equal sample counts); part I writes its shards and
its own index.json under `<out>/parts/I-of-N/`, so N machines can shard into the same folder or S3
prefix without touching each other's files. `merge_parts` then writes `<out>/index.json` listing
the parts' shards in part order: the samples, in order, of a single run.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from stcn.data.shards import inputs as shard_inputs
from stcn.data.shards.store import Store
from stcn.data.shards.writer import FORMAT_VERSION, Members, Pending, tar_record
from stcn.errors import UserError
from stcn.names import is_name

_TASKS: Sequence[Pending] = ()
_SPOOL = ""
SPOOL_PREFIX = "stcn-shard-"
SPOOL_LIMIT = 1 << 30  # bytes of samples in flight with the default worker count


def default_workers() -> int:
    """Worker processes for sharding: the CPUs this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _init_worker(parent: int) -> None:
    shard_inputs._POOL = None  # the parent's thread pool has no threads in a forked child
    shard_inputs._CHECK["threads"] = 1  # one process per core already
    threading.Thread(target=_exit_with, args=(parent,), daemon=True).start()


def _exit_with(parent: int) -> None:
    """End this worker when the writer process is gone (killed): it would wait for tasks forever. The
    writer cannot remove its spool then, so the workers do."""
    while os.getppid() == parent:
        time.sleep(0.5)
    shutil.rmtree(_SPOOL, ignore_errors=True)
    os._exit(1)


def _load(i: int) -> None:
    """Write sample `i`'s tar record to the spool; the reply through the pipe is a few bytes."""
    Path(_SPOOL, str(i)).write_bytes(tar_record(_TASKS[i].load()))


def _take(spool: str, i: int) -> bytes:
    """Sample `i`'s tar record from the spool, removing its file."""
    path = Path(spool, str(i))
    data = path.read_bytes()
    path.unlink()
    return data


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def clear_spools(root: str | Path, every: bool) -> list[Path]:
    """Remove the spools left under `root` by killed runs: all of them (`every`: a stage's own work
    folder), else those whose writer process is gone (a shared TMPDIR). Returns the removed folders."""
    removed = []
    for path in Path(root).glob(f"{SPOOL_PREFIX}*"):
        m = re.fullmatch(rf"{SPOOL_PREFIX}(\d+)-.*", path.name)
        if path.is_dir() and (every or (m and int(m.group(1)) != os.getpid() and not _alive(int(m.group(1))))):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def in_flight(workers: int, largest: int, limit: int | None) -> int:
    """Samples submitted but not yet written: 4 per worker, fewer when `limit` bytes of spool would not
    hold that many samples of `largest` bytes (at least one)."""
    window = 4 * workers
    if limit and largest:
        window = min(window, max(1, limit // largest))
    return window


def parallel_loads(
    workers: int | None, spool_root: str | Path | None = None
) -> Callable[[Sequence[Pending]], Iterator[Members | bytes]]:
    """A `loads` for `write_shards`: members of each sample in order, read by `workers` processes
    (None: the CPU count, with the spool bounded by SPOOL_LIMIT), spooled under `spool_root`
    (a stage's work folder; None: TMPDIR)."""
    limit = SPOOL_LIMIT if workers is None else None
    workers = default_workers() if workers is None else workers

    def loads(samples: Sequence[Pending]) -> Iterator[Members | bytes]:
        root = Path(spool_root) if spool_root is not None else Path(tempfile.gettempdir())
        root.mkdir(parents=True, exist_ok=True)
        clear_spools(root, every=spool_root is not None)
        if workers <= 1 or len(samples) <= 1:
            yield from (s.load() for s in samples)
            return
        global _TASKS, _SPOOL
        spool = tempfile.mkdtemp(prefix=f"{SPOOL_PREFIX}{os.getpid()}-", dir=root)
        _TASKS, _SPOOL = samples, spool  # read by the forked workers
        pool = ProcessPoolExecutor(
            workers, mp_context=get_context("fork"), initializer=_init_worker, initargs=(os.getpid(),)
        )
        broken = False
        window: deque[Future] = deque()
        nxt = largest = 0
        try:
            while nxt < len(samples) or window:
                while nxt < len(samples) and len(window) < in_flight(workers, largest, limit):
                    window.append(pool.submit(_load, nxt))
                    nxt += 1
                i = nxt - len(window)
                window.popleft().result()
                record = _take(spool, i)
                largest = max(largest, len(record))
                yield record
        except BrokenProcessPool:
            broken = True
            raise UserError(
                "a shard worker process died (killed or out of memory); re-run to resume from the last finished shard"
            ) from None
        finally:
            pool.shutdown(wait=not broken, cancel_futures=True)  # a broken pool ends its live workers itself
            shutil.rmtree(spool, ignore_errors=True)
            _TASKS, _SPOOL = (), ""

    return loads


MAX_PARTS = 4096  # parts of one dataset: far more machines than a sharding run uses, and bounded work per part


def check_parts(value: object, what: str) -> int:
    """A number of parts: an integer 1..MAX_PARTS (not 2.7, not "2", not 10**7), else one line naming `what`."""
    if type(value) is not int or not 1 <= value <= MAX_PARTS:
        raise UserError(f"{what} must be a whole number of parts 1..{MAX_PARTS}, got {value!r}")
    return value


def parse_part(part: str | None) -> tuple[int, int] | None:
    """`I/N` -> (I, N) with 0 <= I < N <= MAX_PARTS; None -> None (the whole dataset)."""
    if part is None or part == "":
        return None
    m = re.fullmatch(r"\s*(\d{1,9})\s*/\s*(\d{1,9})\s*", str(part))
    if not m or not 0 <= int(m.group(1)) < int(m.group(2)) <= MAX_PARTS:
        raise UserError(f"--part must be I/N with 0 <= I < N <= {MAX_PARTS} (e.g. 0/4), got {part!r}")
    return int(m.group(1)), int(m.group(2))


def part_dir(part: tuple[int, int]) -> str:
    """Sub-folder (relative to the output) of one part: `parts/I-of-N`."""
    return f"parts/{part[0]}-of-{part[1]}"


def part_bounds(sizes: Sequence[int], parts: int) -> list[int]:
    """Start of each of `parts` contiguous parts (then the end): balanced by bytes when every size is
    known (a sample goes to the part its middle byte falls in), else by count (differing by at most one)."""
    n = len(sizes)
    if not n or not all(s > 0 for s in sizes):
        return [i * n // parts for i in range(parts + 1)]
    cum, total, bounds, k = 0, sum(sizes), [0], 1
    for j, size in enumerate(sizes):
        while k < parts and (cum + size / 2) * parts >= k * total:
            bounds.append(j)
            k += 1
        cum += size
    return bounds + [n] * (parts + 1 - len(bounds))


def select_part(samples: Sequence[Pending], part: tuple[int, int] | None) -> Sequence[Pending]:
    """Part I of N of the samples: a contiguous run in name order, parts balanced by input bytes when
    the samples know them (BL30K from its index), else by count (`part_bounds`)."""
    if part is None:
        return samples
    i, n = part
    bounds = part_bounds([s.size for s in samples], n)
    return samples[bounds[i] : bounds[i + 1]]


TAR_BLOCK = 512  # bytes of a tar header: the least a sample (one member or more) takes in a shard


def checked_part(index: Any, split: str, where: str) -> dict[str, Any] | None:
    """The finished entry of `split` in a part's index.json, checked in type and range (a one-line UserError
    naming `where` when not); None when the part has no finished entry for `split`."""

    def bad(what: str) -> UserError:
        return UserError(f"corrupt part index {where}: {what}")

    if index is None:
        return None
    if not isinstance(index, dict) or not isinstance(index.get("splits", {}), dict):
        raise bad("`splits` must be a mapping")
    entry = index.get("splits", {}).get(split)
    if not entry or not isinstance(entry, dict) or entry.get("complete") is not True:
        return None
    if not is_name(index.get("dataset")):
        raise bad(f"dataset {index.get('dataset')!r} is not a valid name")
    size = entry.get("shard_size_bytes")
    if type(size) is not int or size <= 0:
        raise bad(f"shard_size_bytes must be a positive integer, got {size!r}")
    for key in ("input_sha256", "listing_sha256"):  # input_sha256: required (merge records it per part)
        if (key in entry or key == "input_sha256") and not isinstance(entry.get(key), str):
            raise bad(f"{key} must be a string, got {entry.get(key)!r}")
    if not isinstance(entry.get("shards"), list):
        raise bad(f"`shards` of {split!r} must be a list")
    for s in entry["shards"]:
        if not isinstance(s, dict) or not is_name(s.get("name")):
            raise bad(f"shard {s.get('name') if isinstance(s, dict) else s!r} is not a valid shard name")
        if any(type(s.get(k)) is not int or s[k] < 0 for k in ("samples", "bytes")):
            raise bad(f"shard {s['name']}: samples and bytes must be non-negative integers")
        if not isinstance(s.get("sha256"), str) or not re.fullmatch(r"[0-9a-f]{64}", s["sha256"]):
            raise bad(f"shard {s['name']}: sha256 must be 64 hex digits")
        if s["samples"] * TAR_BLOCK > s["bytes"]:  # every sample is at least one tar member: a header block
            raise bad(f"shard {s['name']}: {s['samples']} samples cannot fit in {s['bytes']} bytes")
    names = [s["name"] for s in entry["shards"]]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise bad(f"shard {twice[0]} is listed twice")
    return entry


def merge_parts(out: str, split: str, parts: int) -> dict[str, Any]:
    """Write `<out>/index.json` for `split` from the finished indexes of parts 0..parts-1."""
    check_parts(parts, "--parts")
    return merge_dirs(out, split, [part_dir((i, parts)) for i in range(parts)], {"parts": parts})


def merge_dirs(out: str, split: str, subdirs: list[str], extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write `<out>/index.json` for `split` listing the shards of the finished `<out>/<subdir>` outputs, in order."""
    store = Store(out)
    shards, inputs = [], []
    dataset = settings = None
    listings = set()
    for sub in subdirs:
        index = Store(f"{store.url}/{sub}").read_index()
        entry = checked_part(index, split, store.url_of(f"{sub}/index.json"))
        if entry is None:
            raise UserError(f"part {sub} of {split!r} is missing or unfinished in {store.url_of(sub)}")
        if dataset not in (None, index["dataset"]) or settings not in (None, entry["shard_size_bytes"]):
            raise UserError(f"part {sub} in {store.url_of(sub)} was written with other settings")
        listings.add(entry.get("listing_sha256"))
        if len(listings) > 1:
            raise UserError(f"part {sub} in {store.url_of(sub)} was made from a different input listing than the "
                            "parts before it (re-run the parts on the same input)")  # fmt: skip
        dataset, settings = index["dataset"], entry["shard_size_bytes"]
        shards += [{**s, "name": f"{sub}/{s['name']}"} for s in entry["shards"]]
        inputs.append(entry["input_sha256"])
    totals = {"shards": len(shards), "samples": sum(s["samples"] for s in shards)}
    totals["bytes"] = sum(s["bytes"] for s in shards)
    entry = {"format": FORMAT_VERSION, "complete": True, **(extra or {}), "part_inputs_sha256": inputs}
    entry |= {"shard_size_bytes": settings, "shards": shards, "totals": totals}
    index = store.read_index() or {"splits": {}}
    index = {"format": FORMAT_VERSION, "dataset": dataset, "splits": {**index.get("splits", {}), split: entry}}
    flat = [{**s, "split": name} for name, e in sorted(index["splits"].items()) for s in e["shards"]]
    index["shards"] = flat
    index["totals"] = {k: sum(e["totals"][k] for e in index["splits"].values()) for k in totals}
    store.write_index(index)
    return index
