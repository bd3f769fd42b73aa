"""`stcn segment`: propagate a first-frame mask through a folder of frames or a video file."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from stcn.atomic import atomic_folder
from stcn.cli.first_mask import LazyStrokes
from stcn.cli.options import (
    BACKEND,
    DEVICE,
    INCLUDE_LAST,
    MAX_MEMORY_FRAMES,
    MEM_EVERY,
    PRECISION,
    QUIET,
    RESOLUTION,
    TOP_K,
    WEIGHTS,
)
from stcn.data.images import VOID, read_mask
from stcn.errors import UserError
from stcn.inference.settings import InferenceSettings, check_precision, precision_said
from stcn.outputs import check_output
from stcn.progress import progress_bar


def segment(
    weights: Path = WEIGHTS,
    frames: Path = typer.Option(
        ..., help="Folder of frames (sorted by name) or a video file; batch mode: a folder of such videos."
    ),
    first_mask: Path | None = typer.Option(
        None,
        help="Palette/grey PNG of the first frame: 0 background, ids 1-254, 255 void (see --mask-255); "
        "batch mode: a folder of <video>.png or <video>/<first frame>.png, or where a mask is missing strokes "
        "<video>.strokes.png or <video>/<first frame>.strokes.png (as --first-scribble).",
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
    backend: str = BACKEND,
    quiet: bool = QUIET,
    first_scribble: Path | None = typer.Option(
        None,
        help="Instead of --first-mask: a PNG of strokes on the first frame (its size), turned into the mask by S2M: "
        "palette/grey (k = object k, 255 = background, 0 = none; 16-bit grey: k = 1..255, 256 = background) "
        "or RGB (green = the object, red = background).",
    ),
    s2m: Path | None = typer.Option(
        None, help="S2M weights for strokes (models/s2m/weights.pth or MiVOS's s2m.pth); default: seeded stand-in."
    ),
    mask_255: str = typer.Option(
        "void",
        "--mask-255",
        help="What 255 in a --first-mask PNG is: void (DAVIS: neither object nor background, ignored) or object "
        "(object id 255, for masks that use every id 1-255). Strokes always allow object 255.",
    ),
) -> None:
    """Segment the objects of the first-frame mask in every frame; writes 00000.png ... (frame 0 = the mask).

    With --first-scribble, S2M turns strokes on the first frame into that mask first.
    Batch mode (FIRST_MASK is a folder): every video of FRAMES into OUT/<video>/, one model load;
    complete videos are skipped, a failing video is reported and skipped (exit code 1 at the end).
    """
    from stcn.inference.ort_backend import backend_device, check_weights, load_backend
    from stcn.inference.overlap import read_ahead
    from stcn.inference.video import first_frame, frame_total, mask_writer, open_frames, propagate
    from stcn.model.trained import default_resolution

    # every input, output and option is checked before any model loads (a mistake is reported in a moment)
    device = backend_device(backend, device)
    if device is not None and precision != "auto":  # the options first (without --device: once it is picked)
        check_precision(precision, device)
    check_weights(weights, backend)
    void = mask_void(mask_255)
    if (first_mask is None) == (first_scribble is None):
        raise UserError("give one of --first-mask (a mask PNG or a batch folder) and --first-scribble (a strokes PNG)")
    if first_scribble is not None and first_scribble.is_dir():
        raise UserError(f"--first-scribble takes one PNG, not a folder ({first_scribble}); in batch mode put "
                        "<video>.strokes.png in the --first-mask folder")  # fmt: skip
    if first_scribble is not None and not first_scribble.is_file():
        raise UserError(f"strokes file not found: {first_scribble}")
    if s2m is not None and first_scribble is None and not first_mask.is_dir():
        raise UserError("--s2m is for strokes: use it with --first-scribble or a batch folder of strokes files")
    if s2m is not None and not s2m.is_file():
        raise UserError(f"S2M weights not found: {s2m}")
    inputs = {"--frames": frames, "--first-mask": first_mask, "--first-scribble": first_scribble,
              "--weights": weights, "--s2m": s2m}  # fmt: skip
    check_output(out, inputs)  # masks never over frames, masks or weights
    if overlay is not None:
        check_output(overlay, inputs, "--overlay")
    if first_mask is not None and first_mask.is_dir():
        from stcn.inference.batch import find_videos

        find_videos(frames)  # a missing or empty root
        resolution = default_resolution(weights, resolution)  # the trained weights' own (weights.json), said
        settings = InferenceSettings.from_knobs(locals())  # precision auto: the rung this device runs natively
        strokes = LazyStrokes(s2m, settings.device, say=Console(stderr=True, highlight=False).print)
        said = precision_said(precision, settings, backend)
        segment_batch(weights, frames, first_mask, out, settings, overlay, strokes, backend, void, said)
        return
    source = open_frames(frames)
    first, load_first = first_frame(frames, source)
    rgb = load_first()
    if first_mask is not None:
        mask = read_mask(first_mask)
        if mask.shape != rgb.shape[:2]:
            raise UserError(f"--first-mask {first_mask} is {mask.shape[1]}x{mask.shape[0]} but the first frame of "
                            f"{frames} is {rgb.shape[1]}x{rgb.shape[0]}")  # fmt: skip
    resolution = default_resolution(weights, resolution)  # the trained weights' own (weights.json), said
    settings = InferenceSettings.from_knobs(locals())  # precision auto: the rung this device runs natively
    if first_mask is None:
        mask = LazyStrokes(s2m, settings.device, say=Console(stderr=True, highlight=False).print)(first_scribble, rgb)
    model = load_backend(weights, backend, settings.device, settings.precision)
    preview = None
    if overlay is not None:
        from stcn.inference.overlay import OverlayWriter

        preview = OverlayWriter(overlay)

    total = frame_total(frames, source)
    with atomic_folder(out) as partial, progress_bar(f"segment {frames.name}", total, unit="frames") as bar:
        # `out` gets the masks only once every frame is done
        write = mask_writer(partial, preview, bar)
        try:
            void = void if first_mask is not None else None  # a mask made from strokes may hold object 255
            timing = propagate(model, read_ahead(source), {first: mask}, settings, write, where=str(frames), void=void)
        except BaseException:
            if preview is not None:
                preview.discard()  # no half-written preview either
            raise
        if preview is not None:
            preview.close()
    Console(stderr=True, soft_wrap=True).print(
        f"segmented {timing.frames} frames in {timing.seconds:.1f} s ({timing.fps:.2f} FPS, "
        f"{precision_said(precision, settings, backend)}) -> {out}"
    )


def mask_void(meaning: str) -> int | None:
    """`--mask-255`: void -> VOID (255 is no object), object -> None (255 is object 255); else one line."""
    if meaning not in ("void", "object"):
        raise UserError(f"--mask-255 must be void or object, not {meaning!r}")
    return VOID if meaning == "void" else None


def segment_batch(
    weights: Path,
    frames: Path,
    masks: Path,
    out: Path,
    settings: InferenceSettings,
    overlay: Path | None,
    strokes=None,
    backend: str = "torch",
    void: int | None = VOID,
    said: str = "",
) -> None:
    """Batch mode of `stcn segment`; exits 1 when any video failed (after finishing the others).
    `void`: the mask value that is no object (None: 255 is object 255); `said`: the precision line to print."""
    from stcn.inference.batch import find_videos, segment_videos
    from stcn.inference.ort_backend import load_backend

    find_videos(frames)  # a missing or empty root fails before the model is loaded
    if not masks.is_dir():
        raise UserError(f"first-mask folder not found: {masks}")
    model = load_backend(weights, backend, settings.device, settings.precision)
    outcomes = segment_videos(model, frames, masks, out, settings, overlay, strokes=strokes, void=void)
    if said:
        Console(stderr=True, soft_wrap=True).print(f"ran at {said}", highlight=False)
    failed = [o.name for o in outcomes if o.status == "failed"]
    if failed:
        Console(stderr=True, soft_wrap=True).print(
            f"{len(failed)} of {len(outcomes)} videos failed: {', '.join(failed)}"
        )
        raise typer.Exit(1)


def export(
    weights: Path = WEIGHTS,
    out: Path = typer.Option(..., help="Output folder: key_encoder/value_encoder/decoder.onnx and manifest.json."),
    fmt: str = typer.Option("onnx", "--format", help="Export format (onnx)."),
    quiet: bool = QUIET,
) -> None:
    """Export the key encoder, value encoder and decoder (BatchNorm folded; dynamic size and object count) for
    `stcn segment --backend onnxruntime`; the memory read-out runs in the host code."""
    if fmt != "onnx":
        raise UserError(f"unknown export format {fmt!r}; choose onnx")
    from stcn.model.onnx_format import check_checkpoint_path

    check_checkpoint_path(weights)
    check_output(out, {"--weights": weights})
    from stcn.inference.loading import load_model
    from stcn.model.export import export_onnx

    model = load_model(weights, "cpu")
    with atomic_folder(out) as partial:
        manifest = export_onnx(model, partial, weights)
    trained = manifest.get("trained_at")
    carried = f"; runs at --resolution {trained['resolution']} (weights.json)" if trained else ""
    Console(stderr=True, soft_wrap=True).print(
        f"exported {', '.join(manifest['graphs'])} (opset {manifest['opset']}{carried}) -> {out}"
    )


def register(app: typer.Typer) -> None:
    app.command()(segment)
    app.command()(export)
