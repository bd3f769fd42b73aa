"""What a DataLoader worker does between reading samples and making training samples: shuffle static images
(`Shuffle`), repeat stage 0's high-resolution sets (`RepeatBySubset`), and draw several training samples from each
video read (`Interleave` for planned reads, `VideoPool` otherwise)."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from typing import Any

import numpy as np
import webdataset as wds

from stcn.data.stream.workers import SharedState, worker_rng


class Shuffle:
    """A per-worker, per-epoch seeded sample shuffle buffer (webdataset's `shuffle`)."""

    def __init__(self, size: int, seed: int, rank: int, state: SharedState) -> None:
        self.size, self.seed, self.rank, self.state = size, seed, rank, state

    def __call__(self, src: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        if self.size <= 1:
            yield from src
            return
        rng = worker_rng(self.seed, self.rank, self.state.epoch, 2)
        py_rng = random.Random(int(rng.integers(2**63)))
        yield from wds.shuffle(self.size, max(1, self.size // 2), rng=py_rng)(src)


class VideoPool:
    """Several training samples from each video read: a per-worker pool of `size` raw videos, each drawn
    `draws` times (each draw: new frames, objects and augmentation, with the max_skip of that moment).

    Every step draws one remaining (video, draw) pair uniformly, so the pool acts as a shuffle buffer of
    `size * draws` samples that holds only `size` videos; a video leaves after its last draw and the next
    one read takes its place. Every video is drawn the same number of times, so the per-video weighting
    of the stream is unchanged; what changes is that draws of one video come close together
    (benchmarks/stream.py measures how often a batch holds two samples of one video).
    """

    def __init__(self, size: int, draws: int, seed: int, rank: int, state: SharedState) -> None:
        self.size, self.draws, self.seed, self.rank, self.state = max(1, size), max(1, draws), seed, rank, state

    def __call__(self, src: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        rng = worker_rng(self.seed, self.rank, self.state.epoch, 4)
        pool: list[list] = []  # [raw video, draws left]
        for raw in src:
            pool.append([raw, self.draws])
            while len(pool) >= self.size:
                yield self._draw(pool, rng)
        while pool:
            yield self._draw(pool, rng)

    @staticmethod
    def _draw(pool: list[list], rng: np.random.Generator) -> dict[str, Any]:
        left = np.fromiter((n for _, n in pool), dtype=np.int64, count=len(pool))
        i = int(np.searchsorted(np.cumsum(left), rng.integers(left.sum()), side="right"))
        pool[i][1] -= 1
        raw = pool[i][0]
        if pool[i][1] == 0:
            pool[i] = pool[-1]
            pool.pop()
        return raw


class Interleave:
    """Planned reads' videos drawn in batches of distinct videos, each video's draws spread over its time in a
    per-worker pool of `size` videos (at least a batch), each with its planned draw count (`__draws__`; two reads
    of one video merge).

    Each draw takes the video most behind its pace (`_behind`: the fraction of its planned draws left), so every
    held video drains at the same pace: a video planned for five times the draws of another is drawn five times
    as often all along, not first or last. A batch never holds one video twice while the pool holds others, and
    leaves out the previous batch's videos unless none of the others is as far behind. A video leaves after its
    last draw and the next one read takes its place; once at most `size // 2` videos of the worker's plan are
    left to read (`__later__`), all are read (a pool of up to 1.5 `size`), so the last batches still mix many
    videos.
    """

    def __init__(self, size: int, batch_size: int, seed: int, rank: int, state: SharedState) -> None:
        self.size, self.batch_size = max(1, size, batch_size), batch_size
        self.seed, self.rank, self.state = seed, rank, state

    def __call__(self, src: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        rng = worker_rng(self.seed, self.rank, self.state.epoch, 4)
        pool: list[list] = []  # [raw video, draws left, (url, key), draws planned]
        src, previous, batch, later = iter(src), set(), [], self.size
        while True:
            pool = [v for v in pool if v[1] > 0]
            while (len(pool) < self.size or later <= self.size // 2) and (raw := next(src, None)) is not None:
                later, name = raw.pop("__later__", self.size), (raw.get("__url__"), raw["__key__"])
                draws = raw.pop("__draws__")
                same = [v for v in pool if v[2] == name]
                if same:  # another read of a video already held: one video, more draws
                    same[0][1] += draws
                    same[0][3] += draws
                else:
                    pool.append([raw, draws, name, draws])
            if not pool:
                break
            taken = {v[2] for v in batch}
            v = self._most_behind([v for v in pool if v[2] not in taken] or pool, rng)
            if v[2] in previous and (others := [u for u in pool if u[2] not in taken | previous]):
                other = self._most_behind(others, rng)  # rather a video not in the last batch
                v = other if self._behind(other) >= self._behind(v) else v
            v[1] -= 1
            batch.append(v)
            if len(batch) == self.batch_size:
                yield from (batch[i][0] for i in rng.permutation(len(batch)))
                previous, batch = taken | {v[2]}, []
        yield from (batch[i][0] for i in rng.permutation(len(batch)))

    @staticmethod
    def _most_behind(videos: list[list], rng: np.random.Generator) -> list:
        """The video most behind its pace (`_behind`), ties at random."""
        return videos[int(np.lexsort((rng.random(len(videos)), [-Interleave._behind(v) for v in videos]))[0])]

    @staticmethod
    def _behind(video: list) -> float:
        """How far a video is behind its pace: the fraction of its planned draws left, counting the next draw as
        half done (it is due midway between its neighbours), so that a heavy video starts first and ends last."""
        return (video[1] - 0.5) / video[3]


def static_subset(raw: dict[str, Any]) -> str:
    """The dataset a static shard sample comes from: `static/BIG_small` -> `BIG_small` (else "")."""
    try:
        source = json.loads(raw.get("json") or b"{}").get("source") or ""
    except ValueError:
        return ""
    return source.split("/", 1)[1] if "/" in source else ""


class RepeatBySubset:
    """Yield each static sample `repeats[its dataset]` times (default once): the release's stage-0
    mixture `[fss, DUTS-TR, DUTS-TE, ecssd] + [BIG_small, HRSOD_small] * 5` concatenates the
    high-resolution sets five times; the shuffle buffer after this spreads the copies out."""

    def __init__(self, repeats: dict[str, int]) -> None:
        self.repeats = {k: int(v) for k, v in repeats.items()}

    def __call__(self, src: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for raw in src:
            for _ in range(self.repeats.get(static_subset(raw), 1)):
                yield raw
