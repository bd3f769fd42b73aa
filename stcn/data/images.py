"""Reading frames and label masks, writing palette masks; every failure names the file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from stcn.errors import UserError

VOID = 255


def davis_palette() -> list[int]:
    """The DAVIS/PASCAL colour map (768 values) used by the official annotation PNGs."""
    palette = []
    for i in range(256):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        palette += [r, g, b]
    return palette


PALETTE = davis_palette()


def _open(path: Path) -> Image.Image:
    try:
        im = Image.open(path)
        im.load()
    except FileNotFoundError:
        raise UserError(f"missing file: {path}") from None
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise UserError(f"corrupt or unreadable image: {path} ({e})") from None
    return im


def read_frame(path: str | Path) -> np.ndarray:
    """An RGB frame as uint8 (H, W, 3)."""
    return np.array(_open(Path(path)).convert("RGB"))


def read_mask(path: str | Path) -> np.ndarray:
    """A label mask as uint8 (H, W): palette index (or grey value) = object id, 255 = void.

    16-bit grey masks keep their ids when all are below 256 (one non-zero value: a binary mask, id 1);
    colour masks with one non-black colour are binary (id 1), with several colours all of the DAVIS
    palette they map to its indices. Anything else that would merge objects is a UserError naming the file.
    """
    path = Path(path)
    im = _open(path)
    if im.mode in ("P", "L", "1"):
        return np.asarray(im.convert("L") if im.mode == "1" else im).astype(np.uint8)
    if im.mode.startswith(("I", "F")):  # 16/32-bit grey
        return _wide_mask(np.asarray(im), path)
    return _colour_mask(np.asarray(im.convert("RGB")), path)


def _wide_mask(values: np.ndarray, path: Path) -> np.ndarray:
    ids = np.unique(values)
    if ids.min() >= 0 and ids.max() <= VOID and np.all(ids == np.round(ids)):
        return values.astype(np.uint8)
    nonzero = ids[ids != 0]
    if len(nonzero) == 1:
        return (values != 0).astype(np.uint8)
    raise UserError(
        f"mask {path} has object ids above 255 ({', '.join(str(v) for v in nonzero[:5])}...): "
        "masks hold ids 1-255 (255: void unless `stcn segment --mask-255 object`); save it as a palette (P) PNG with "
        "one index per object"
    )


def _colour_mask(rgb: np.ndarray, path: Path) -> np.ndarray:
    packed = (rgb[..., 0].astype(np.uint32) << 16) | (rgb[..., 1].astype(np.uint32) << 8) | rgb[..., 2]
    colours, inverse = np.unique(packed, return_inverse=True)
    objects = colours[colours != 0]
    if len(objects) <= 1:
        return (packed != 0).astype(np.uint8)
    table = {(r << 16) | (g << 8) | b: i for i, (r, g, b) in enumerate(zip(*[iter(PALETTE)] * 3, strict=True))}
    if all(int(c) in table for c in colours):
        return np.array([table[int(c)] for c in colours], np.uint8)[inverse.reshape(packed.shape)]
    raise UserError(
        f"colour mask {path} has {len(objects)} colours, not all of the DAVIS palette: save it as a palette (P) "
        "PNG with one index per object (or one colour for a single object)"
    )


def write_mask(path: str | Path, labels: np.ndarray) -> None:
    """Save a uint8 label map as a palette PNG with the DAVIS colours."""
    im = Image.fromarray(np.ascontiguousarray(labels, dtype=np.uint8), mode="P")
    im.putpalette(PALETTE)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    im.save(path)


def object_ids(mask: np.ndarray, void: int | None = VOID) -> list[int]:
    """Object ids present in a label mask (background 0 and `void`, 255 by default, excluded; None: 1..255)."""
    return [int(v) for v in np.unique(mask) if v != 0 and v != void]
