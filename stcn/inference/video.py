"""Whole-video propagation: frames in, label masks out, with the compute time measured apart from I/O."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from stcn.data.folders import VIDEO_SUFFIXES, list_frames
from stcn.data.images import VOID, object_ids, read_frame, write_mask
from stcn.errors import UserError
from stcn.inference.settings import InferenceSettings

if TYPE_CHECKING:
    from stcn.model.network import STCN

INDEXED_VIDEO = (".mp4", ".mov", ".m4v")  # containers whose frame count comes from an index, not an estimate
FrameSource = Iterable[tuple[str, Callable[[], np.ndarray]]]  # (frame stem, loader of RGB uint8)


@dataclass
class Timing:
    """Frames processed and the compute seconds they took (reading and writing excluded)."""

    frames: int = 0
    seconds: float = 0.0

    def __iadd__(self, other: Timing) -> Timing:
        self.frames += other.frames
        self.seconds += other.seconds
        return self

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds else float("nan")


def folder_frames(paths: list[Path]) -> FrameSource:
    """Frames of image files, read lazily."""
    return [(p.stem, lambda p=p: read_frame(p)) for p in paths]


def video_frames(path: Path) -> Iterator[tuple[str, Callable[[], np.ndarray]]]:
    """Frames of a video file (named 00000, 00001, ...), decoded one at a time."""
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise UserError(f"cannot open video: {path}")
    t = 0
    while True:
        ok, bgr = cap.read()
        if not ok:
            break
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        yield f"{t:05d}", lambda rgb=rgb: rgb
        t += 1
    declared = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    cap.release()
    if t == 0:
        raise UserError(f"no frames could be decoded from video: {path}")
    check_frame_count(path, t, declared)


def frame_source(path: Path) -> FrameSource:
    """The frames of a video file or of a folder of frames (in name order), read lazily."""
    return video_frames(path) if path.is_file() else folder_frames(list_frames(path))


NOT_FOUND = "frames not found: {path}"  # `open_frames`' errors for --frames; {suffixes}: the video file endings
NEITHER = "--frames must be a folder of images or a video ({suffixes})"


def open_frames(path: Path, not_found: str = NOT_FOUND, neither: str = NEITHER) -> FrameSource:
    """`frame_source(path)`, once `path` is checked: a UserError (`not_found`, or `neither` for a file that is no
    video) when it is neither a folder nor a video file."""
    if not path.exists():
        raise UserError(not_found.format(path=path))
    if path.is_file() and path.suffix.lower() not in VIDEO_SUFFIXES:
        raise UserError(neither.format(path=path, suffixes=", ".join(sorted(VIDEO_SUFFIXES))))
    return frame_source(path)


def first_frame(path: Path, source: FrameSource) -> tuple[str, Callable[[], np.ndarray]]:
    """The stem and the loader of the first frame of `frame_source(path)` (a video file's first frame is decoded
    apart, leaving `source` unread)."""
    if path.is_file():
        return "00000", lambda: next(iter(video_frames(path)))[1]()
    return source[0]


def mask_writer(folder: Path, preview, bar) -> Callable[[str, np.ndarray, np.ndarray], None]:
    """The `propagate` callback of `stcn segment`: a frame's mask as FOLDER/<stem>.png, the frame with its mask
    added to `preview` (an `OverlayWriter`, or None), and one step of the progress `bar`."""

    def write(stem: str, labels: np.ndarray, rgb: np.ndarray) -> None:
        write_mask(folder / f"{stem}.png", labels)
        if preview is not None:
            preview.add(rgb, labels)
        bar.advance(1)

    return write


def frame_total(path: Path, source: FrameSource) -> int | None:
    """How many frames `source` holds, for progress: a folder's file count, a video's declared count (or None)."""
    if isinstance(source, list):
        return len(source)
    cap = cv2.VideoCapture(str(path))
    count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) if cap.isOpened() else 0
    cap.release()
    return count or None


def check_frame_count(path: Path, decoded: int, declared: int) -> None:
    """A truncated MP4/MOV (its index lists every frame) decodes fewer frames than it declares."""
    if Path(path).suffix.lower() in INDEXED_VIDEO and decoded < declared:
        raise UserError(f"truncated or damaged video: {path} (decoded {decoded} of its {declared} frames)")


def check_frame_size(where: str, stem: str, rgb: np.ndarray, size: tuple[int, ...] | None) -> tuple[int, ...]:
    """All frames of a video must have the first frame's size (else a UserError naming the frame)."""
    if size is not None and rgb.shape[:2] != size:
        raise UserError(
            f"{where}: frame {stem} is {rgb.shape[1]}x{rgb.shape[0]} but the first frame is {size[1]}x{size[0]}"
        )
    return rgb.shape[:2]


def _with_last(items: Iterable) -> Iterator[tuple[object, bool]]:
    it = iter(items)
    try:
        current = next(it)
    except StopIteration:
        return
    for nxt in it:
        yield current, False
        current = nxt
    yield current, True


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def host_code(model) -> tuple[type, Callable, Callable, Callable]:
    """The core class and frame/mask/label functions for `model`: numpy for a numpy model (`OnnxSTCN`, no
    torch imported), else PyTorch (`InferenceCore`)."""
    if getattr(model, "host", "torch") == "numpy":
        from stcn.inference import numpy_core as host

        return host.NumpyCore, host.image_array, host.one_hot_array, host.labels_from_array
    from stcn.inference.core import InferenceCore
    from stcn.inference.frames import image_tensor, labels_from_prob, one_hot

    return InferenceCore, image_tensor, one_hot, labels_from_prob


class VanishWatch:
    """Notices when every object is lost: all masks after the last given one are empty."""

    def __init__(self) -> None:
        self.last_given: str | None = None
        self.later = 0  # masks written after the last given one
        self.later_nonempty = False

    def see(self, stem: str, labels: np.ndarray | None, given: bool) -> None:
        """Frame `stem`: `given` objects enter here; `labels` is its output (None when not written)."""
        if given:
            self.last_given, self.later, self.later_nonempty = stem, 0, False
        elif labels is not None:
            self.later += 1
            self.later_nonempty = self.later_nonempty or bool(labels.any())

    def warning(self, where: str) -> str | None:
        """The one-line warning when every later mask is empty; else None."""
        if self.later == 0 or self.later_nonempty:
            return None
        lost = f"every object vanished after frame {self.last_given}: all {self.later} later masks are empty"
        return f"warning: {where}: {lost}"


def given_labels(given: np.ndarray, ids: list[int], labels: np.ndarray, known: list[int]) -> np.ndarray:
    """The output of a frame where objects `ids` are given: exactly the given mask (void as background) where it
    names every object known so far (frame 0), else the prediction with the given objects pasted over it; so the
    given mask comes back unchanged whatever the processing resolution."""
    named = np.isin(given, ids)
    if set(known) <= set(ids):
        return np.where(named, given, 0).astype(np.uint8)
    return np.where(named, given, labels).astype(np.uint8)


def propagate(
    model: STCN,
    frames: FrameSource,
    masks: dict[str, np.ndarray],
    settings: InferenceSettings,
    write: Callable[[str, np.ndarray, np.ndarray], None],
    required: set[str] | None = None,
    where: str = "video",
    void: int | None = VOID,
) -> Timing:
    """Segment every frame; `masks` maps frame stems to given label maps (objects enter there).

    `void`: the mask value that is no object (DAVIS' 255); None when every id 1..255 is an object (masks S2M
    made from strokes, which may name object 255).

    `write(stem, labels, rgb)` receives uint8 labels at the frame's size for every required frame; a frame with a
    given mask gets that mask back (`given_labels`). A one-frame video is said to have nothing to propagate.
    """
    if not masks:
        raise UserError(f"{where}: no annotated first frame given")
    core_class, image_tensor, one_hot, labels_from_prob = host_code(model)
    core = core_class(model, settings)
    timing = Timing()
    watch = VanishWatch()
    size = None
    for (stem, load), is_last in _with_last(frames):
        rgb = load()
        size = check_frame_size(where, stem, rgb, size)
        given = masks.get(stem)
        ids = []
        if given is not None:
            if given.shape != rgb.shape[:2]:
                raise UserError(
                    f"{where}: mask of frame {stem} is {given.shape[1]}x{given.shape[0]} "
                    f"but the frame is {rgb.shape[1]}x{rgb.shape[0]}"
                )
            ids = object_ids(given, void)
            if not ids and not core.object_ids:
                hint = "; for object 255 use `--mask-255 object`" if void is not None and (given == void).any() else ""
                raise UserError(f"{where}: the mask of frame {stem} has no object (only background/void){hint}")
        _sync(settings.device)
        start = time.perf_counter()
        needed = required is None or stem in required
        prob = core.step(
            image_tensor(rgb, settings.resolution),
            one_hot(given, ids, settings.resolution) if ids else None,
            ids or None,
            is_last=is_last,
            need_output=needed,
        )
        labels = None
        if needed:
            if prob is None:
                labels = np.zeros(rgb.shape[:2], np.uint8)
            else:
                lut = np.array([0, *core.object_ids], np.uint8)
                labels = lut[labels_from_prob(prob, rgb.shape[:2])]
            if ids:
                labels = given_labels(given, ids, labels, core.object_ids)
        _sync(settings.device)
        timing.seconds += time.perf_counter() - start
        timing.frames += 1
        watch.see(stem, labels, given=bool(ids))
        if labels is not None:
            write(stem, labels, rgb)
    if timing.frames == 0:
        raise UserError(f"{where}: no frames")
    if timing.frames == 1:
        print(f"note: {where} has one frame: nothing to propagate (its mask is the given one)", file=sys.stderr,
              flush=True)  # fmt: skip
    if (message := watch.warning(where)) is not None:
        print(message, file=sys.stderr, flush=True)
    return timing
