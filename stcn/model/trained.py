"""The resolution a weights file was trained at, kept in a JSON sidecar beside it (`weights.json` for
`weights.pth`), so the weights file itself stays in the official `stcn.pth` format (loads with `strict=True`).

Training crops `crop` x `crop` patches out of whole frames (the video stages' random-resized crop keeps 36-100% of
the frame), so a network trained at crop C has seen objects at about the scale of frames C-1.7C pixels tall. The
recommended inference resolution keeps the paper's ratio: crop 384 -> 480p evaluation, i.e. 1.25 x crop (crop 96:
120). Every entry point (`stcn segment`, batch mode, `stcn evaluate`, `stcn app`, `stcn interact`, an ONNX export
folder, which carries it in its manifest) uses it when `--resolution` is not given (`default_resolution`, saying so
in one line); official checkpoints have no sidecar and keep the frames' own size (the page: 480p).
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
    """(resolution, crop) the weights were trained at: the sidecar of a checkpoint, or the `trained_at` entry of a
    `stcn export` folder's manifest.json (copied there from the sidecar); None without one; a malformed one is a
    one-line error."""
    weights = Path(weights)
    if weights.is_dir():
        path, key = weights / "manifest.json", "trained_at"
    else:
        path, key = sidecar(weights), None
    if not path.is_file():
        return None
    try:
        meta = json.loads(path.read_text())
        if key is not None:
            meta = meta.get(key) if isinstance(meta, dict) else None
            if meta is None:
                return None
        resolution, crop = int(meta["resolution"]), int(meta["crop"])
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as e:
        what = "weights sidecar" if key is None else "trained_at entry of"
        raise UserError(f"unreadable {what} {path} ({type(e).__name__}); fix or delete it") from None
    if resolution < 16:
        raise UserError(f"weights sidecar {path}: resolution must be at least 16, got {resolution}")
    return resolution, crop


def trained_at(weights: str | Path) -> dict | None:
    """The sidecar of a checkpoint as a dict (stage, crop, resolution), for an export's manifest; None without one."""
    found = trained_resolution(weights)
    if found is None:
        return None
    meta = json.loads(sidecar(weights).read_text())
    return {"stage": meta.get("stage"), "crop": found[1], "resolution": found[0]}


def default_resolution(weights: str | Path, resolution: int | None, fallback: int | None = None) -> int | None:
    """The processing resolution of every entry point (segment, batch, evaluate, app, interact, ONNX Runtime).

    `resolution` when the user gave one (nothing said); else the weights' own (weights.json beside a checkpoint,
    or an export folder's manifest), said in one line on stderr; else `fallback` (said too), or None: the frames
    as given (silent: what official weights always did)."""
    if resolution is not None:
        return resolution
    trained = trained_resolution(weights)
    import sys

    where = Path(weights) / "manifest.json" if Path(weights).is_dir() else sidecar(weights)
    if trained is None:  # official weights: the frames as given (silent, as always), or the page's fallback
        if fallback is not None:
            print(f"note: {weights} records no training resolution ({where} has none): running at --resolution "
                  f"{fallback} (pass --resolution N to choose)", file=sys.stderr, flush=True)  # fmt: skip
        return fallback
    print(f"note: {weights} was trained on {trained[1]} px crops: running at --resolution {trained[0]} "
          f"(from {where}; pass --resolution N to choose)", file=sys.stderr, flush=True)  # fmt: skip
    return trained[0]
