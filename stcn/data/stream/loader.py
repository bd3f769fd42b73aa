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

Beside this module: `sources.py` (the sources and their weights), `plan.py` (a video stream's epoch plan),
`pools.py` (shuffling and drawing samples from videos), `shard_io.py` (reading a shard), `workers.py` (rank, worker,
shared values, seeds, each rank's share), `skips.py` (corrupt samples); their public names stay importable from
here.
"""

from __future__ import annotations

import itertools
import multiprocessing as mp
from collections.abc import Iterator
from typing import Any

import cv2
import numpy as np
import torch
import webdataset as wds
from torch.utils.data import DataLoader, IterableDataset

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
from stcn.data.stream.plan import PlannedShards, epoch_plan, shard_samples  # noqa: F401  (epoch_plan re-exported)
from stcn.data.stream.pools import Interleave, RepeatBySubset, Shuffle, VideoPool, static_subset  # noqa: F401
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
