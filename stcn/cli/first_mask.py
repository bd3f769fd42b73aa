"""A first-frame mask from strokes for `stcn segment --first-scribble` (and batch strokes files), with S2M
loaded on first use.

In the command layer, beside the shared options: `stcn segment` (the inference area's command) uses the
interactive area's S2M through it, so no area's library imports another area's above it."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from stcn.errors import UserError


class LazyStrokes:
    """`StrokesToMask` (S2M, PyTorch), imported on first use: a run whose videos all have masks needs no torch
    for it (`--backend onnxruntime` then runs without PyTorch installed)."""

    def __init__(self, s2m: Path | None, device: str, say):
        if s2m is not None and not Path(s2m).is_file():  # checked up front, as StrokesToMask does
            raise UserError(f"S2M weights not found: {s2m}")
        self.s2m, self.device, self.say, self.impl = s2m, device, say, None

    def __call__(self, strokes: Path, rgb: np.ndarray) -> np.ndarray:
        if self.impl is None:
            from stcn.interactive.strokes import StrokesToMask

            self.impl = StrokesToMask(self.s2m, self.device, say=self.say)
        return self.impl(strokes, rgb)
