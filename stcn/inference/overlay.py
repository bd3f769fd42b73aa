"""An MP4 preview of frames with their masks blended in the DAVIS colours."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from stcn.data.images import PALETTE
from stcn.errors import UserError

COLOURS = np.array(PALETTE, np.uint8).reshape(256, 3)


class OverlayWriter:
    """Writes frames with label masks blended at `alpha`; opened lazily on the first frame.

    The video is written under a hidden temporary name beside `path`: `close()` renames it to `path`
    (a complete video), `discard()` deletes it (a failed run leaves no half-written preview).
    """

    def __init__(self, path: Path, fps: float = 24.0, alpha: float = 0.5):
        self.path, self.fps, self.alpha = Path(path), fps, alpha
        self.partial = self.path.with_name(f".{self.path.stem}.partial{self.path.suffix}")
        self.writer: cv2.VideoWriter | None = None

    def add(self, rgb: np.ndarray, labels: np.ndarray) -> None:
        if self.writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            h, w = rgb.shape[:2]
            self.writer = cv2.VideoWriter(str(self.partial), cv2.VideoWriter_fourcc(*"mp4v"), self.fps, (w, h))
            if not self.writer.isOpened():
                raise UserError(f"cannot write video: {self.path}")
        blend = rgb.astype(np.float32)
        fg = labels > 0
        blend[fg] = (1 - self.alpha) * blend[fg] + self.alpha * COLOURS[labels[fg]]
        self.writer.write(cv2.cvtColor(blend.astype(np.uint8), cv2.COLOR_RGB2BGR))

    def _release(self) -> None:
        if self.writer is not None:
            self.writer.release()
            self.writer = None

    def close(self) -> None:
        """Finish the video and move it to `path`."""
        self._release()
        if self.partial.exists():
            self.partial.replace(self.path)

    def discard(self) -> None:
        """Drop the unfinished video."""
        self._release()
        self.partial.unlink(missing_ok=True)
