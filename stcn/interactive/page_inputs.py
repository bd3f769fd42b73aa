"""What the web page (`stcn app`) sends and is sent, checked and converted: object ids, output names, paths under
the page's root, the bundled samples, a video read at the processing size, stroke pixels, palette PNGs."""

from __future__ import annotations

import io
import re
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from stcn.data.images import PALETTE
from stcn.errors import UserError
from stcn.inference.frames import target_size

MAX_ID = 255  # palette PNGs hold ids 0..255
MAX_OBJECTS = 20  # objects in one session: each costs a probability byte a pixel per frame and its own memory values
BUNDLED = Path(__file__).resolve().parent.parent / "data" / "bundled"
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,99}")


def check_object_id(obj: object) -> int:
    """An object id 1..255: an integer or a string of digits (the page's input field); 12.9, "12.9" and True are
    refused, never rounded (one clear line)."""
    if isinstance(obj, str) and re.fullmatch(r"[0-9]{1,3}", obj.strip()):
        obj = int(obj)
    if not isinstance(obj, (int, np.integer)) or isinstance(obj, bool):
        raise UserError(f"object id {obj!r} is not a whole number 1..{MAX_ID}")
    value = int(obj)
    if not 1 <= value <= MAX_ID:
        raise UserError(f"object id {value} is outside 1..{MAX_ID} (palette PNGs hold ids up to {MAX_ID})")
    return value


def safe_name(name: str) -> str:
    """A name that becomes one path component (a video's output folder): letters, digits, _ . - only."""
    if not NAME.fullmatch(name) or name in (".", ".."):
        raise UserError(f"unsafe name {name!r}: use letters, digits, '_', '.', '-' (at most 100)")
    return name


def inside(root: Path, path: str | Path) -> Path:
    """`path` (absolute, or relative to `root`) resolved; a UserError when it leaves `root`."""
    root = root.resolve()
    resolved = (root / path).resolve()
    if resolved != root and root not in resolved.parents:
        raise UserError(f"{path} is outside the folder the page may open ({root}); start `stcn app --root ...`")
    return resolved


def bundled_samples() -> dict[str, Path]:
    """The bundled real DAVIS sequences by name ("blackswan", ...), each a frame folder."""
    root = BUNDLED / "davis-mini" / "JPEGImages" / "480p"
    samples = {p.name: p for p in sorted(root.iterdir()) if p.is_dir()} if root.is_dir() else {}
    tennis = BUNDLED / "davis17-multiobject-sample"
    if tennis.is_dir():
        samples["tennis-2-frames"] = tennis
    return samples


def read_video(
    path: Path, max_frames: int | None, resolution: int | None = None
) -> tuple[list[str], list[np.ndarray], tuple[int, int]]:
    """Stems, RGB frames resized to shorter side `resolution` one by one, and the input (W, H) of a video.

    A frame folder or a video file; the first `max_frames` frames only.
    """
    from stcn.inference.video import open_frames

    source = open_frames(
        path, "video not found: {path}", "{path} is neither a folder of frames nor a video ({suffixes})"
    )
    stems, rgbs, full = [], [], None
    for stem, load in source:
        if max_frames is not None and len(stems) >= max_frames:
            break
        rgb = load()
        size = (rgb.shape[1], rgb.shape[0])
        full = full or size
        if size != full:
            raise UserError(f"frame {stem} of {path} is {size[0]}x{size[1]}, the first frame {full[0]}x{full[1]}")
        small = target_size(full, resolution)
        stems.append(stem)
        rgbs.append(np.array(Image.fromarray(rgb).resize(small, Image.BICUBIC)) if small != full else rgb)
    if full is None:
        raise UserError(f"no frames in {path}")
    return stems, rgbs, full


def stroke_pixels(points: list, radius: float, size: tuple[int, int]) -> np.ndarray:
    """Boolean (H, W) map of a stroke: points (x, y) in 0..1 of the frame, drawn `radius` pixels wide."""
    w, h = size
    try:
        xy = np.array([[float(x) * w, float(y) * h] for x, y in points], dtype=np.float64)
    except (TypeError, ValueError):
        raise UserError("a stroke is a list of [x, y] points in 0..1") from None
    if len(xy) == 0 or not np.isfinite(xy).all():
        raise UserError("a stroke needs at least one finite [x, y] point")
    canvas = np.zeros((h, w), np.uint8)
    r = max(1, round(float(radius)))
    pts = np.round(xy).astype(np.int32)
    if len(pts) == 1:
        cv2.circle(canvas, tuple(int(v) for v in pts[0]), r, 1, -1)
    else:
        cv2.polylines(canvas, [pts.reshape(-1, 1, 2)], False, 1, thickness=2 * r + 1)
    return canvas.astype(bool)


def palette_png(labels: np.ndarray, transparent_background: bool = False) -> bytes:
    """PNG bytes of a label map in the DAVIS colours (index 0 transparent when asked)."""
    im = Image.fromarray(np.ascontiguousarray(labels, dtype=np.uint8), mode="P")
    im.putpalette(PALETTE)
    buf = io.BytesIO()
    im.save(buf, format="PNG", **({"transparency": 0} if transparent_background else {}))
    return buf.getvalue()
