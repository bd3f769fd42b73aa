"""The epoch plan of a video stream ("resampled" mode): which shards each DataLoader worker of a rank reads in an
epoch, and how many training samples it draws from each video of them (`epoch_plan`), read from the index.json
that `stcn shard` writes beside the shards (`shard_samples`); `PlannedShards` yields a worker's reads."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np
from torch.utils.data import IterableDataset

from stcn.data.shards.store import Store
from stcn.data.stream.workers import worker_and_count
from stcn.errors import UserError


def shard_samples(urls: list[str]) -> dict[str, int]:
    """Samples per shard URL, from the index.json that `stcn shard` writes beside the shards."""
    found: dict[str, int] = {}
    for folder in dict.fromkeys(str(u).rsplit("/", 1)[0] for u in urls):
        store = Store(folder)
        for split in ((store.read_index() or {}).get("splits") or {}).values():
            found |= {store.url_of(s["name"]): int(s["samples"]) for s in split.get("shards", [])}
    for u in urls:
        if str(u) not in found:
            raise UserError(f"no index.json entry for shard {u} (video training reads the index `stcn shard` writes)")
    return {str(u): found[str(u)] for u in urls}


def epoch_plan(
    share: list[tuple[str, float, int, int]],
    samples: dict[str, int],
    batches: int,
    batch_size: int,
    workers: int,
    draws: int,
    key: tuple[int, int, int],
) -> list[list[dict[str, Any]]]:
    """The reads of one epoch of one rank, per DataLoader worker: [{url, part, parts, draws}], where
    `draws[i]` is the number of training samples drawn from the i-th video of the rank's part (0: skip).

    Every video of the epoch gets floor or ceil of `batches * batch_size * weight / (sum of weights of its
    videos)` draws, split into reads of `draws` or more (a shard is read once per `draws` draws of its
    videos). When that gives a source's videos fewer than `draws` draws, a pass over that source spans several
    epochs (as many as keep a batch per worker, plus a shard, of videos in each): each epoch reads its own
    contiguous part of a shuffled shard order (`pass_part`), weighted up so that every epoch holds every source
    in its share (a heavy source, e.g. DAVIS x5 beside YouTube-VOS, needs fewer passes than a light one).
    The epoch's shards are shuffled and their videos cut into the workers' contiguous parts of whole batches
    (`video_cuts` places the +1s so that no video is split; `worker_reads` orders each part).
    `key` = (seed, rank, epoch)."""
    seed, rank, epoch = key
    entries = [(u, w, p, n, len(range(p, samples[u], n))) for u, w, p, n in share]
    entries = [e for e in entries if e[4]]
    if not entries:
        raise UserError(f"no training samples for this rank in its {len(share)} shard(s): use fewer ranks")
    total, mass = batches * batch_size, sum(w * c for _, w, _, _, c in entries)
    videos, largest = sum(c for *_, c in entries), max(c for *_, c in entries)
    enough = videos // (batch_size * workers + largest) or 1  # epochs keep enough videos for distinct batches
    group = []
    for k, weight in enumerate(sorted({w for _, w, _, _, _ in entries})):  # each source (by weight) in its passes
        mine = [e for e in entries if e[1] == weight]
        passes = max(1, min(len(mine), enough, math.ceil(draws * mass / (weight * max(1, total)))))
        part = pass_part(mine, passes, np.random.default_rng([seed, rank, epoch // passes, 5, k]), epoch % passes)
        scale = sum(c for *_, c in mine) / sum(c for *_, c in part)  # the part stands for its whole source
        group += [(u, w * scale, p, n, c) for u, w, p, n, c in part]
    rng = np.random.default_rng([seed, rank, epoch, 6])
    group = [group[i] for i in rng.permutation(len(group))]
    mass = sum(w * c for _, w, _, _, c in group)
    flat = np.concatenate([np.full(c, int(total * w / mass + 1e-9)) for _, w, _, _, c in group])
    flat += (total - int(flat.sum())) // len(flat)
    sizes = [(batches // workers + (w < batches % workers)) * batch_size for w in range(workers)]
    cut = video_cuts(flat, total - int(flat.sum()), workers, batch_size, rng)  # adds the +1s
    owner, sizes = cut if cut else (None, sizes)
    if owner is None:  # no cut at video boundaries: +1s at random, then a video's draws may be split
        flat[rng.choice(len(flat), total - int(flat.sum()), replace=False)] += 1
    chunks: list[list[tuple]] = [[] for _ in range(workers)]  # per worker: (url, part, parts, draws per video)
    worker, room, start = 0, sizes[0], 0
    for url, _, part, parts, c in group:
        want, first = flat[start : start + c], start
        start += c
        mine = np.zeros_like(want)
        for j, n in enumerate(want.tolist()):
            while n:
                while not room if owner is None else owner[first + j] != worker:
                    chunks[worker] += [(url, part, parts, mine)] if mine.any() else []
                    worker, room, mine = worker + 1, sizes[worker + 1], np.zeros_like(want)
                take = min(n, room)
                mine[j], n, room = mine[j] + take, n - take, room - take
        chunks[worker] += [(url, part, parts, mine)] if mine.any() else []
    return [worker_reads(chunk, draws, rng) for chunk in chunks]


def pass_part(entries: list[tuple], passes: int, rng: np.random.Generator, slot: int) -> list[tuple]:
    """The shards of one source that epoch `slot` of a pass over it reads: a shuffled order (`rng`, one per
    pass) cut into `passes` contiguous parts of about equal videos."""
    videos, done, part = sum(e[4] for e in entries), 0, []
    for i in rng.permutation(len(entries)):
        if min(passes - 1, int((done + entries[i][4] / 2) * passes / videos)) == slot:
            part.append(entries[i])
        done += entries[i][4]
    return part or [entries[slot % len(entries)]]


def video_cuts(
    flat: np.ndarray, extra: int, workers: int, batch_size: int, rng: np.random.Generator
) -> tuple[np.ndarray, list[int]] | None:
    """Cut the videos (draws `flat`, in plan order) into `workers` contiguous runs of whole batches, each
    about an equal share, by adding `extra` single draws (+1 to as many videos): (the worker of each video,
    each run's draws), or None where no cut at video boundaries comes within a quarter share (plus a batch) of
    equal."""
    owner, cum, start, total = np.zeros(len(flat), dtype=np.int64), np.concatenate([[0], np.cumsum(flat)]), 0, 0
    sizes, goal = [], int(cum[-1]) + extra
    for w in range(workers):
        ends = np.arange(start, len(flat) + 1) if w < workers - 1 else np.array([len(flat)])
        base = cum[ends] - cum[start]
        low = np.maximum(base, base + extra - (len(flat) - ends))  # the +1s left must fit in the later videos
        high = base + np.minimum(ends - start, extra)
        low, high = -(-low // batch_size) * batch_size, high // batch_size * batch_size
        target = round(goal * (w + 1) / workers) - total
        size = np.clip(round(target / batch_size) * batch_size, low, high)
        fits = low <= high
        if not fits.any():
            return None
        best = int(np.argmin(np.where(fits, np.abs(size - target), np.inf)))
        if abs(int(size[best]) - target) > target / 4 + batch_size:  # e.g. 1 batch against 16: split a video
            return None
        end, size = int(ends[best]), int(size[best])
        plus = size - int(base[best])
        flat[start + rng.choice(end - start, plus, replace=False)] += 1
        owner[start:end], extra, start, total = w, extra - plus, end, total + size
        sizes.append(size)
    return owner, sizes


def worker_reads(chunk: list[tuple], draws: int, rng: np.random.Generator) -> list[dict[str, Any]]:
    """One worker's reads, shuffled: each shard part split into reads of `draws` or more draws per video
    (one read where the part starts after the shard's first video: each read fetches that prefix too);
    a read of the first part goes first and one of the last part last (a shard cut between two workers
    is read by one at its end and by the other at its start)."""
    reads = []
    for url, part, parts, want in chunk:
        k = max(1, int(want.max()) // max(1, draws)) if want[0] else 1  # a part after video 0 reads the prefix too
        split = [want // k + (t < want % k) for t in range(k)]
        reads.append([{"url": url, "part": part, "parts": parts, "draws": d.tolist()} for d in split if d.any()])
    if not reads:
        return []
    first, last = reads[0][:1], reads[-1][-1:] if len(reads) > 1 else []
    rest = reads[0][1:] + [r for rs in reads[1:-1] for r in rs] + (reads[-1][:-1] if len(reads) > 1 else [])
    return first + [rest[i] for i in rng.permutation(len(rest))] + last


class PlannedShards(IterableDataset):
    """Yields this rank's and worker's reads of the current epoch (`epoch_plan`), for video streams."""

    def __init__(
        self, share: list, samples: dict[str, int], batch_size: int, draws: int, seed: int, rank: int, state: Any
    ) -> None:
        super().__init__()
        self.share, self.samples, self.batch_size, self.draws = share, samples, batch_size, draws
        self.seed, self.rank, self.state = seed, rank, state

    def __iter__(self) -> Iterator[dict[str, Any]]:
        worker, workers = worker_and_count()
        key = (self.seed, self.rank, self.state.epoch)
        reads = epoch_plan(self.share, self.samples, self.state.batches, self.batch_size, workers, self.draws, key)[
            worker
        ]
        later, seen = [0] * len(reads), set()  # distinct videos in the reads after each read
        for i in range(len(reads) - 1, -1, -1):
            later[i] = len(seen)
            seen |= {(reads[i]["url"], j) for j, n in enumerate(reads[i]["draws"]) if n}
        yield from ({**r, "later": n} for r, n in zip(reads, later, strict=True))
