"""The WebDataset shard contract: member names, metadata fields, and encode/decode helpers.

Video sample (DAVIS, YouTube-VOS, BL30K), one per video, members in this order:
    `<key>.json`                      {"video", "frames", "annotated", "objects", "size", "source"}
    `<key>.<stem>.jpg`                the frame's original JPEG bytes, unchanged
    `<key>.<stem>.png`                that frame's mask PNG bytes (only for annotated frames)
so a WebDataset sample dict has keys "__key__", "json", "<stem>.jpg", "<stem>.png".
"objects" (the mask labels) is null when the shards were written with the header-only check.
YouTube-VOS valid with all frames adds "required": the stems that need an output mask.

Static sample (image + mask datasets), one per image: `<key>.json` {"name", "source", "size"},
`<key>.jpg`, `<key>.png`.

Shards are `<split>-%06d.tar` plus one `index.json` per dataset output folder; tar members have
mtime 0, uid/gid 0, empty uname/gname and mode 0o644, so the same input gives byte-identical shards.
index.json: {"dataset", "format", "splits": {split: {"complete", "shards", "totals", settings}},
"shards": [{"name", "split", "samples", "bytes", "sha256"}], "totals"}; list a split's shard
URLs with `stcn.data.shards.store.shard_urls(out, split)`.
"""

from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from stcn.errors import UserError

# --- names ---------------------------------------------------------------------------------
META = "json"  # field holding the sample's metadata
JPG = "jpg"
PNG = "png"
INDEX = "index.json"  # per-dataset manifest: {"shards": [{name, samples, bytes, sha256}], totals}
SHARD_PATTERN = "{split}-%06d.tar"
DEFAULT_SHARD_SIZE_MB = 256

# metadata keys
VIDEO_KEYS = ("video", "frames", "annotated", "objects", "size", "source")
STATIC_KEYS = ("name", "source", "size")

# fixed tar header values (determinism)
TAR_MTIME = 0
TAR_MODE = 0o644
TAR_UID = TAR_GID = 0
TAR_UNAME = TAR_GNAME = ""

_SAFE = re.compile(r"[A-Za-z0-9_\-]")


def shard_name(split: str, index: int) -> str:
    """File name of shard `index` of a split, e.g. `train-000003.tar`."""
    return SHARD_PATTERN.format(split=split) % index


def safe_key(name: str) -> str:
    """A WebDataset `__key__` for a video/image name: no dots or slashes, reversible.

    Every character outside [A-Za-z0-9_-] becomes `~XX` (hex of each UTF-8 byte), so
    `bmx.trees/a` -> `bmx~2Etrees~2Fa`; plain DAVIS/YouTube names are unchanged.
    """
    if not name:
        raise UserError("empty sample name cannot become a shard key")
    out = []
    for ch in name:
        if _SAFE.fullmatch(ch):
            out.append(ch)
        else:
            out.extend(f"~{b:02X}" for b in ch.encode())
    return "".join(out)


def unsafe_key(key: str) -> str:
    """Invert `safe_key`."""
    raw = bytearray()
    i = 0
    while i < len(key):
        if key[i] == "~":
            raw.append(int(key[i + 1 : i + 3], 16))
            i += 3
        else:
            raw.extend(key[i].encode())
            i += 1
    return raw.decode()


def frame_field(stem: str, ext: str) -> str:
    """Sample field of one video frame: `<stem>.jpg` or `<stem>.png`."""
    if not stem or "/" in stem or stem.startswith("."):
        raise UserError(f"frame name {stem!r} cannot be a shard field")
    return f"{stem}.{ext}"


def encode_json(meta: dict[str, Any]) -> bytes:
    """Canonical metadata bytes (sorted keys, compact) so shards are reproducible."""
    return json.dumps(meta, sort_keys=True, separators=(",", ":")).encode()


# --- samples -------------------------------------------------------------------------------
@dataclass
class VideoSample:
    """One decoded-to-bytes video sample: frames (JPEG bytes in order) and masks (PNG bytes by stem)."""

    key: str
    meta: dict[str, Any]
    frames: list[bytes]
    masks: dict[str, bytes] = field(default_factory=dict)

    @property
    def stems(self) -> list[str]:
        return list(self.meta["frames"])


@dataclass
class StaticSample:
    """One static image sample: JPEG bytes, mask PNG bytes, metadata."""

    key: str
    meta: dict[str, Any]
    jpg: bytes
    png: bytes


def video_members(
    key: str, meta: dict[str, Any], frames: dict[str, bytes], masks: dict[str, bytes]
) -> list[tuple[str, bytes]]:
    """Tar members `(name, bytes)` of a video sample in canonical order (json, then jpg/png per frame)."""
    missing = [k for k in VIDEO_KEYS if k not in meta]
    if missing:
        raise ValueError(f"video metadata lacks {missing}")
    out = [(f"{key}.{META}", encode_json(meta))]
    for stem in meta["frames"]:
        out.append((f"{key}.{frame_field(stem, JPG)}", frames[stem]))
        if stem in masks:
            out.append((f"{key}.{frame_field(stem, PNG)}", masks[stem]))
    return out


def static_members(key: str, meta: dict[str, Any], jpg: bytes, png: bytes) -> list[tuple[str, bytes]]:
    """Tar members `(name, bytes)` of a static image sample."""
    return [(f"{key}.{META}", encode_json(meta)), (f"{key}.{JPG}", jpg), (f"{key}.{PNG}", png)]


def _where(sample: dict[str, Any]) -> str:
    return f"shard sample {sample.get('__key__')!r} ({sample.get('__url__', '?')})"


def _meta(sample: dict[str, Any]) -> dict[str, Any]:
    raw = sample.get(META)
    if raw is None:
        raise UserError(f"{_where(sample)} has no {META} member")
    return raw if isinstance(raw, dict) else json.loads(raw)


def decode_video_sample(sample: dict[str, Any]) -> VideoSample:
    """Turn a raw WebDataset sample dict (bytes values, no `.decode()`) into a `VideoSample`."""
    meta = _meta(sample)
    try:
        frames = [sample[frame_field(s, JPG)] for s in meta["frames"]]
        masks = {s: sample[frame_field(s, PNG)] for s in meta["annotated"]}
    except KeyError as e:
        raise UserError(f"{_where(sample)} lacks member {e}") from None
    return VideoSample(sample.get("__key__", safe_key(meta["video"])), meta, frames, masks)


def decode_static_sample(sample: dict[str, Any]) -> StaticSample:
    """Turn a raw WebDataset static sample dict into a `StaticSample`."""
    meta = _meta(sample)
    try:
        return StaticSample(sample.get("__key__", safe_key(meta["name"])), meta, sample[JPG], sample[PNG])
    except KeyError as e:
        raise UserError(f"{_where(sample)} lacks member {e}") from None


# --- pixels --------------------------------------------------------------------------------
def decode_jpeg(data: bytes) -> np.ndarray:
    """JPEG (or any image) bytes -> RGB uint8 (H, W, 3)."""
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB"))


def decode_mask(data: bytes) -> np.ndarray:
    """Mask PNG bytes -> uint8 label map (H, W): palette index / grey value = object id, 255 = void."""
    with Image.open(io.BytesIO(data)) as im:
        if im.mode not in ("P", "L", "1"):
            return (np.asarray(im.convert("L")) > 0).astype(np.uint8)
        return np.asarray(im.convert("L") if im.mode == "1" else im).astype(np.uint8)


def image_size(data: bytes) -> tuple[int, int]:
    """(H, W) of encoded image bytes without decoding the pixels."""
    with Image.open(io.BytesIO(data)) as im:
        return im.height, im.width
