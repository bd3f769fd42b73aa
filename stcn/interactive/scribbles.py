"""Reading a user's scribbles: a DAVIS scribble JSON or a PNG with positive/negative strokes.

Every reader returns per interacted frame a scribble map (H, W) int64: object id k >= 1 where a
stroke of object k lies, 0 where a background (negative) stroke lies, -1 where there is none.

PNG conventions:
- palette or 8-bit grey PNG: 0 = no stroke, k (1..254) = stroke of object k, 255 = background stroke;
- 16-bit grey PNG (all 255 object ids): 0 = no stroke, k (1..255) = stroke of object k, 256 = background;
- RGB(A) PNG (one object, drawn in any editor): green strokes = the object, red strokes = background,
  anything else (black, white, transparent) = no stroke.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
from PIL import Image

from stcn.errors import UserError

NONE, BACKGROUND_VALUE, WIDE_BACKGROUND = -1, 255, 256  # background strokes: 8-bit and 16-bit PNGs


def scribbles_from_png(
    path: str | Path, size: tuple[int, int], frame_size: tuple[int, int] | None = None
) -> np.ndarray:
    """A PNG of strokes -> scribble map at `size` (W, H), nearest-resized when it differs.

    `frame_size`: the (W, H) of the frames the strokes are drawn on; a PNG of another size is refused (it would
    be stretched). An id outside 0..255 (8-bit) or 0..256 (16-bit grey) is refused, naming the id."""
    path = Path(path)
    try:
        with Image.open(path) as im:
            im.load()
            if frame_size is not None and im.size != tuple(frame_size):
                raise UserError(f"scribble image {path} is {im.size[0]}x{im.size[1]}, the frames are "
                                f"{frame_size[0]}x{frame_size[1]}: draw on a frame-sized image")  # fmt: skip
            wide = im.mode.startswith("I")
            grey = im.mode in ("P", "L") or wide
            background = WIDE_BACKGROUND if wide else BACKGROUND_VALUE
            data = np.asarray(im if grey else im.convert("RGBA")).astype(np.int64)
            if grey and data.size and (data.max() > background or data.min() < 0):
                odd = int(data.max()) if data.max() > background else int(data.min())
                raise UserError(f"scribble image {path} holds id {odd}: ids are 1..{background - 1} for objects, "
                                f"{background} for background, 0 for none")  # fmt: skip
            if im.size != size:
                small = Image.fromarray(data.astype(np.int32), "I") if grey else Image.fromarray(data.astype(np.uint8))
                data = np.asarray(small.resize(size, Image.NEAREST)).astype(np.int64)
    except (OSError, ValueError) as e:
        raise UserError(f"cannot read scribble image {path}: {e}") from None
    out = np.full(data.shape[:2], NONE, dtype=np.int64)
    if grey:
        out[(data > 0) & (data < background)] = data[(data > 0) & (data < background)]
        out[data == background] = 0
    else:
        r, g, b, a = (data[..., i] for i in range(4))
        visible = a > 127
        out[visible & (g > 127) & (r < 128) & (b < 128)] = 1
        out[visible & (r > 127) & (g < 128) & (b < 128)] = 0
    if (out == NONE).all():
        raise UserError(f"no strokes in scribble image {path} (see `stcn interact --help` for the colours)")
    return out


def scribbles_from_json(path: str | Path, num_frames: int, size: tuple[int, int]) -> dict[int, np.ndarray]:
    """A DAVIS scribble JSON -> {frame: scribble map at `size` (W, H)} for every frame with strokes."""
    from stcn.interactive.davis_package import davisinteractive

    path = Path(path)
    try:
        data = json.loads(path.read_text())
        strokes = data["scribbles"]
    except (OSError, ValueError, KeyError, TypeError, RecursionError) as e:
        raise UserError(f"not a DAVIS scribble file: {path} ({e})") from None
    check_davis_scribbles(strokes, path)
    if len(strokes) != num_frames:
        raise UserError(f"scribble file {path} is for {len(strokes)} frames, the video has {num_frames}")
    utils = davisinteractive().utils.scribbles
    frames = utils.annotated_frames(data)
    if not frames:
        raise UserError(f"no strokes in scribble file {path}")
    maps = utils.scribbles2mask(data, size[::-1])
    return {int(f): maps[f].astype(np.int64) for f in frames}


def check_davis_scribbles(strokes: object, path: Path) -> None:
    """The `scribbles` of a DAVIS scribble file in type and range, else one line naming the file and the stroke: a
    list per frame of strokes {"path": [[x, y], ...] (finite, 0..1), "object_id": a whole number 0..255 (0: the
    background)}. Nothing is rounded or wrapped: -2 is not object 1, 1.9 not 1, NaN not a pixel."""

    def bad(where: str, what: str) -> UserError:
        return UserError(f"not a DAVIS scribble file: {path}: {where} {what}")

    if not isinstance(strokes, list):
        raise bad("`scribbles`", f"must be a list (one list of strokes per frame), got {type(strokes).__name__}")
    for f, frame in enumerate(strokes):
        if not isinstance(frame, list):
            raise bad(f"frame {f}", f"must be a list of strokes, got {type(frame).__name__}")
        for k, stroke in enumerate(frame):
            where = f"frame {f} stroke {k}"
            if not isinstance(stroke, dict):
                raise bad(where, "must be a mapping with `path` and `object_id`")
            obj = stroke.get("object_id")
            if type(obj) is not int or not 0 <= obj <= 255:
                raise bad(where, f"object_id must be a whole number 0..255 (0: background), got {obj!r}")
            points = stroke.get("path")
            if not isinstance(points, list) or not points:
                raise bad(where, "path must be a non-empty list of [x, y] points")
            for point in points:
                if (
                    not isinstance(point, list)
                    or len(point) != 2
                    or not all(type(v) in (int, float) and math.isfinite(v) and 0 <= v <= 1 for v in point)
                ):
                    raise bad(where, f"point {point!r} is not [x, y] with finite x, y in 0..1")


def stroke_ids(scribbles: np.ndarray) -> list[int]:
    """The object ids a scribble map names (its values >= 1), ascending."""
    return [int(v) for v in np.unique(scribbles) if v >= 1]


def to_channels(scribbles: np.ndarray, ids: list[int]) -> np.ndarray:
    """A scribble map with object ids -> the same map with dense channels: id ids[c - 1] becomes c (0 and -1 kept),
    so object 255 alone costs one network channel, not 255."""
    lut = np.full(max([*ids, int(scribbles.max(initial=0))]) + 2, -1, np.int64)
    lut[0], lut[-1] = 0, -1  # lut[-1]: the -1 of "no stroke"
    lut[np.asarray(ids, np.int64)] = np.arange(1, len(ids) + 1)
    out = lut[scribbles]
    if (out[scribbles >= 1] < 1).any():
        raise ValueError(f"scribbles name ids outside {ids}")
    return out
