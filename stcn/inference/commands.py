"""`stcn segment`: propagate a first-frame mask through a folder of frames or a video file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import typer
from rich.console import Console

from stcn.atomic import atomic_folder
from stcn.cli import QUIET
from stcn.data.folders import VIDEO_SUFFIXES, list_frames
from stcn.data.images import read_mask, write_mask
from stcn.errors import UserError
from stcn.inference.settings import InferenceSettings

# inference options shared by `stcn segment` and `stcn evaluate`; the defaults are InferenceSettings'
D = InferenceSettings
WEIGHTS = typer.Option(..., help="STCN checkpoint (official format).")
TOP_K = typer.Option(D.top_k, help="Memory entries kept per query pixel.")
MEM_EVERY = typer.Option(D.mem_every, help="Add a memory frame every N frames.")
INCLUDE_LAST = typer.Option(D.include_last, help="Keep the previous frame in a temporary memory slot.")
PRECISION = typer.Option(
    D.precision,
    help="fp32 (exact); fast (half-precision convolutions, fp32 memory read-out); bf16 (CPU) / fp16 (CUDA) throughout.",
)
MAX_MEMORY_FRAMES = typer.Option(D.max_memory_frames, help="Bound memory to frame 0 + the most recent frames.")
DEVICE = typer.Option(None, help="cpu or cuda (default: cuda when available).")
RESOLUTION = typer.Option(
    None, help="Process frames resized to this shorter side; outputs keep the input size (default: as given)."
)


def inference_settings(
    top_k: int,
    mem_every: int,
    include_last: bool,
    precision: str,
    max_memory_frames: int | None,
    device: str | None,
    resolution: int | None = None,
) -> InferenceSettings:
    """Settings from command-line values (InferenceSettings checks them, the precision rung included)."""
    from stcn.inference.settings import pick_device

    return InferenceSettings(top_k, mem_every, include_last, precision, max_memory_frames, pick_device(device),
                             resolution)  # fmt: skip


def segment(
    weights: Path = WEIGHTS,
    frames: Path = typer.Option(
        ..., help="Folder of frames (sorted by name) or a video file; batch mode: a folder of such videos."
    ),
    first_mask: Path = typer.Option(
        ...,
        help="Palette/grey PNG of the first frame: 0 background, ids, 255 void; "
        "batch mode: a folder of <video>.png or <video>/<first frame>.png.",
    ),
    out: Path = typer.Option(..., help="Output folder for palette PNGs (batch mode: one sub-folder per video)."),
    top_k: int = TOP_K,
    mem_every: int = MEM_EVERY,
    include_last: bool = INCLUDE_LAST,
    precision: str = PRECISION,
    max_memory_frames: int | None = MAX_MEMORY_FRAMES,
    device: str | None = DEVICE,
    resolution: int | None = RESOLUTION,
    overlay: Path | None = typer.Option(
        None, help="Also write an MP4 with the masks blended in (batch mode: a folder of <video>.mp4)."
    ),
    quiet: bool = QUIET,
) -> None:
    """Segment the objects of the first-frame mask in every frame; writes 00000.png ... (frame 0 = the mask).

    Batch mode (FIRST_MASK is a folder): every video of FRAMES into OUT/<video>/, one model load;
    complete videos are skipped, a failing video is reported and skipped (exit code 1 at the end).
    """
    from stcn.inference.loading import load_model
    from stcn.inference.overlap import read_ahead
    from stcn.inference.video import folder_frames, propagate, video_frames

    settings = inference_settings(top_k, mem_every, include_last, precision, max_memory_frames, device, resolution)
    if first_mask.is_dir():
        segment_batch(weights, frames, first_mask, out, settings, overlay)
        return
    if not frames.exists():
        raise UserError(f"frames not found: {frames}")
    is_video = frames.is_file() and frames.suffix.lower() in VIDEO_SUFFIXES
    if frames.is_file() and not is_video:
        raise UserError(f"--frames must be a folder of images or a video ({', '.join(sorted(VIDEO_SUFFIXES))})")
    source = video_frames(frames) if is_video else folder_frames(list_frames(frames))
    first = "00000" if is_video else source[0][0]
    mask = read_mask(first_mask)
    model = load_model(weights, settings.device)
    preview = None
    if overlay is not None:
        from stcn.inference.overlay import OverlayWriter

        preview = OverlayWriter(overlay)

    with atomic_folder(out) as partial:  # `out` gets the masks only once every frame is done

        def write(stem: str, labels: np.ndarray, rgb: np.ndarray) -> None:
            write_mask(partial / f"{stem}.png", labels)
            if preview is not None:
                preview.add(rgb, labels)

        try:
            timing = propagate(model, read_ahead(source), {first: mask}, settings, write, where=str(frames))
        except BaseException:
            if preview is not None:
                preview.discard()  # no half-written preview either
            raise
        if preview is not None:
            preview.close()
    Console(stderr=True, soft_wrap=True).print(
        f"segmented {timing.frames} frames in {timing.seconds:.1f} s ({timing.fps:.2f} FPS) -> {out}"
    )


def segment_batch(
    weights: Path, frames: Path, masks: Path, out: Path, settings: InferenceSettings, overlay: Path | None
) -> None:
    """Batch mode of `stcn segment`; exits 1 when any video failed (after finishing the others)."""
    from stcn.inference.batch import find_videos, segment_videos
    from stcn.inference.loading import load_model

    find_videos(frames)  # a missing or empty root fails before the model is loaded
    outcomes = segment_videos(load_model(weights, settings.device), frames, masks, out, settings, overlay)
    failed = [o.name for o in outcomes if o.status == "failed"]
    if failed:
        Console(stderr=True, soft_wrap=True).print(
            f"{len(failed)} of {len(outcomes)} videos failed: {', '.join(failed)}"
        )
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command()(segment)
