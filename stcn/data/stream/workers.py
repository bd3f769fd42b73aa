"""Where a stream runs: rank and world size, the DataLoader worker, values shared with the workers (max_skip,
epoch, batches), each worker's seeded generator, and each rank's share of the sources."""

from __future__ import annotations

import multiprocessing as mp
import os

import numpy as np
import torch
from torch.utils.data import get_worker_info

from stcn.errors import UserError


def rank_and_world() -> tuple[int, int]:
    """(rank, world size): torch.distributed if initialised, else RANK / WORLD_SIZE, else (0, 1)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def worker_and_count() -> tuple[int, int]:
    """(DataLoader worker id, number of workers); (0, 1) in the main process."""
    info = get_worker_info()
    return (info.id, info.num_workers) if info is not None else (0, 1)


class SharedState:
    """Values shared with DataLoader worker processes: the current max_skip and epoch."""

    def __init__(self, max_skip: int) -> None:
        self._max_skip = mp.Value("i", int(max_skip), lock=False)
        self._epoch = mp.Value("i", -1, lock=False)
        self._batches = mp.Value("i", 0, lock=False)  # batches per rank of the current epoch (planned streams)

    @property
    def max_skip(self) -> int:
        return self._max_skip.value

    @max_skip.setter
    def max_skip(self, value: int) -> None:
        if int(value) < 1:
            raise UserError(f"max_skip must be at least 1, got {value}")
        self._max_skip.value = int(value)

    @property
    def epoch(self) -> int:
        return max(0, self._epoch.value)

    @epoch.setter
    def epoch(self, value: int) -> None:
        self._epoch.value = int(value)

    @property
    def batches(self) -> int:
        return self._batches.value

    @batches.setter
    def batches(self, value: int) -> None:
        self._batches.value = int(value)


def worker_rng(seed: int, rank: int, epoch: int, salt: int) -> np.random.Generator:
    """The generator of this DataLoader worker for one epoch and purpose (`salt`)."""
    worker, _ = worker_and_count()
    return np.random.default_rng([seed, rank, worker, epoch, salt])


def rank_share(groups: list[tuple[list[str], float]], rank: int, world: int) -> list[tuple[str, float, int, int]]:
    """This rank's disjoint, equal part of every source for resampled training, as (url, weight,
    part, parts): the rank keeps samples i of the shard with i % parts == part. A source's first
    world * (n // world) shards are split by shard (parts 1); the n % world left over are split by
    sample (every rank reads them and keeps every world-th sample). Weights keep the sources' mix."""
    share = []
    for found, weight in groups:
        whole = len(found) - len(found) % world
        share += [(u, weight, 0, 1) for u in found[rank:whole:world]]
        share += [(u, weight, rank, world) for u in found[whole:]]
    return share
