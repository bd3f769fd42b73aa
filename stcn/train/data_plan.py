"""The data position of a run: iterations are split into segments, each read from a freshly seeded stream.

A segment ends at every multiple of the checkpoint interval and at every max_skip change, so
each segment has one max_skip and its stream is seeded only by (seed, segment index, rank).
Resuming at iteration k re-opens the segment holding k and skips the k - start batches already
consumed (none when k is a checkpoint), so a resumed run reads exactly the batches of an
uninterrupted one.
"""

from __future__ import annotations

from dataclasses import dataclass

from stcn.train.recipe import Stage, max_skip_at, skip_changes


@dataclass(frozen=True)
class Segment:
    """Iterations [start, end) read from one stream with one max_skip."""

    start: int
    end: int
    max_skip: int

    @property
    def batches(self) -> int:
        return self.end - self.start


def plan_segments(stage: Stage, iterations: int, every: int) -> list[Segment]:
    """Segments covering [0, iterations): cut at multiples of `every` and at max_skip changes."""
    cuts = set(range(0, iterations, max(1, every)))
    if stage.is_video:
        cuts |= {c for c in skip_changes(stage, iterations) if 0 < c < iterations}
    starts = sorted(cuts | {0})
    ends = starts[1:] + [iterations]
    return [Segment(s, e, max_skip_at(stage, s, iterations)) for s, e in zip(starts, ends, strict=True) if e > s]


def segment_at(segments: list[Segment], iteration: int) -> int:
    """Index of the segment holding `iteration`."""
    for i, seg in enumerate(segments):
        if seg.start <= iteration < seg.end:
            return i
    raise ValueError(f"iteration {iteration} is outside the plan")
