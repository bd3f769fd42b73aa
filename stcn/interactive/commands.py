"""`stcn interact` (scribbles -> masks for a whole video, round after round) and `stcn evaluate-interactive`."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

import numpy as np
import typer
from rich.console import Console

from stcn.atomic import atomic_folder
from stcn.cli.options import DEVICE, MAX_MEMORY_FRAMES, MEM_EVERY, RESOLUTION, TOP_K
from stcn.errors import UserError
from stcn.interactive.state import (
    MAX_OBJECTS,
    STATE,
    first_frame_digest,
    read_state,
    round_mask,
    round_state,
    write_state,
)
from stcn.outputs import check_output

S2M = typer.Option(None, help="s2m.pth (MiVOS); default: seeded stand-in weights (not a trained model).")
FUSION = typer.Option(
    None, help="fusion_stcn.pth (MiVOS); default: linear fusion (rounds blended by distance to their frames)."
)
SEED = typer.Option(0, help="Seed of the stand-in S2M weights.")


def _frames(path: Path) -> tuple[list[str], list[np.ndarray]]:
    """The stems and RGB frames of --frames (a folder of frames or a video file), all read."""
    from stcn.inference.video import open_frames

    stems, rgbs = [], []
    for stem, load in open_frames(path):
        stems.append(stem)
        rgbs.append(load())
    return stems, rgbs


def _frame_index(frame: str | None, stems: list[str]) -> int:
    if frame is None:
        raise UserError("--frame is needed with a PNG scribble (the frame's index or file stem)")
    if frame in stems:
        return stems.index(frame)
    if frame.isdigit() and int(frame) < len(stems):
        return int(frame)
    raise UserError(f"--frame {frame!r} is neither a frame name nor an index below {len(stems)}")


def interact(
    weights: Path = typer.Option(..., help="STCN checkpoint (official format)."),
    frames: Path = typer.Option(..., help="Folder of frames (sorted by name) or a video file."),
    scribbles: Path = typer.Option(
        ...,
        help="DAVIS scribble JSON, or a PNG of strokes: palette/grey (k = object k, 255 = background, 0 = none; "
        "16-bit grey: k = 1..255, 256 = background) or RGB (green = the object, red = background).",
    ),
    out: Path = typer.Option(..., help="Output folder of palette PNGs; run again with it for another round."),
    frame: str | None = typer.Option(None, help="Frame the PNG strokes are drawn on (index or file stem)."),
    s2m: Path | None = S2M,
    fusion: Path | None = FUSION,
    seed: int = SEED,
    propagate: bool = typer.Option(True, help="Propagate through the video (else refine only this frame)."),
    top_k: int = TOP_K,
    mem_every: int = MEM_EVERY,
    max_memory_frames: int | None = MAX_MEMORY_FRAMES,
    device: str | None = DEVICE,
    resolution: int | None = RESOLUTION,
) -> None:
    """Turn scribbles on a frame into masks for the whole video (S2M, STCN propagation, fusion with the last round)."""
    from PIL import Image

    from stcn.data.images import write_mask
    from stcn.inference.frames import target_size
    from stcn.inference.loading import load_model
    from stcn.inference.settings import InferenceSettings
    from stcn.interactive.core import InteractiveCore
    from stcn.interactive.scribbles import scribbles_from_json, scribbles_from_png, stroke_ids, to_channels
    from stcn.interactive.weights import announce_stand_ins, load_fusion, load_s2m
    from stcn.model.onnx_format import check_checkpoint_path
    from stcn.model.trained import default_resolution
    from stcn.progress import progress_bar

    # inputs and the output are checked before any model loads
    check_checkpoint_path(weights)
    if not scribbles.is_file():
        raise UserError(f"scribble file not found: {scribbles}")
    for option, path in (("--s2m", s2m), ("--fusion", fusion)):
        if path is not None and not path.is_file():
            raise UserError(f"{option} weights not found: {path}")
    check_output(out, {"--frames": frames, "--scribbles": scribbles, "--weights": weights, "--s2m": s2m,
                       "--fusion": fusion})  # fmt: skip
    resolution = default_resolution(weights, resolution)  # the trained weights' own (weights.json), said
    settings = InferenceSettings.from_knobs(locals())
    stems, rgbs = _frames(frames)
    full = (rgbs[0].shape[1], rgbs[0].shape[0])
    size = target_size(full, resolution)
    if scribbles.suffix.lower() == ".json":
        rounds = scribbles_from_json(scribbles, len(stems), size)
    else:
        rounds = {_frame_index(frame, stems): scribbles_from_png(scribbles, size, full)}
    digest = first_frame_digest(rgbs[0])
    state = read_state(out / STATE, stems, full, digest)
    named = sorted({i for m in rounds.values() for i in stroke_ids(m)})
    if named and named[-1] > MAX_OBJECTS:
        raise UserError(f"the scribbles in {scribbles} name object {named[-1]}; at most {MAX_OBJECTS} objects")
    ids = state["ids"] + [i for i in named if i not in state["ids"]]  # channel c is object ids[c - 1]
    if not ids:
        raise UserError(f"the scribbles in {scribbles} name no object (only background strokes)")
    channel_of = np.zeros(256, np.uint8)
    channel_of[ids] = np.arange(1, len(ids) + 1)
    previous = None
    if state["rounds"]:
        masks = [out / f"{s}.png" for s in stems]
        if not all(m.is_file() for m in masks):
            raise UserError(f"{out} holds an earlier round of another video (missing {masks[0].name}...)")
        channels = (Image.fromarray(channel_of[round_mask(m, state["ids"])]) for m in masks)
        previous = np.stack([np.asarray(c.resize(size, Image.NEAREST)) for c in channels])  # one frame at a time
    rounds = {t: to_channels(m, ids) for t, m in rounds.items()}
    images = [np.array(Image.fromarray(r).resize(size, Image.BICUBIC)) for r in rgbs]  # normalised when used
    stcn = load_model(weights, settings.device)
    announce_stand_ins(s2m, fusion)
    core = InteractiveCore(
        stcn, load_s2m(s2m, seed, settings.device), load_fusion(fusion, settings.device),
        images, len(ids), settings, schedule=None, previous=previous,
    )  # fmt: skip
    core.load_interacted(state["interacted"])
    with progress_bar(f"interact {frames.name}", total=None, unit="frames") as bar:  # as `stcn segment` shows it
        core.progress = lambda done, total: bar.update(done, total=total)
        for t, scribble_map in sorted(rounds.items()):
            labels = core.interact(t, scribble_map, propagate=propagate)
    state = round_state(ids, core.interacted, state["rounds"] + len(rounds), stems, full, digest)
    id_of = np.array([0, *ids], np.uint8)
    with atomic_folder(out) as tmp:  # the round's masks are encoded aside, then renamed in; the state file last
        for stem, lab in zip(stems, labels, strict=True):
            write_mask(tmp / f"{stem}.png", np.asarray(Image.fromarray(id_of[lab]).resize(full, Image.NEAREST)))
        write_state(tmp / STATE, state)
    Console(stderr=True, soft_wrap=True).print(
        f"round {state['rounds']}: {len(stems)} frames, object(s) {ids}, interacted {core.interacted} -> {out}"
    )


def evaluate_interactive(
    weights: Path = typer.Option(..., help="STCN checkpoint (official format)."),
    davis_root: Path = typer.Option(..., help="DAVIS 2017 trainval root (JPEGImages/480p, Annotations/480p)."),
    out: Path = typer.Option(..., help="Output folder: evaluation.json, per_sequence.csv, report.csv, report.md."),
    split: str = typer.Option("val", help="ImageSets/2017/<split>.txt"),
    s2m: Path | None = S2M,
    fusion: Path | None = FUSION,
    seed: int = SEED,
    max_interactions: int = typer.Option(8, help="Interactions per sequence (benchmark: 8)."),
    max_time: float = typer.Option(240, help="Seconds per object per sequence (benchmark: 8 x 30)."),
    top_k: int = TOP_K,
    mem_every: int = MEM_EVERY,
    max_memory_frames: int | None = MAX_MEMORY_FRAMES,
    device: str | None = DEVICE,
    resolution: int | None = RESOLUTION,
) -> None:
    """DAVIS interactive benchmark (AUC-J&F, J&F@60s) through the davisinteractive package's local session."""
    from stcn.inference.settings import InferenceSettings
    from stcn.interactive.evaluate import evaluate_interactive as run
    from stcn.model.trained import default_resolution

    resolution = default_resolution(weights, resolution)  # the weights' own (weights.json), said
    settings = InferenceSettings.from_knobs(locals())
    data = run(weights, s2m, fusion, seed, davis_root, split, out, settings, max_interactions, max_time)
    Console(stderr=True, soft_wrap=True).print(f"DAVIS interactive: {data['overall']} -> {out}")


def app_command(
    weights: Path = typer.Option(..., help="STCN checkpoint (official, or a weights.pth this pipeline trained)."),
    s2m: Path | None = S2M,
    fusion: Path | None = FUSION,
    seed: int = SEED,
    host: str = typer.Option("127.0.0.1", help="Address to listen on; anything but 127.0.0.1 opens it to others."),
    allow_host: list[str] = typer.Option(
        [],
        help="Another name the browser may reach the page by (the Host header; default: 127.0.0.1, localhost, "
        "::1 and --host). Repeatable.",
    ),
    port: int = typer.Option(8050, help="Port (0: a free one)."),
    root: Path = typer.Option(Path("."), help="The page may open videos (mp4 or frame folders) under this folder."),
    out: Path = typer.Option(Path("stcn-app-out"), help="Exports go to OUT/<video>/masks/*.png and overlay.mp4."),
    max_frames: int | None = typer.Option(None, help="Open only the first N frames of a video."),
    resolution: int | None = typer.Option(
        None,
        help="Process and show frames at this shorter side (exported masks keep the input size); default: the "
        "weights' own (weights.json beside them, written by stcn train), else 480; 0: as given.",
    ),
    top_k: int = TOP_K,
    mem_every: int = MEM_EVERY,
    max_memory_frames: int | None = MAX_MEMORY_FRAMES,
    device: str | None = DEVICE,
    precision: str = typer.Option(
        "auto",
        help="S2M's precision (strokes -> mask): fp32 (exact); fast (layers 2-4 and the head in half precision: bf16 "
        "on CPU, fp16 on CUDA); bf16 / fp16 (every layer); auto: fast on CUDA and on CPUs with AMX / AVX512-BF16, "
        "else fp32 (said in one line). Propagation stays fp32.",
    ),
) -> None:
    """Interactive segmentation in the browser: strokes -> masks -> propagation, rounds of corrections, export.

    Open the URL printed at start: it holds this launch's token (http://127.0.0.1:8050/?token=...). The page
    answers only its own origin and allowed Host names; a session holds at most 20 objects (ids 1..255)."""
    from werkzeug.serving import make_server

    from stcn.atomic import check_output_folder
    from stcn.model.onnx_format import check_checkpoint_path

    # inputs, the output folder and the port first: a mistake is reported before any model loads
    if max_frames is not None and max_frames < 1:
        raise UserError("--max-frames must be at least 1")
    if not root.is_dir():
        raise UserError(f"--root {root} is not a folder")
    check_checkpoint_path(weights)
    for option, path in (("--s2m", s2m), ("--fusion", fusion)):
        if path is not None and not path.is_file():
            raise UserError(f"{option} weights not found: {path}")
    check_output_folder(out)
    listening = _listen(host, port)  # our own socket: werkzeug would print and exit on a port in use
    # the app is attached once the models are loaded; requests wait in the socket's queue meanwhile
    server = make_server(host, port, _not_ready, threaded=True, request_handler=_quiet_handler(),
                         fd=listening.fileno())  # fmt: skip
    listening.close()  # the server holds its own duplicate of the socket
    try:
        _serve(server, weights, s2m, fusion, seed, host, allow_host, root, out, max_frames, resolution, top_k,
               mem_every, max_memory_frames, device, precision)  # fmt: skip
    finally:
        server.server_close()


def _listen(host: str, port: int):
    """A socket listening on host:port, or a one-line UserError (a port in use, an unknown address)."""
    import socket

    try:
        info = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(info[0], socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(info[4])
        sock.listen(128)
    except OSError as e:
        raise UserError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    return sock


def _quiet_handler():
    from stcn.interactive.app import quiet_handler

    return quiet_handler()


def _not_ready(environ, start_response):  # never called: the server serves only once the real app is attached
    start_response("503 Service Unavailable", [("Content-Type", "text/plain")])
    return [b"loading the models"]


def _serve(server, weights, s2m, fusion, seed, host, allow_host, root, out, max_frames, resolution, top_k,
           mem_every, max_memory_frames, device, precision) -> None:  # fmt: skip
    """Load the models (resolution and precision said in one line each), attach the page to `server`, serve."""
    from stcn.inference.loading import load_model
    from stcn.inference.settings import InferenceSettings, choose_precision, pick_device
    from stcn.interactive.app import allowed_hosts, create_app, new_token, page_url
    from stcn.interactive.session import Session
    from stcn.interactive.weights import describe_fusion, load_fusion, load_s2m
    from stcn.model.trained import default_resolution

    resolution = default_resolution(weights, resolution, fallback=480)  # the weights' own, else the page's 480
    device = pick_device(device)
    precision = choose_precision(precision, device, say=True)  # S2M's rung, said in one line
    settings = InferenceSettings.from_knobs(
        {"top_k": top_k, "mem_every": mem_every, "max_memory_frames": max_memory_frames, "device": device,
         "resolution": resolution or None, "include_last": False, "precision": precision}
    )  # fmt: skip
    shown = f"{settings.resolution}p" if settings.resolution else "the frames' own size"
    models = (
        f"S2M: {s2m if s2m else f'seeded stand-in (seed {seed}), not trained: strokes give rough masks'}; "
        f"fusion: {describe_fusion(fusion)}; STCN: {weights}; "
        f"S2M precision: {settings.precision}; processing at {shown}"
    )
    session = Session(
        load_model(weights, settings.device),
        load_s2m(s2m, seed, settings.device),
        load_fusion(fusion, settings.device),
        settings, out, root, max_frames, models,
    )  # fmt: skip
    token = new_token()
    server.app = create_app(session, token, allowed_hosts(host, allow_host))
    if host not in ("127.0.0.1", "localhost", "::1"):
        warning = f"warning: listening on {host}: whoever can reach this port and sees the URL's token can use the page"
        print(warning, file=sys.stderr)
    print(f"models: {models}", file=sys.stderr)
    print(f"stcn app: {page_url(host, server.port, token)}  (Ctrl-C stops it)", file=sys.stderr, flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()


def register(app: typer.Typer) -> None:
    app.command("app")(app_command)
    app.command()(interact)
    app.command("evaluate-interactive")(evaluate_interactive)
