"""Torch-free pieces that the PyTorch core and the numpy core (`numpy_core`, ONNX Runtime without torch) share:
the official memory schedule with the objects' bookkeeping, the memory frames' slots with their eviction rule,
and the padding to multiples of 16."""

from __future__ import annotations

from typing import Any

from stcn.inference.settings import InferenceSettings


class MemorySchedule:
    """Which frames a core computes and memorises (the official evaluation's schedule), and its objects: the
    caller's ids in channel order (channel i + 1) and the channel indices (0-based objects) of each group."""

    def __init__(self, settings: InferenceSettings | None = None):
        self.settings = settings or InferenceSettings()
        self.object_ids: list[int] = []
        self.groups: list[list[int]] = []
        self.t = -1
        self.last_memory_t = -1

    def _next_frame(self, given: bool, is_last: bool, need_output: bool) -> tuple[bool, bool] | None:
        """Advance to the next frame: (is_memory, remember), or None when it is skipped (no objects yet, or not
        needed for output or memory). A frame with given masks is a memory frame; after it every `mem_every`-th
        frame is (never the last); with `include_last` any other frame is remembered in the temporary slot."""
        self.t += 1
        if not given and not self.object_ids:
            return None
        is_memory = given or (self.t - self.last_memory_t >= self.settings.mem_every)
        if not (given or need_output or is_memory or self.settings.include_last):
            return None
        return is_memory, given or (not is_last and (is_memory or self.settings.include_last))

    def _add_objects(self, object_ids: list[int]) -> int:
        """Ids not known yet join as a new group (channels after the existing ones); returns how many joined."""
        new = [i for i in object_ids if i not in self.object_ids]
        if new:
            self.groups.append(list(range(len(self.object_ids), len(self.object_ids) + len(new))))
            self.object_ids += new
        return len(new)


def padding_16(h: int, w: int) -> tuple[int, int, int, int]:
    """(left, right, top, bottom) zero padding that makes an h x w map a multiple of 16 each way, split evenly."""
    ph, pw = (16 - h % 16) % 16, (16 - w % 16) % 16
    return pw // 2, pw - pw // 2, ph // 2, ph - ph // 2


def unpad(x, pad: tuple[int, int, int, int]):
    """Undo the `padding_16` padding `pad` of the last two dims (a torch tensor or a numpy array)."""
    left, right, top, bottom = pad
    h, w = x.shape[-2:]
    return x[..., top : h - bottom, left : w - right]


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
