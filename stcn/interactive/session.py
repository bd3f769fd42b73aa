"""One person's interactive session behind the web page (`stcn app`): a video, its objects, rounds, jobs.

The page talks to one `Session`. Strokes on a frame give that frame a *pending* mask at once (S2M on
the stroke, refining the frame's mask; the stroke's own pixels are kept as drawn); "propagate" makes
the pending mask a round (`InteractiveCore.apply_mask`: the frame joins the memory, the passes run,
fused with the previous round where another interacted frame bounds them). Propagation and export
run in a background thread (`Job`) with progress and cancel, so the page's other requests are
answered meanwhile. Undo drops the pending edit, else restores the state before the last round.

Memory: the session holds each frame once, as uint8 RGB at the processing size (normalised when a network
reads it), and each frame's probabilities as uint8 (K+1 channels, p * 255 rounded; fusion reads them back
as floats); the undo snapshot is one uint8 label map per frame. The memory bank of a propagation is bounded
by `--max-memory-frames`. So a frame costs about (3 + (K+1) + 1) bytes a pixel.

Object ids are the user's (1..255, as in palette PNGs); the core sees them as dense channels 1..K
(`ids[c - 1]` is channel c's id), so a single object with id 200 costs one channel, not 200. A session holds
at most MAX_OBJECTS objects (memory and propagation time grow with each), so one request (a stroke, a mask
import) costs at most a propagation of MAX_OBJECTS objects over the opened video.

What the page sends is checked and converted in `page_inputs.py`; the state's pieces (video, pending edit, undo
snapshot, job) are `session_state.py`'s.
"""

from __future__ import annotations

import io
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image

from stcn.data.images import write_mask
from stcn.errors import UserError
from stcn.inference.frames import image_tensor
from stcn.inference.settings import InferenceSettings
from stcn.interactive.core import InteractiveCore
from stcn.interactive.page_inputs import (
    BUNDLED,  # noqa: F401  (re-exported, as MAX_OBJECTS and check_object_id)
    MAX_ID,
    MAX_OBJECTS,
    bundled_samples,
    check_object_id,
    inside,
    palette_png,
    read_video,
    safe_name,
    stroke_pixels,
)
from stcn.interactive.s2m import prepare_s2m
from stcn.interactive.session_state import Cancelled, Job, Pending, Snapshot, Video
from stcn.outputs import claim_folder


class Session:
    """The page's state; every public method is safe to call from the web server's threads."""

    def __init__(
        self,
        stcn: torch.nn.Module,
        s2m: torch.nn.Module,
        fusion: torch.nn.Module,
        settings: InferenceSettings,
        out: Path,
        root: Path,
        max_frames: int | None = None,
        models: str = "",
        compact: bool = True,
    ):
        self.stcn, self.fusion, self.settings = stcn, fusion, settings
        self.s2m = prepare_s2m(s2m, settings.precision, settings.device)  # the precision rung applies to S2M
        self.out, self.root, self.max_frames, self.models = Path(out), Path(root), max_frames, models
        self.compact = compact  # False: normalised float frames and float probabilities (benchmarks' "before")
        self.lock = threading.RLock()
        self.video: Video | None = None
        self.core: InteractiveCore | None = None
        self.ids: list[int] = []
        self.pending: Pending | None = None
        self.undo_to: Snapshot | None = None
        self.rounds = 0
        self.job: Job | None = None
        self.exported: dict = {}

    # --- opening --------------------------------------------------------------------------------
    def open(self, sample: str | None = None, path: str | None = None) -> dict:
        """Open a bundled sample by name or a video / frame folder under the root; resets the session."""
        if sample:
            samples = bundled_samples()
            if sample not in samples:
                raise UserError(f"no bundled sample {sample!r} (have: {', '.join(samples)})")
            source, name = samples[sample], sample
        elif path:
            source = inside(self.root, path)
            name = source.stem if source.is_file() else source.name
        else:
            raise UserError("give a bundled sample or a path to open")
        name = safe_name(re.sub(r"[^A-Za-z0-9_.\-]", "_", name)[:100].lstrip("._-") or "video")
        stems, frames, full = read_video(source, self.max_frames, self.settings.resolution)
        size = (frames[0].shape[1], frames[0].shape[0])
        with self.lock:
            self._idle()
            self.video = Video(name, stems, frames, full, size, source.resolve())
            self.core = self._new_core(0)
            self.ids, self.pending, self.undo_to, self.rounds, self.job, self.exported = [], None, None, 0, None, {}
        return self.status()

    # --- reading --------------------------------------------------------------------------------
    def status(self) -> dict:
        """What the page shows: the video, objects, rounds, the job's progress."""
        with self.lock:
            v, job = self.video, self.job
            return {
                "video": None
                if v is None
                else {
                    "name": v.name,
                    "frames": len(v.stems),
                    "width": v.size[0],
                    "height": v.size[1],
                    "full": list(v.full),
                    "resolution": self.settings.resolution,  # the processing shorter side (None: as given)
                },  # fmt: skip
                "objects": list(self.ids),
                "pending": None if self.pending is None else self.pending.frame,
                "interacted": list(self.core.interacted) if self.core else [],
                "rounds": self.rounds,
                "can_undo": self.pending is not None or self.undo_to is not None,
                "job": None
                if job is None
                else {
                    "kind": job.kind,
                    "state": job.state,
                    "done": job.done,
                    "total": job.total,
                    "message": job.message,
                },  # fmt: skip
                "exported": self.exported,
                "models": self.models,
            }

    def frame_jpeg(self, t: int) -> bytes:
        """Frame t (processing size) as JPEG bytes."""
        video = self._video()
        rgb = video.frames[self._index(t)]
        ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])
        return buf.tobytes()

    def frame_ids(self, t: int) -> np.ndarray:
        """Frame t's labels in the user's ids (the pending edit where there is one)."""
        with self.lock:
            t = self._index(t)
            core, pending = self._core(), self.pending
            channels = pending.labels if pending is not None and pending.frame == t else core.frame_labels(t)
            return self._lut()[channels]

    def mask_png(self, t: int) -> bytes:
        """Frame t's mask as a palette PNG with a transparent background (for the overlay)."""
        return palette_png(self.frame_ids(t), transparent_background=True)

    # --- editing --------------------------------------------------------------------------------
    def stroke(self, frame: int, obj: int, positive: bool, points: list, radius: float = 3) -> dict:
        """A positive stroke (or click) for `obj`, or a negative (background) one, on `frame`: S2M at once."""
        obj = check_object_id(obj)
        if not isinstance(positive, bool):  # "false" is not positive
            raise UserError(f"positive must be true or false, got {positive!r}")
        with self.lock:
            self._idle()
            core, video, frame = self._core(), self._video(), self._index(frame)
            if self.pending is not None and self.pending.frame != frame:
                raise UserError(f"frame {self.pending.frame} has an edit: propagate it or undo it first")
            pixels = stroke_pixels(points, radius, video.size)
            if positive:
                self._add_ids([obj])  # a new object, on any frame (its channel joins the core with the round)
            channel = self.ids.index(obj) + 1 if positive else 0
            scribbles = np.full(pixels.shape, -1, np.int64)
            scribbles[pixels] = channel
            if self.pending is None:
                current, strokes = core.frame_labels(frame), np.full(pixels.shape, -1, np.int64)
            else:
                current, strokes = self.pending.labels, self.pending.strokes
            labels = core.mask_from_scribbles(frame, scribbles, current)
            if positive:  # a positive stroke only adds its object: what earlier strokes covered stays
                labels = np.where(labels == channel, channel, current).astype(np.uint8)
            strokes = np.where(pixels, scribbles, strokes)
            labels[strokes >= 0] = strokes[strokes >= 0]  # what the person drew is kept as drawn
            self.pending = Pending(frame, labels, strokes)
            return self.status()

    def import_mask(self, frame: int, data: bytes) -> dict:
        """A palette/grey PNG (ids 1..255 = objects) as frame's mask, then propagated (a round from a mask).

        The mask has the input frames' size or the size shown (checked from the PNG header, before decoding);
        another size is refused, as `stcn interact` refuses it, never stretched."""
        with self.lock:
            self._idle()
            video, frame = self._video(), self._index(frame)
            try:
                with Image.open(io.BytesIO(data)) as im:
                    if im.size not in (video.full, video.size):
                        (w, h), (fw, fh), (sw, sh) = im.size, video.full, video.size
                        raise UserError(f"imported mask is {w}x{h}, the video's frames are {fw}x{fh} (shown at "
                                        f"{sw}x{sh}): import a mask of either size")  # fmt: skip
                    if im.mode not in ("P", "L"):
                        raise UserError(f"imported mask is a {im.mode} image: use a palette or grey PNG of ids")
                    ids_img = np.asarray(im.resize(video.size, Image.NEAREST) if im.size != video.size else im)
            except (OSError, ValueError, Image.DecompressionBombError) as e:
                raise UserError(f"cannot read the imported mask: {e}") from None
            found = [int(v) for v in np.unique(ids_img) if v != 0]
            if not found:
                raise UserError("the imported mask holds no object (every pixel is 0)")
            self._add_ids(found)
            inverse = np.zeros(MAX_ID + 1, np.uint8)
            inverse[self.ids] = np.arange(1, len(self.ids) + 1)
            labels = inverse[ids_img]
            self.pending = Pending(frame, labels, np.full(labels.shape, -1, np.int64))
            return self.propagate()

    def propagate(self) -> dict:
        """Start propagating the pending edit in the background (a round)."""
        with self.lock:
            self._idle()
            core, pending = self._core(), self.pending
            if pending is None:
                raise UserError("nothing to propagate: draw on a frame or import a mask first")
            before = Snapshot(core.labels(), list(core.interacted), list(self.ids[: core.k]))  # ids the core holds
            job = Job("propagate", total=core.frames_to_propagate(pending.frame))  # known from the start

            def work() -> None:
                core.progress = lambda done, total: self._tick(job, done, total)
                try:
                    core.apply_mask(pending.frame, pending.labels, propagate=True)
                finally:
                    core.progress = None

            def finished(ok: bool) -> None:
                if ok:
                    self.pending, self.undo_to, self.rounds = None, before, self.rounds + 1
                    self.ids = self.ids[: core.k]  # an object whose strokes were all erased is gone
                else:  # the edit stays pending (with its new objects): propagate again or undo it
                    ids = list(self.ids)
                    self._restore(before)
                    self.ids = ids

            self._start(job, work, finished)
            return self.status()

    def cancel(self) -> dict:
        """Ask the running job to stop (propagation: the video returns to its state before the round)."""
        with self.lock:
            if self.job is None or self.job.state != "running":
                raise UserError("no job is running")
            self.job.cancel.set()
            return self.status()

    def undo(self) -> dict:
        """Drop the pending edit, else go back to the state before the last round (one level)."""
        with self.lock:
            self._idle()
            if self.pending is not None:
                self.pending, self.ids = None, self.ids[: self._core().k]  # objects only the edit named go too
            elif self.undo_to is not None:
                self._restore(self.undo_to)
                self.undo_to, self.rounds = None, self.rounds - 1
            else:
                raise UserError("nothing to undo")
            return self.status()

    def export(self) -> dict:
        """Write palette PNGs (input size) and overlay.mp4 (processing size) to OUT/<video>/ in the background."""
        from stcn.atomic import atomic_folder
        from stcn.inference.overlay import OverlayWriter

        with self.lock:
            self._idle()
            video, core = self._video(), self._core()
            labels = self._lut()[core.labels()]
            if self.pending is not None:
                labels[self.pending.frame] = self._lut()[self.pending.labels]
            # OUT/<name>, or OUT/<name>-2 ... when another video ("dog agility" and "dog_agility") has that folder
            target = claim_folder(self.out, video.name, str(video.source), {"the video": video.source})
            job = Job("export", total=len(video.stems))

            def work() -> None:
                overlay = OverlayWriter(target / "overlay.mp4")
                try:
                    with atomic_folder(target / "masks") as tmp:
                        for i, (stem, lab) in enumerate(zip(video.stems, labels, strict=True)):
                            full = np.asarray(Image.fromarray(lab).resize(video.full, Image.NEAREST))
                            write_mask(tmp / f"{stem}.png", full)
                            overlay.add(video.frames[i], lab)
                            self._tick(job, i + 1, len(video.stems))
                    overlay.close()
                except BaseException:
                    overlay.discard()
                    raise

            def finished(ok: bool) -> None:
                if ok:
                    self.exported = {"masks": str(target / "masks"), "overlay": str(target / "overlay.mp4"),
                                     "frames": len(video.stems)}  # fmt: skip

            self._start(job, work, finished)
            return self.status()

    def masks_zip(self) -> tuple[str, bytes]:
        """(file name, bytes) of a zip of every frame's mask as the page shows it (the pending edit included):
        <video>/<frame>.png, palette PNGs at the input size, as Export writes them."""
        import zipfile

        with self.lock:
            video, core = self._video(), self._core()
            lut, pending = self._lut(), self.pending
            labels = [lut[pending.labels] if pending is not None and pending.frame == t else lut[core.frame_labels(t)]
                      for t in range(len(video.stems))]  # fmt: skip
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as archive:  # PNGs are compressed already
            for stem, lab in zip(video.stems, labels, strict=True):
                full = np.asarray(Image.fromarray(lab).resize(video.full, Image.NEAREST))
                archive.writestr(f"{video.name}/{stem}.png", palette_png(full))
        return f"{video.name}-masks.zip", buf.getvalue()

    def wait(self, timeout: float = 600) -> dict:
        """Wait for the running job (tests, benchmarks); returns the status."""
        job = self.job
        if job is not None and job.thread is not None:
            job.thread.join(timeout)
        return self.status()

    # --- helpers --------------------------------------------------------------------------------
    def _start(self, job: Job, work: Callable[[], None], finished: Callable[[bool], None]) -> None:
        def run() -> None:
            ok = False
            try:
                work()
                ok = True
            except Cancelled:
                state, message = "cancelled", f"{job.kind} cancelled"
            except UserError as e:
                state, message = "failed", str(e)
            except Exception as e:  # noqa: BLE001 - shown on the page as one line, the server keeps running
                state, message = "failed", f"{job.kind} failed: {type(e).__name__}: {' '.join(str(e).split())}"
            with self.lock:
                finished(ok)
                if ok:
                    state, message = "done", f"{job.kind} done in {time.monotonic() - job.started:.1f} s"
                job.state, job.message = state, message

        self.job = job
        job.thread = threading.Thread(target=run, name=f"stcn-app-{job.kind}", daemon=True)
        job.thread.start()

    @staticmethod
    def _tick(job: Job, done: int, total: int) -> None:
        job.done, job.total = done, total
        if job.cancel.is_set():
            raise Cancelled

    def _restore(self, snap: Snapshot) -> None:
        """Rebuild the core from a snapshot (hard masks; the interacted frames re-encoded into memory)."""
        self.ids = list(snap.ids)
        core_new = self._new_core(len(snap.ids), snap.labels)
        core_new.load_interacted(snap.interacted)
        self.core = core_new

    def _new_core(self, objects: int, previous: np.ndarray | None = None) -> InteractiveCore:
        """A core on the open video's uint8 frames (shared, normalised when used), probabilities held as uint8."""
        frames = self._video().frames
        if not self.compact:
            frames = torch.stack([image_tensor(f) for f in frames])
        return InteractiveCore(self.stcn, self.s2m, self.fusion, frames, objects, self.settings, schedule=None,
                               previous=previous, compact=self.compact)  # fmt: skip

    def _add_ids(self, ids: list[int]) -> None:
        """Add the new ones of `ids` to the session's objects; at most MAX_OBJECTS in all (nothing added else)."""
        new = [i for i in dict.fromkeys(ids) if i not in self.ids]
        if len(self.ids) + len(new) > MAX_OBJECTS:
            shown = ", ".join(map(str, new[:5])) + (", ..." if len(new) > 5 else "")
            raise UserError(f"{len(new)} new objects (ids {shown}) would make {len(self.ids) + len(new)}: "
                            f"a session holds at most {MAX_OBJECTS} objects")  # fmt: skip
        self.ids.extend(new)

    def _idle(self) -> None:
        if self.job is not None and self.job.state == "running":
            raise UserError(f"busy: {self.job.kind} is running (wait for it or cancel it)")

    def _video(self) -> Video:
        if self.video is None:
            raise UserError("no video open: pick a bundled sample or a path first")
        return self.video

    def _core(self) -> InteractiveCore:
        self._video()
        assert self.core is not None
        return self.core

    def _index(self, t: object) -> int:
        n = len(self._video().stems)
        if not isinstance(t, (int, np.integer)) or isinstance(t, bool):  # 1.9 is not frame 1
            raise UserError(f"frame {t!r} is not a whole number")
        t = int(t)
        if not 0 <= t < n:
            raise UserError(f"frame {t} is outside 0..{n - 1}")
        return t

    def _lut(self) -> np.ndarray:
        lut = np.zeros(len(self.ids) + 1, np.uint8)
        lut[1:] = self.ids
        return lut
