"""Stream STCN training batches from WebDataset shards on local disk, HTTP(S) or S3.

Sources: a shard path/URL, a brace pattern (`shards/davis/train-{000000..000003}.tar`), or a
dataset folder/prefix holding `index.json` (its `split` shards); several sources may be given
as a list or joined by `::`; `SOURCE*5` weights a source 5x (the stage 2/3 mix "DAVIS x5 +
YouTube-VOS" is `["s3://b/davis*5", "s3://b/youtube"]`). S3 endpoint and credentials come from
AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY.

Two modes (`make_loader(mode=...)`):
    "resampled"  for DDP training (use this in the trainer): each rank gets a disjoint part of
                 every source, the same number of shards each (`rank_share`), and yields the same number
                 of batches per epoch (`len(loader)`, or `set_epoch(i, batches)`), so no rank waits.
                 Videos: a seeded per-epoch plan (`epoch_plan`) draws every video of the rank's part
                 floor or ceil of its weighted share, reading shards in a shuffled order without
                 replacement, several draws per video read, batches of distinct videos (`Interleave`);
                 it needs the index.json that `stcn shard` writes beside the shards. Static images:
                 every worker draws shards with replacement (weights applied) through a shuffle buffer
                 and stops after ceil(samples_per_rank / (batch_size * num_workers)) batches.
    "once"       every (weighted-repeated) sample exactly once per epoch: shards are shuffled
                 per epoch identically on all ranks, then split by rank (`split_by_node`) and by
                 worker (`split_by_worker`). Ranks may get unequal counts: for evaluation/tests.
Rank and world size come from torch.distributed when initialised, else RANK / WORLD_SIZE.

Runtime control: `StreamLoader.set_max_skip(n)` writes a shared-memory value that the
DataLoader worker processes read for every sample (the max_skip curriculum), and each
`iter(loader)` advances a shared epoch counter that re-seeds all randomness as
(seed, rank, worker, epoch) — so runs are reproducible and epochs differ.

Beside this module: `sources.py` (the sources and their weights), `shard_io.py` (reading a shard), `workers.py`
(rank, worker, shared values, seeds, each rank's share), `skips.py` (corrupt samples); their public names stay
importable from here.
"""

from __future__ import annotations

import itertools
import json
import math
import multiprocessing as mp
import random
from collections.abc import Iterator
from typing import Any

import cv2
import numpy as np
import torch
import webdataset as wds
from torch.utils.data import DataLoader, IterableDataset

from stcn.data.shards.store import Store
from stcn.data.storage import (  # noqa: F401  (re-exported: the stream's transport)
    S3_READ_VAR,
    _reason,
    check_shards,
    fetched_bytes,
    open_shard,
    s3_client,
    s3_env,
    s3_filesystem,
    s3_stream,
)
from stcn.data.stream.samples import BL30K, VideoRecipe, static_training_sample, video_training_sample
from stcn.data.stream.shard_io import opened_ahead, read_shard  # noqa: F401  (read_shard re-exported)
from stcn.data.stream.skips import CORRUPT_SAMPLE, MAX_CORRUPT, SkipCounter, skipped_samples  # noqa: F401
from stcn.data.stream.sources import Sources, expand_sources, source_groups, split_weight  # noqa: F401
from stcn.data.stream.workers import (  # noqa: F401  (re-exported: tests and benchmarks import them from here)
    SharedState,
    rank_and_world,
    rank_share,
    worker_and_count,
    worker_rng,
)
from stcn.errors import UserError

KINDS = ("static", "bl30k", "video")  # what a stream holds; the trainer maps stages to kinds (stcn.train.recipe)
SHUFFLE_BUFFER = {"static": 256, "bl30k": 12, "video": 32}  # raw samples (videos) held per worker
# training samples drawn from each video read ("resampled" mode; see epoch_plan): with K draws a video of n
# frames costs n/K frames of bytes per sample against the 3 frames a sample uses, so n/(3K) <= 2 for
# DAVIS (about 70 frames, K=16: 1.5x) and BL30K (about 160 frames, K=40: 1.3x); static images: 1 (1x). The
# frames a sample uses are smaller than the average member (benchmarks/stream.py measured 1.94x with K=32 on
# 160-frame videos), hence the margin
DRAWS = {"static": 1, "bl30k": 40, "video": 16}


# --- pipeline ------------------------------------------------------------------------------


class ShardList(IterableDataset):
    """Yields `dict(url=..., part=..., parts=...)` for this rank and worker.

    "resampled": shards of this rank's disjoint share (`rank_share`) drawn with replacement by
    weight; "once": every (weight-repeated) shard once, shuffled alike on all ranks, then split.
    """

    def __init__(
        self,
        groups: list[tuple[list[str], float]],
        mode: str,
        seed: int,
        rank: int,
        world: int,
        state: SharedState,
    ) -> None:
        super().__init__()
        self.groups, self.mode, self.seed = groups, mode, seed
        self.rank, self.world, self.state = rank, world, state

    def __iter__(self) -> Iterator[dict[str, Any]]:
        epoch = self.state.epoch
        if self.mode == "resampled":
            share = rank_share(self.groups, self.rank, self.world)
            rng = worker_rng(self.seed, self.rank, epoch, 1)
            p = np.asarray([w for _, w, _, _ in share]) / sum(w for _, w, _, _ in share)
            while True:
                url, _, part, parts = share[rng.choice(len(share), p=p)]
                yield {"url": url, "part": part, "parts": parts, "share": len(share)}
        order = [u for found, w in self.groups for u in found for _ in range(int(w))]
        np.random.default_rng([self.seed, epoch]).shuffle(order)  # same order on every rank
        worker, workers = worker_and_count()
        mine = order[self.rank :: self.world][worker::workers]  # split_by_node, then split_by_worker
        yield from ({"url": u, "part": 0, "parts": 1} for u in mine)


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


class ReadShards:
    """Open each shard and yield its samples (raw bytes per field) of the item's part; failures name the shard.

    Holds the AWS_* settings of the process that built the pipeline: worker processes started
    by a forkserver do not see environment changes made after the server started.
    """

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env

    def __call__(self, src: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        empty: set[str] = set()  # shards that hold no sample of this rank's part
        for item, stream in opened_ahead(src, self.env):
            samples = read_shard(item["url"], stream)
            if "draws" in item:  # a planned read: the videos it draws from, stopping after the last one
                yield from planned(samples, item)
                continue
            got = False
            for sample in itertools.islice(samples, item["part"], None, item["parts"]):
                got = True
                sample["__fetched__"] = fetched_bytes()  # this process's storage bytes so far (benchmarks)
                yield sample
            if not got and "share" in item:
                empty.add(item["url"])
                if len(empty) == item["share"]:  # resampling would spin forever
                    raise UserError(
                        f"no training samples for this rank in its {len(empty)} shard(s) (e.g. {sorted(empty)[0]}): "
                        "fewer samples than ranks; use fewer ranks or re-shard smaller"
                    )


def planned(samples: Iterator[dict[str, Any]], item: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The samples of a planned read (`epoch_plan`) with their draw counts as `__draws__`."""
    draws = item["draws"]
    last = max(i for i, n in enumerate(draws) if n)
    try:
        for i, sample in enumerate(itertools.islice(samples, item["part"], None, item["parts"])):
            if i == last:  # closed before the sample is drawn, so `info["fetched"]` counts all this read fetched
                samples.close()  # type: ignore[attr-defined]
            if draws[i]:
                sample["__draws__"] = draws[i]
                sample["__later__"] = item.get("later", 0) + sum(map(bool, draws[i + 1 :]))  # videos still to come
                sample["__fetched__"] = fetched_bytes()
                yield sample
            if i == last:
                return
        raise UserError(f"shard {item['url']} holds fewer samples than its index.json says")
    finally:
        samples.close()  # type: ignore[attr-defined]  (stops an S3 read after the last video needed)


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


class ToTrainingSample:
    """Map raw shard samples to training samples with the stage's augmentation recipe."""

    def __init__(self, kind: str, crop: int, seed: int, rank: int, state: SharedState) -> None:
        self.kind, self.crop, self.seed, self.rank, self.state = kind, crop, seed, rank, state
        scale = BL30K.crop_scale if kind == "bl30k" else VideoRecipe.crop_scale
        self.recipe = VideoRecipe(crop=crop, crop_scale=scale, bl30k=kind == "bl30k")

    def __call__(self, src: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        rng = worker_rng(self.seed, self.rank, self.state.epoch, 3)
        worker, _ = worker_and_count()
        skipped = SkipCounter()
        for raw in src:
            try:
                if self.kind == "static":
                    sample = static_training_sample(raw, rng, self.crop)
                else:
                    sample = video_training_sample(raw, rng, self.state.max_skip, self.recipe)
            except CORRUPT_SAMPLE as e:
                skipped.add(raw, e)
                continue
            skipped.good += 1
            sample["info"] |= {"rank": self.rank, "worker": worker, "url": raw.get("__url__"), "skipped": skipped.count}
            if "__fetched__" in raw:  # storage bytes this worker has read so far, up to this sample (benchmarks)
                sample["info"]["fetched"] = fetched_bytes()
            yield sample


def collate(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack tensors along a new batch dimension; `info` becomes a list of dicts."""
    batch = {k: torch.stack([s[k] for s in samples]) for k in samples[0] if k != "info"}
    batch["info"] = [s["info"] for s in samples]
    return batch


def data_kind(kind: str) -> str:
    """`kind` checked: one of KINDS (the trainer maps a stage number to its recipe's kind)."""
    if isinstance(kind, str) and kind in KINDS:
        return kind
    raise UserError(f"unknown data kind {kind!r} (expected 'static', 'bl30k' or 'video')")


def make_dataset(
    urls: Sources,
    kind: str,
    batch_size: int,
    *,
    seed: int = 0,
    mode: str = "resampled",
    samples_per_rank: int | None = None,
    num_workers: int = 0,
    max_skip: int = 5,
    crop: int = 384,
    split: str = "train",
    shuffle_buffer: int | None = None,
    check: bool = True,
    state: SharedState | None = None,
    repeats: dict[str, int] | None = None,
    draws_per_video: int | None = None,
) -> wds.DataPipeline:
    """The per-rank WebDataset pipeline yielding collated batches (see `make_loader`)."""
    kind = data_kind(kind)
    if mode not in ("resampled", "once"):
        raise UserError(f"unknown stream mode {mode!r} (expected 'resampled' or 'once')")
    if batch_size < 1:
        raise UserError(f"batch size must be positive, got {batch_size}")
    groups = source_groups(urls, split)
    weights = sorted({w for _, w in groups})
    if mode == "once" and any(w != int(w) for w in weights):
        raise UserError(f"'once' mode repeats sources a whole number of times; got weights {weights}")
    if check:
        check_shards([u for found, _ in groups for u in found])
    rank, world = rank_and_world()
    state = state or SharedState(max_skip)
    buffer = SHUFFLE_BUFFER[kind] if shuffle_buffer is None else shuffle_buffer
    if repeats and kind != "static":
        raise UserError(f"per-dataset repeats apply to static images (stage 0), not to {kind!r} samples")
    draws = (DRAWS[kind] if mode == "resampled" else 1) if draws_per_video is None else int(draws_per_video)
    if draws < 1:
        raise UserError(f"draws per video must be at least 1, got {draws}")
    if kind == "static" and draws > 1:
        raise UserError("several draws per sample apply to videos, not to static images")
    if mode == "resampled" and (not samples_per_rank or samples_per_rank < 1):
        raise UserError("resampled mode needs samples_per_rank (samples each rank yields per epoch)")
    per_worker = -(-(samples_per_rank or 1) // (batch_size * max(1, num_workers)))
    shards: IterableDataset = ShardList(groups, mode, seed, rank, world, state)
    mix: Any = Shuffle(buffer, seed, rank, state)
    planned = mode == "resampled" and kind != "static"
    if planned:  # videos: an epoch plan of (shard, video, draws); see `epoch_plan`
        share = rank_share(groups, rank, world)
        samples = shard_samples([u for u, _, _, _ in share])
        epoch_plan(share, samples, 1, batch_size, 1, draws, (seed, rank, 0))  # fails now if the rank has no videos
        state.batches = per_worker * max(1, num_workers)
        shards = PlannedShards(share, samples, batch_size, draws, seed, rank, state)
        mix = Interleave(buffer, batch_size, seed, rank, state)
    elif kind != "static":
        mix = VideoPool(buffer, draws, seed, rank, state)
    pipeline = wds.DataPipeline(
        shards,
        ReadShards(s3_env()),
        *([RepeatBySubset(repeats)] if repeats else []),
        mix,
        ToTrainingSample(kind, crop, seed, rank, state),
        wds.batched(batch_size, collation_fn=collate, partial=mode == "once"),
    )
    if mode == "resampled" and not planned:
        pipeline = pipeline.with_epoch(nbatches=per_worker)
    pipeline.state = state
    pipeline.nbatches = per_worker * max(1, num_workers) if mode == "resampled" else None
    return pipeline


class StreamLoader:
    """A DataLoader over `make_dataset` with runtime control of max_skip and the epoch."""

    def __init__(self, dataset: wds.DataPipeline, loader: DataLoader, batches: int | None) -> None:
        self.dataset, self.loader, self.batches = dataset, loader, batches
        self.state: SharedState = dataset.state
        self._next_epoch, self._next_batches = 0, batches

    @property
    def max_skip(self) -> int:
        return self.state.max_skip

    def set_max_skip(self, value: int) -> None:
        """Change max_skip; workers use it for every sample drawn from now on (prefetched
        batches, at most `num_workers * prefetch_factor`, were drawn with the old value)."""
        self.state.max_skip = value

    def set_epoch(self, epoch: int, batches: int | None = None) -> None:
        """Make the next `iter()` run epoch `epoch` (default: one more than the last); for a planned
        (video, resampled) stream `batches` sets that epoch's length (default: `len(self)`), so the
        epoch's coverage holds over the batches actually used."""
        self._next_epoch, self._next_batches = epoch, batches or self.batches

    def __len__(self) -> int:
        if self.batches is None:
            raise TypeError("the number of batches of a 'once' stream is not known in advance")
        return self.batches

    def __iter__(self) -> Iterator[dict[str, Any]]:
        self.state.epoch, self.state.batches = self._next_epoch, self._next_batches or 0
        self._next_epoch, self._next_batches = self._next_epoch + 1, self.batches
        try:
            yield from self.loader
        except UserError as e:  # re-raised from a worker with its traceback: keep one line
            raise UserError(_last_line(str(e))) from None


def _last_line(message: str) -> str:
    marker = "UserError: "
    lines = [ln for ln in message.splitlines() if marker in ln]
    return lines[-1].split(marker, 1)[1] if lines else message.splitlines()[0]


def init_worker(_: int) -> None:
    """DataLoader worker setup: one OpenCV and one torch thread per worker process."""
    cv2.setNumThreads(1)
    torch.set_num_threads(1)


def make_loader(
    urls: Sources,
    kind: str,
    batch_size: int,
    num_workers: int = 2,
    seed: int = 0,
    *,
    mode: str = "resampled",
    samples_per_rank: int | None = None,
    max_skip: int = 5,
    crop: int = 384,
    split: str = "train",
    shuffle_buffer: int | None = None,
    pin_memory: bool = False,
    prefetch_factor: int = 2,
    check: bool = True,
    mp_context: str = "forkserver",
    repeats: dict[str, int] | None = None,
    draws_per_video: int | None = None,
) -> StreamLoader:
    """A loader of batched training tensors of one data `kind` ("static": stage 0, "bl30k": stage 1,
    "video": stages 2/3 DAVIS/YouTube-VOS; `stcn.train.recipe` maps a stage to its kind).

    Batches hold `rgb` (B, 3, 3, crop, crop), `gt`/`sec_gt` (B, 3, 1, crop, crop), `cls_gt`
    (B, 3, crop, crop), `first_frame_gt` (B, 2, 1, crop, crop), `selector` (B, 2), `info` (list).
    In "resampled" mode each rank yields `ceil(samples_per_rank / (batch_size * workers))`
    batches per worker per epoch; `check` verifies up front that every shard exists; `repeats`
    ({dataset: n}, stage 0) yields the static samples of those datasets n times (`RepeatBySubset`);
    `draws_per_video` training samples come from each video read (default DRAWS[kind] when resampled,
    1 in "once" mode) through a pool of `shuffle_buffer` videos per worker (`VideoPool`).
    Workers start by "forkserver": a forked worker deadlocks when the parent has already used
    OpenCV's (or OpenMP's) thread pool, which training code does; scripts need a `__main__` guard.
    """
    state = SharedState(max_skip)
    dataset = make_dataset(
        urls, kind, batch_size, seed=seed, mode=mode, samples_per_rank=samples_per_rank,
        num_workers=num_workers, max_skip=max_skip, crop=crop, split=split,
        shuffle_buffer=shuffle_buffer, check=check, state=state, repeats=repeats, draws_per_video=draws_per_video,
    )  # fmt: skip
    extra = {}
    if num_workers > 0:
        if mp_context == "forkserver":  # workers fork from a server that has this module imported
            mp.set_forkserver_preload(["__main__", __name__])
        extra = {"persistent_workers": True, "prefetch_factor": prefetch_factor, "multiprocessing_context": mp_context}
    loader = DataLoader(
        dataset, batch_size=None, num_workers=num_workers, worker_init_fn=init_worker, pin_memory=pin_memory, **extra
    )
    return StreamLoader(dataset, loader, dataset.nbatches)
