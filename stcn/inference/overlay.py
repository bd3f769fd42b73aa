"""An MP4 preview of frames with their masks blended in the DAVIS colours."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from stcn.data.images import PALETTE
from stcn.errors import UserError

COLOURS = np.array(PALETTE, np.uint8).reshape(256, 3)


class OverlayWriter:
    """Writes frames with label masks blended at `alpha`; opened lazily on the first frame."""

    def __init__(self, path: Path, fps: float = 24.0, alpha: float = 0.5):
        self.path, self.fps, self.alpha = Path(path), fps, alpha
        self.writer: cv2.VideoWriter | None = None

    def add(self, rgb: np.ndarray, labels: np.ndarray) -> None:
        if self.writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            h, w = rgb.shape[:2]
            self.writer = cv2.VideoWriter(str(self.path), cv2.VideoWriter_fourcc(*"mp4v"), self.fps, (w, h))
            if not self.writer.isOpened():
                raise UserError(f"cannot write video: {self.path}")
        blend = rgb.astype(np.float32)
        fg = labels > 0
        blend[fg] = (1 - self.alpha) * blend[fg] + self.alpha * COLOURS[labels[fg]]
        self.writer.write(cv2.cvtColor(blend.astype(np.uint8), cv2.COLOR_RGB2BGR))

    def close(self) -> None:
        if self.writer is not None:
            self.writer.release()
