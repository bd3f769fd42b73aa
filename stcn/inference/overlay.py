"""An MP4 preview of frames with their masks blended in the DAVIS colours.

The video is H.264 (`avc1`, which browsers play) when PyAV with its bundled libx264 encoder is installed (a
dependency of the project). OpenCV's PyPI wheels carry no H.264 encoder, so without PyAV the preview falls back to
OpenCV's MPEG-4 Part 2 (`mp4v`) and one `warning:` line on stderr says so.
"""

from __future__ import annotations

import sys
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

from stcn.data.images import PALETTE
from stcn.errors import UserError

COLOURS = np.array(PALETTE, np.uint8).reshape(256, 3)
FALLBACK_WARNING = (
    "warning: no H.264 encoder here (install PyAV: `pip install av`): the overlay is MPEG-4 Part 2 (mp4v), "
    "which browsers do not play"
)
_warned = False


def blend_masks(rgb: np.ndarray, labels: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """`rgb` as float32 with the pixels of objects (`labels` > 0) blended with their DAVIS colours at `alpha`."""
    blend = rgb.astype(np.float32)
    fg = labels > 0
    blend[fg] = (1 - alpha) * blend[fg] + alpha * COLOURS[labels[fg]]
    return blend


def h264_available() -> bool:
    """Whether PyAV and its libx264 encoder can be used."""
    try:
        import av

        av.codec.Codec("libx264", "w")
    except Exception:  # no PyAV, or a build without libx264
        return False
    return True


class _H264:
    """PyAV's libx264, yuv420p (the frame is padded to even sizes by repeating its last row/column)."""

    def __init__(self, path: Path, fps: float, width: int, height: int):
        import av

        self.container = av.open(str(path), mode="w", format="mp4")
        self.stream = self.container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        self.stream.width, self.stream.height = width + width % 2, height + height % 2
        self.stream.pix_fmt = "yuv420p"
        self.stream.options = {"crf": "23", "preset": "veryfast"}

    def write(self, rgb: np.ndarray) -> None:
        import av

        h, w = rgb.shape[:2]
        rgb = np.pad(rgb, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
        for packet in self.stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")):
            self.container.mux(packet)

    def release(self) -> None:
        for packet in self.stream.encode():  # flush
            self.container.mux(packet)
        self.container.close()


class _Mpeg4:
    """OpenCV's `mp4v` writer (the fallback)."""

    def __init__(self, path: Path, fps: float, width: int, height: int):
        self.writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
        if not self.writer.isOpened():
            raise UserError(f"cannot write video: {path}")

    def write(self, rgb: np.ndarray) -> None:
        self.writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))

    def release(self) -> None:
        self.writer.release()


class OverlayWriter:
    """Writes frames with label masks blended at `alpha`; opened lazily on the first frame.

    The video is written under a hidden temporary name beside `path`: `close()` renames it to `path`
    (a complete video), `discard()` deletes it (a failed run leaves no half-written preview).
    """

    def __init__(self, path: Path, fps: float = 24.0, alpha: float = 0.5):
        self.path, self.fps, self.alpha = Path(path), fps, alpha
        self.partial = self.path.with_name(f".{self.path.stem}.partial{self.path.suffix}")
        self.writer: _H264 | _Mpeg4 | None = None

    def _open(self, width: int, height: int) -> _H264 | _Mpeg4:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if h264_available():
            try:
                return _H264(self.partial, self.fps, width, height)
            except OSError as e:
                raise UserError(f"cannot write video: {self.path}: {e}") from e
        global _warned
        if not _warned:  # once per process (batch mode writes one preview per video)
            print(FALLBACK_WARNING, file=sys.stderr)
            _warned = True
        return _Mpeg4(self.partial, self.fps, width, height)

    def add(self, rgb: np.ndarray, labels: np.ndarray) -> None:
        if self.writer is None:
            self.writer = self._open(rgb.shape[1], rgb.shape[0])
        self.writer.write(blend_masks(rgb, labels, self.alpha).astype(np.uint8))

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
