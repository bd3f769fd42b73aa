"""A first-frame mask from strokes: a stroke PNG -> S2M -> label mask, for `stcn segment --first-scribble`.

The PNG follows `stcn interact`'s conventions (stcn.interactive.scribbles): palette/grey with k = a
stroke of object k, 255 = a background stroke, 0 = none (a 16-bit grey PNG: objects 1..255, background
256); or RGB with green = the object, red =
background. It must have the first frame's size (a mask drawn for another size is refused, not
stretched). S2M runs once per object on the first frame with an empty current mask; the objects'
probabilities are aggregated as in MiVOS and the argmax is the mask.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from stcn.errors import UserError
from stcn.inference.frames import image_tensor, pad_to_16, unpad
from stcn.interactive.core import hard_aggregate, scribble_maps
from stcn.interactive.s2m import S2M
from stcn.interactive.scribbles import scribbles_from_png, stroke_ids, to_channels

MAX_OBJECTS = 255  # palette ids (object 255: a 16-bit grey stroke PNG, where 256 is the background stroke)


def png_size(path: Path) -> tuple[int, int]:
    """(W, H) of an image file, from its header."""
    from PIL import Image

    if not path.is_file():
        raise UserError(f"scribble image not found: {path}")
    try:
        with Image.open(path) as im:
            return im.size
    except OSError as e:
        raise UserError(f"cannot read scribble image {path}: {e}") from None


@torch.inference_mode()
def mask_from_strokes(s2m: S2M, rgb: np.ndarray, scribbles: np.ndarray, device: str = "cpu") -> np.ndarray:
    """Label mask (H, W) uint8 from the frame `rgb` (H, W, 3) and a scribble map (-1 none, 0 background, k)."""
    ids = stroke_ids(scribbles)  # S2M runs on dense channels: object 255 alone is one channel
    if not ids:
        raise UserError("the strokes name no object (only background strokes)")
    if ids[-1] > MAX_OBJECTS:
        raise UserError(f"the strokes name object {ids[-1]}; at most {MAX_OBJECTS} objects")
    image, pad = pad_to_16(image_tensor(rgb))
    positive, negative = (pad_to_16(m)[0] for m in scribble_maps(to_channels(scribbles, ids), len(ids)))
    empty = torch.zeros_like(positive)
    dev = torch.device(device)
    p = s2m.object_probability(image.to(dev), empty.to(dev), positive.to(dev), negative.to(dev))
    channels = unpad(torch.argmax(hard_aggregate(p.float().cpu()), 0), pad).numpy()
    return np.array([0, *ids], np.uint8)[channels]


class StrokesToMask:
    """Strokes PNG + first frame -> first-frame mask, with S2M loaded on first use (announced in one line)."""

    def __init__(self, weights: Path | None, device: str, seed: int = 0, say: Callable[[str], None] = print):
        self.weights, self.device, self.seed, self.say = weights, device, seed, say
        self._model: S2M | None = None
        if weights is not None and not Path(weights).is_file():
            raise UserError(f"S2M weights not found: {weights}")

    def describe(self) -> str:
        """One line: which S2M turns strokes into masks."""
        if self.weights is not None:
            return f"S2M: {self.weights}"
        return (f"S2M: seeded stand-in weights (seed {self.seed}, untrained: its masks are noise); "
                "pass --s2m models/s2m/weights.pth (stage train_s2m) or MiVOS's s2m.pth")  # fmt: skip

    def model(self) -> S2M:
        if self._model is None:
            from stcn.interactive.weights import load_s2m

            self.say(self.describe())
            self._model = load_s2m(self.weights, self.seed, self.device)
        return self._model

    def __call__(self, path: Path, rgb: np.ndarray) -> np.ndarray:
        """The first-frame mask from the stroke PNG `path` drawn on `rgb` (same size required)."""
        path = Path(path)
        size = png_size(path)
        frame = (rgb.shape[1], rgb.shape[0])
        if size != frame:
            raise UserError(f"scribble image {path} is {size[0]}x{size[1]}, the first frame is {frame[0]}x{frame[1]}")
        scribbles = scribbles_from_png(path, frame)
        if scribbles.max() < 1:
            raise UserError(f"{path}: the strokes name no object (only background strokes)")
        if scribbles.max() > MAX_OBJECTS:
            raise UserError(f"{path}: the strokes name object {scribbles.max()}; at most {MAX_OBJECTS} objects")
        mask = mask_from_strokes(self.model(), rgb, scribbles, self.device)
        if not mask.any():
            raise UserError(f"S2M found no object under the strokes of {path} ({self.describe()})")
        return mask
