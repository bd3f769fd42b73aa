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
    """A label mask as uint8 (H, W): palette index (or grey value) = object id, 255 = void."""
    im = _open(Path(path))
    if im.mode not in ("P", "L", "1"):
        # an RGB-saved mask: a pixel is an object where it is not black (single object)
        return (np.asarray(im.convert("L")) > 0).astype(np.uint8)
    return np.asarray(im.convert("L") if im.mode == "1" else im).astype(np.uint8)


def write_mask(path: str | Path, labels: np.ndarray) -> None:
    """Save a uint8 label map as a palette PNG with the DAVIS colours."""
    im = Image.fromarray(np.ascontiguousarray(labels, dtype=np.uint8), mode="P")
    im.putpalette(PALETTE)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    im.save(path)


def object_ids(mask: np.ndarray) -> list[int]:
    """Object ids present in a label mask (background 0 and void 255 excluded)."""
    return [int(v) for v in np.unique(mask) if v not in (0, VOID)]
