"""Torch-free pieces that the PyTorch core and the numpy core (`numpy_core`, ONNX Runtime without torch) share:
the memory frames' slots with their eviction rule, and the padding to multiples of 16."""

from __future__ import annotations

from typing import Any


def padding_16(h: int, w: int) -> tuple[int, int, int, int]:
    """(left, right, top, bottom) zero padding that makes an h x w map a multiple of 16 each way, split evenly."""
    ph, pw = (16 - h % 16) % 16, (16 - w % 16) % 16
    return pw // 2, pw - pw // 2, ph // 2, ph - ph // 2


class FrameSlots:
    """Memory frames in order plus one temporary slot; past `max_frames` the oldest unpinned frame leaves (a group's
    first frame is pinned). Subclasses build their own entries (with a `pinned` attribute) and read them."""

    def __init__(self, top_k: int, max_frames: int | None = None):
        self.top_k, self.max_frames = top_k, max_frames
        self.entries: list[Any] = []
        self.temp: Any = None

    def __len__(self) -> int:
        return len(self.entries)

    def _admit(self, entry: Any, temporary: bool) -> None:
        """Keep `entry` (in the temporary slot, or as the newest frame, evicting past the bound); clears the slot."""
        self.temp = None
        if temporary:
            self.temp = entry
            return
        self.entries.append(entry)
        if self.max_frames is not None and len(self.entries) > self.max_frames:
            evictable = [i for i, e in enumerate(self.entries) if not e.pinned]
            if evictable:
                del self.entries[evictable[0]]
