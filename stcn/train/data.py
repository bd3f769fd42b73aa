"""The trainer's view of the data layer: one `stcn.data.stream.loader` loader, one epoch per data segment.

Segment i of the plan (`data_plan`) is read as loader epoch i of the segment's length with its max_skip,
so its batches depend only on (seed, rank, worker, i, length); see `data_plan` for how resuming uses this.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch

from stcn.data.stream.loader import make_loader
from stcn.train.data_plan import Segment
from stcn.train.recipe import STAGE0_REPEATS, get_stage

# (segment index, segment) -> that segment's batches (at least segment.batches of them)
OpenSegment = Callable[[int, Segment], Iterable[dict[str, Any]]]


def segment_opener(
    data: list[str], stage: int, batch_size: int, crop: int, num_workers: int, seed: int, segments: list[Segment]
) -> OpenSegment:
    """An `OpenSegment` over one persistent loader (rank and world size from torch.distributed)."""
    longest = max(s.batches for s in segments)
    kind = get_stage(stage).data  # the stream receives the data kind, not the stage
    loader = make_loader(
        data, kind, batch_size, num_workers, seed, mode="resampled", samples_per_rank=longest * batch_size,
        max_skip=max(1, segments[0].max_skip), crop=crop, pin_memory=torch.cuda.is_available(),
        repeats=STAGE0_REPEATS if stage == 0 else None,
    )  # fmt: skip

    def open_segment(index: int, segment: Segment) -> Iterable[dict[str, Any]]:
        loader.set_epoch(index, segment.batches)  # a video epoch's plan covers exactly the batches used
        loader.set_max_skip(max(1, segment.max_skip))  # static stages ignore it
        return loader

    return open_segment
