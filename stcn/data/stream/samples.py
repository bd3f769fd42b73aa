"""Turn one decoded shard sample into one STCN training sample (3 augmented frames + masks).

Both stages return the same dict (the keys of the original release plus `first_frame_gt`):
    rgb             float (3, 3, H, W)  ImageNet-normalised frames
    gt              float (3, 1, H, W)  target object mask per frame, {0, 1}
    sec_gt          float (3, 1, H, W)  second object mask per frame (zeros if none)
    cls_gt          long  (3, H, W)     0 background, 1 target, 2 second object
    first_frame_gt  float (2, 1, H, W)  [gt[0], sec_gt[0]]: the objects given in the first frame
    selector        float (2,)          [1, 1] with a second object, else [1, 0]
    info            dict                name, source, frames (stems), indices (positions among
                                        the annotated frames), max_skip, skip (in positions),
                                        bytes (shard bytes of the frames and masks used)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from stcn.data.images import VOID
from stcn.data.shards.format import decode_jpeg, decode_mask, decode_static_sample, decode_video_sample
from stcn.data.stream.augment import static_pseudo_video, video_frames
from stcn.errors import UserError

NUM_FRAMES = 3


@dataclass(frozen=True)
class VideoRecipe:
    """How video samples are drawn; `bl30k` selects the BL30K crop scale and object-size rule."""

    crop: int = 384
    crop_scale: tuple[float, float] = (0.36, 1.0)
    bl30k: bool = False
    max_tries: int = 100  # re-draw frames/crop while the first frame shows no usable object
    min_pixels: int = 1  # an object counts if it has at least this many pixels in the first frame


BL30K = VideoRecipe(crop_scale=(0.25, 1.0), bl30k=True)


def binary_mask(mask: np.ndarray) -> np.ndarray:
    """A static dataset's mask (0/255 grey or 0/1 palette) as uint8 {0, 1}; >127 or >0 = object."""
    return (mask > 127 if mask.max() > 1 else mask > 0).astype(np.uint8)


def frame_stride(stems: list[str]) -> int:
    """Typical step between numeric frame names (YouTube-VOS train: 5), else 1.

    `max_skip` counts original video frames: with every 5th frame stored, 5 frames apart
    is one position apart (the original trains YouTube-VOS with `max_skip // 5`).
    """
    if len(stems) < 2 or not all(s.isdigit() for s in stems):
        return 1
    steps = np.diff([int(s) for s in stems])
    return max(1, int(np.median(steps)))


def choose_frames(count: int, max_skip: int, rng: np.random.Generator) -> list[int]:
    """Three increasing frame indices out of `count`, each 1..max_skip after the previous.

    The gaps are drawn first (the second within what is left of the video), then the start
    uniformly among the positions where both gaps fit; a video shorter than 3 frames repeats
    frames. The order is reversed with probability 0.5 (as in the original).
    """
    if count < NUM_FRAMES:
        idx = sorted(int(i) for i in rng.integers(0, count, NUM_FRAMES))
    else:
        skip = max(1, max_skip)
        g1 = int(rng.integers(1, min(skip, count - 2) + 1))
        g2 = int(rng.integers(1, min(skip, count - 1 - g1) + 1))
        start = int(rng.integers(0, count - g1 - g2))
        idx = [start, start + g1, start + g1 + g2]
    return idx[::-1] if rng.random() < 0.5 else idx


def usable_objects(masks: list[np.ndarray], recipe: VideoRecipe) -> list[int]:
    """Object ids of the first frame big enough to train on (BL30K: the original's size rule)."""
    ids, counts = np.unique(masks[0], return_counts=True)
    good = []
    for i, c in zip(ids.tolist(), counts.tolist(), strict=True):
        if i in (0, VOID) or c < recipe.min_pixels:
            continue
        if recipe.bl30k:
            later = max(int((m == i).sum()) for m in masks[1:])
            if c <= 10 * 10 or (c <= 30 * 30 and later >= 20 * 20):
                continue
        good.append(i)
    return good


def _pack(
    rgb: list[torch.Tensor], target: np.ndarray, second: np.ndarray | None, info: dict[str, Any]
) -> dict[str, Any]:
    gt = torch.from_numpy(target.astype(np.float32))[:, None]
    sec = torch.zeros_like(gt) if second is None else torch.from_numpy(second.astype(np.float32))[:, None]
    cls_gt = torch.zeros(gt.shape[0], *gt.shape[2:], dtype=torch.long)
    cls_gt[gt[:, 0] > 0.5] = 1
    cls_gt[sec[:, 0] > 0.5] = 2
    return {
        "rgb": torch.stack(rgb),
        "gt": gt,
        "sec_gt": sec,
        "cls_gt": cls_gt,
        "first_frame_gt": torch.stack([gt[0], sec[0]]),
        "selector": torch.tensor([1.0, 0.0 if second is None else 1.0]),
        "info": info,
    }


def static_training_sample(raw: dict[str, Any], rng: np.random.Generator, crop: int = 384) -> dict[str, Any]:
    """Stage 0: a raw static shard sample -> a 3-frame pseudo-video of its single object."""
    s = decode_static_sample(raw)
    rgb, masks = static_pseudo_video(decode_jpeg(s.jpg), binary_mask(decode_mask(s.png)), rng, crop)
    info = {"name": s.meta.get("name", s.key), "source": s.meta.get("source"), "frames": [], "indices": []}
    info["bytes"] = len(s.jpg) + len(s.png)
    return _pack(rgb, np.stack(masks), None, info)


def video_training_sample(
    raw: dict[str, Any], rng: np.random.Generator, max_skip: int, recipe: VideoRecipe = VideoRecipe()
) -> dict[str, Any]:
    """Video stages: a raw video shard sample -> 3 frames within `max_skip`, 1 or 2 objects."""
    v = decode_video_sample(raw)
    annotated = set(v.meta["annotated"])
    usable = [i for i, stem in enumerate(v.stems) if stem in annotated]
    if not usable:
        raise UserError(f"video {v.meta['video']!r} ({raw.get('__url__', '?')}) has no annotated frames")
    skip = max(1, max_skip // frame_stride([v.stems[i] for i in usable]))
    decoded: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    for _ in range(max(1, recipe.max_tries)):
        positions = choose_frames(len(usable), skip, rng)
        chosen = [usable[p] for p in positions]
        stems = [v.stems[i] for i in chosen]
        for i in chosen:
            if i not in decoded:
                decoded[i] = decode_jpeg(v.frames[i]), decode_mask(v.masks[v.stems[i]])
        images, labels = zip(*(decoded[i] for i in chosen), strict=True)
        rgb, masks = video_frames(list(images), list(labels), rng, recipe.crop, recipe.crop_scale)
        objects = usable_objects(masks, recipe)
        if objects:
            break
    masks = np.stack(masks)
    info = {
        "name": v.meta["video"],
        "source": v.meta.get("source"),
        "frames": stems,
        "indices": positions,
        "max_skip": max_skip,
        "skip": skip,
        "bytes": sum(len(v.frames[i]) + len(v.masks.get(v.stems[i], b"")) for i in set(chosen)),
    }
    if not objects:  # like the original: an all-background target after the tries ran out
        return _pack(rgb, np.zeros_like(masks), None, info)
    target = int(rng.choice(objects))
    others = [o for o in objects if o != target]
    second = int(rng.choice(others)) if others else None
    return _pack(rgb, masks == target, None if second is None else masks == second, info)
