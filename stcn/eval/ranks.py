"""Evaluation across ranks: `torchrun --nproc-per-node N -m stcn.eval.evaluate ...` (same options as `stcn evaluate`).

Each rank predicts a share of the videos (balanced by frame count) on its own device; rank 0 waits for
the others, then scores and writes `evaluation.json` exactly as one process would.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Ranks:
    """This process's rank and the world size (1, 0 without torchrun)."""

    rank: int = 0
    world: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def gather(self, obj: object) -> list[object]:
        """`obj` of every rank, in rank order (just `[obj]` in one process)."""
        if self.world == 1:
            return [obj]
        out: list[object] = [None] * self.world
        dist.all_gather_object(out, obj)
        return out

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()


def setup(device: str) -> tuple[Ranks, str]:
    """Join the torchrun group when launched by torchrun (gloo on CPU, NCCL on CUDA); this rank's device.

    On CUDA each rank takes `cuda:<LOCAL_RANK>`; on CPU every rank uses the CPU (torch threads split).
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Ranks(), device
    cuda = torch.device(device).type == "cuda"
    if cuda:
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
        torch.cuda.set_device(device)
    else:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // int(os.environ.get("LOCAL_WORLD_SIZE", world))))
    if not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo")
    return Ranks(dist.get_rank(), dist.get_world_size()), device


def teardown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def balance(sizes: list[int], world: int) -> list[list[int]]:
    """Indices of `sizes` per rank: largest first to the least-loaded rank (ties: lowest rank); each list sorted."""
    loads, shares = [0] * world, [[] for _ in range(world)]
    for i in sorted(range(len(sizes)), key=lambda i: (-sizes[i], i)):
        r = min(range(world), key=lambda r: (loads[r], r))
        loads[r] += sizes[i]
        shares[r].append(i)
    return [sorted(s) for s in shares]
