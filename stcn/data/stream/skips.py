"""Corrupt samples: what decoding one may raise, the per-worker count of skipped ones (one warning line each, an
error when most are corrupt), and the run's total from the batches' `info`."""

from __future__ import annotations

import sys
from typing import Any

from stcn.errors import UserError

# what a corrupt JPEG/PNG/JSON payload raises while a sample is decoded (PIL: OSError/SyntaxError/ValueError)
CORRUPT_SAMPLE = (UserError, OSError, ValueError, SyntaxError, KeyError, EOFError)


MAX_CORRUPT = 100  # skipped samples of one worker, when more than half of all it saw: the data is broken


class SkipCounter:
    """Counts the corrupt samples a worker skipped, logging one line naming each one's shard and key."""

    def __init__(self) -> None:
        self.count, self.good = 0, 0

    def add(self, raw: dict[str, Any], error: BaseException) -> None:
        self.count += 1
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        where = f"sample {raw.get('__key__')!r} of shard {raw.get('__url__')}"
        print(f"warning: skipped corrupt {where}: {reason}", file=sys.stderr, flush=True)
        if self.count >= MAX_CORRUPT and self.count > self.good:
            raise UserError(f"{self.count} of {self.count + self.good} samples are corrupt (last: {where}): {reason}")


def skipped_samples(info: list[dict[str, Any]], seen: dict[tuple, int]) -> int:
    """Update `seen` ((rank, worker) -> skipped so far) from a batch's `info`; the total skipped."""
    for item in info:
        key = (item.get("rank"), item.get("worker"))
        seen[key] = max(seen.get(key, 0), int(item.get("skipped", 0)))
    return sum(seen.values())
