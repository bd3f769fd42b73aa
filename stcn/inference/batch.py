"""`stcn segment` on many videos in one call: one model load, resume, a bad video does not stop the rest.

    ROOT/<video>/ (frames) or ROOT/<video>.mp4 ...   MASKS/<video>.png or MASKS/<video>/<first frame>.png

Where a video has no first-frame mask, strokes on its first frame may stand in for it:
MASKS/<video>.strokes.png or MASKS/<video>/<first frame>.strokes.png (the `--first-scribble` PNG
conventions, the first frame's size), turned into the mask by S2M. A mask wins over strokes.

Each video is written to `OUT/.<video>.partial/` and renamed to `OUT/<video>/` once every frame is
written, so a folder `OUT/<video>/` is always complete and is skipped when the command runs again.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np
from rich.console import Console
from rich.table import Table

from stcn.data.folders import FRAME_SUFFIXES, VIDEO_SUFFIXES
from stcn.data.images import VOID, object_ids, read_mask
from stcn.errors import UserError
from stcn.inference.settings import InferenceSettings
from stcn.outputs import check_distinct
from stcn.progress import progress_bar

if TYPE_CHECKING:
    from stcn.model.network import STCN

STROKES_SUFFIX = ".strokes.png"  # MASKS/<video>.strokes.png or MASKS/<video>/<first frame>.strokes.png


@dataclass
class Video:
    """One input video: a folder of frames or a video file, and where its first-frame mask should be."""

    name: str
    path: Path
    frames: int  # frame count (a video file's container count may be approximate)

    @property
    def is_file(self) -> bool:
        return self.path.is_file()


@dataclass
class Outcome:
    """What happened to one video: done, skipped (already complete) or failed (with the reason)."""

    name: str
    status: str
    frames: int = 0
    objects: int = 0
    seconds: float = 0.0
    error: str = ""

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds else float("nan")


def find_videos(root: Path) -> list[Video]:
    """Videos under ROOT in name order: sub-folders holding frames, and video files."""
    if not root.is_dir():
        raise UserError(f"frames root not found: {root}")
    videos = []
    for entry in sorted(root.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            count = sum(1 for p in entry.iterdir() if p.suffix.lower() in FRAME_SUFFIXES)
            videos.append(Video(entry.name, entry, count))
        elif entry.suffix.lower() in VIDEO_SUFFIXES:
            cap = cv2.VideoCapture(str(entry))
            count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) if cap.isOpened() else 0
            cap.release()
            videos.append(Video(entry.stem, entry, count))
    if not videos:
        raise UserError(f"no videos (sub-folders of frames or {', '.join(sorted(VIDEO_SUFFIXES))} files) in {root}")
    return videos


def first_mask(masks: Path, video: Video, first_stem: str, strokes: bool = False) -> tuple[Path, bool]:
    """MASKS/<video>.png, or MASKS/<video>/<first frame>.png (DAVIS Annotations layout); with `strokes`,
    else MASKS/<video>.strokes.png or MASKS/<video>/<first frame>.strokes.png. Returns (path, is_strokes)."""
    for path in (masks / f"{video.name}.png", masks / video.name / f"{first_stem}.png"):
        if path.is_file():
            return path, False
    tried = [f"{masks / video.name}.png", f"{masks / video.name / first_stem}.png"]
    if strokes:
        for path in (masks / f"{video.name}{STROKES_SUFFIX}", masks / video.name / f"{first_stem}{STROKES_SUFFIX}"):
            if path.is_file():
                return path, True
        tried += [f"{masks / video.name}{STROKES_SUFFIX}", f"{masks / video.name / first_stem}{STROKES_SUFFIX}"]
    raise UserError(f"no first-frame mask for {video.name}: expected {' or '.join(tried)}")


def segment_one(
    model: STCN,
    video: Video,
    masks: Path,
    out: Path,
    settings: InferenceSettings,
    overlay: Path | None,
    label: str,
    strokes: Callable[[Path, np.ndarray], np.ndarray] | None = None,
    void: int | None = VOID,
) -> Outcome:
    """Segment one video into OUT/.<name>.partial, then rename it to OUT/<name>; `strokes`: (PNG, first
    frame) -> mask, for a video with a strokes file instead of a mask; `void`: the value of a mask file that
    is no object (DAVIS' 255; None: 255 is object 255)."""
    from stcn.inference.overlap import BackgroundWriter, read_ahead
    from stcn.inference.video import first_frame, frame_source, mask_writer, propagate

    source = frame_source(video.path)
    first, load_first = first_frame(video.path, source)
    path, is_strokes = first_mask(masks, video, first, strokes is not None)
    mask = strokes(path, load_first()) if is_strokes else read_mask(path)
    void = None if is_strokes else void  # a mask S2M made from strokes may hold object 255
    partial = out / f".{video.name}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    preview = None
    if overlay is not None:
        from stcn.inference.overlay import OverlayWriter

        preview = OverlayWriter(overlay / f"{video.name}.mp4")
    try:
        with progress_bar(label, total=video.frames or None, unit="frames") as bar:
            partial.mkdir(parents=True)
            with BackgroundWriter(mask_writer(partial, preview, bar)) as writer:
                timing = propagate(model, read_ahead(source), {first: mask}, settings, writer, where=str(video.path),
                                   void=void)  # fmt: skip
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        if preview is not None:
            preview.discard()
        raise
    if preview is not None:
        preview.close()
    shutil.rmtree(out / video.name, ignore_errors=True)
    partial.rename(out / video.name)
    return Outcome(video.name, "done", timing.frames, len(object_ids(mask, void)), timing.seconds)


def segment_videos(
    model: STCN,
    root: Path,
    masks: Path,
    out: Path,
    settings: InferenceSettings,
    overlay: Path | None = None,
    console: Console | None = None,
    strokes: Callable[[Path, np.ndarray], np.ndarray] | None = None,
    void: int | None = VOID,
) -> list[Outcome]:
    """Segment every video of ROOT into OUT/<video>/; complete outputs are skipped, failures reported and skipped.
    `strokes`: (strokes PNG, first frame) -> mask, used where a video has strokes but no mask (None: masks only);
    `void`: the value of the mask files that is no object (None: 255 is object 255)."""
    console = console or Console(stderr=True, soft_wrap=True)
    if not masks.is_dir():
        raise UserError(f"first-mask folder not found: {masks}")
    videos = find_videos(root)
    check_distinct({str(v.path): out / v.name for v in videos}, "output folder")  # a.mp4 and a/: one OUT/a
    out.mkdir(parents=True, exist_ok=True)
    if overlay is not None:
        overlay.mkdir(parents=True, exist_ok=True)
    total = sum(v.frames for v in videos)
    done_frames = 0
    outcomes = []
    for i, video in enumerate(videos, 1):
        if (out / video.name).is_dir():
            outcomes.append(Outcome(video.name, "skipped (complete)", video.frames))
        else:
            label = f"[{i}/{len(videos)} videos, {done_frames}/{total} frames] {video.name}"
            try:
                outcomes.append(segment_one(model, video, masks, out, settings, overlay, label, strokes, void))
            except UserError as e:
                console.print(f"[red]error[/red]: {video.name}: {e}", highlight=False)
                outcomes.append(Outcome(video.name, "failed", error=str(e)))
        done_frames += video.frames
    console.print(summary_table(outcomes))
    return outcomes


def summary_table(outcomes: list[Outcome]) -> Table:
    """One row per video: status, frames, objects, FPS (compute only)."""
    table = Table(title="stcn segment")
    for column in ("video", "status", "frames", "objects", "FPS"):
        table.add_column(column, justify="left" if column in ("video", "status") else "right")
    for o in outcomes:
        ran = o.status == "done"
        status = f"failed: {o.error}" if o.status == "failed" else o.status
        table.add_row(o.name, status, str(o.frames), str(o.objects) if ran else "", f"{o.fps:.2f}" if ran else "")
    return table
