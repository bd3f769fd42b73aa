"""The resolution a weights file was trained at, kept in a JSON sidecar beside it (`weights.json` for
`weights.pth`), so the weights file itself stays in the official `stcn.pth` format (loads with `strict=True`).

Training crops `crop` x `crop` patches out of whole frames (the video stages' random-resized crop keeps 36-100% of
the frame), so a network trained at crop C has seen objects at about the scale of frames C-1.7C pixels tall. The
recommended inference resolution keeps the paper's ratio: crop 384 -> 480p evaluation, i.e. 1.25 x crop (crop 96:
120). `stcn segment` / `stcn evaluate` use it when `--resolution` is not given; official checkpoints have no sidecar
and keep the frames' own size.
"""

from __future__ import annotations

import json
from pathlib import Path

from stcn.atomic import write_text_atomic
from stcn.errors import UserError

PAPER_RATIO = 480 / 384  # the paper trains on 384 crops and evaluates at 480p


def sidecar(weights: str | Path) -> Path:
    """`weights.json` beside `weights.pth`."""
    return Path(weights).with_suffix(".json")


def write_trained_at(weights: str | Path, stage: int, crop: int) -> Path:
    """Record beside `weights` the stage and crop it was trained at, and the resolution to run it at."""
    meta = {"stage": stage, "crop": crop, "resolution": round(crop * PAPER_RATIO)}
    path = sidecar(weights)
    write_text_atomic(path, json.dumps(meta, indent=2) + "\n")
    return path


def trained_resolution(weights: str | Path) -> tuple[int, int] | None:
    """(resolution, crop) from the sidecar of `weights`; None without one; a malformed one is a one-line error."""
    path = sidecar(weights)
    if not path.is_file():
        return None
    try:
        meta = json.loads(path.read_text())
        resolution, crop = int(meta["resolution"]), int(meta["crop"])
    except (OSError, ValueError, TypeError, KeyError) as e:
        raise UserError(f"unreadable weights sidecar {path} ({type(e).__name__}); fix or delete it") from None
    if resolution < 16:
        raise UserError(f"weights sidecar {path}: resolution must be at least 16, got {resolution}")
    return resolution, crop


def default_resolution(weights: str | Path, resolution: int | None) -> int | None:
    """`resolution` when given, else the sidecar's (saying so in one line on stderr), else None (as given)."""
    if resolution is not None:
        return resolution
    trained = trained_resolution(weights)
    if trained is None:
        return None
    import sys

    print(f"note: {weights} was trained on {trained[1]} px crops: running at --resolution {trained[0]} "
          f"(from {sidecar(weights)}; pass --resolution N to choose)", file=sys.stderr, flush=True)  # fmt: skip
    return trained[0]
