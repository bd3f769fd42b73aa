"""`stcn app`: the interactive segmentation web page (Flask on Werkzeug's threaded server, local by default).

The page (stcn/interactive/static/: plain HTML, JavaScript and CSS, nothing from a CDN) calls a small
JSON API; every route answers at once: propagation and export run in the session's background
thread, and the page polls `/api/status` for their progress. A user error comes back as HTTP 400
with one line (`{"error": ...}`), which the page shows.
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from stcn.errors import UserError
from stcn.inference.commands import DEVICE, MAX_MEMORY_FRAMES, MEM_EVERY, TOP_K
from stcn.interactive.commands import FUSION, S2M, SEED

STATIC = Path(__file__).resolve().parent / "static"


def quiet_handler():  # -> a werkzeug request handler class
    """Werkzeug's request handler without a console line per request (the page polls)."""
    from werkzeug.serving import WSGIRequestHandler

    class QuietHandler(WSGIRequestHandler):
        def log_request(self, *args, **kwargs) -> None:
            pass

    return QuietHandler


def create_app(session):  # -> flask.Flask
    """The Flask application serving the page and the API of one `Session`."""
    from flask import Flask, Response, jsonify, request, send_file

    app = Flask(__name__, static_folder=str(STATIC), static_url_path="/static")
    app.config["MAX_CONTENT_LENGTH"] = 64 * 1024 * 1024  # an imported mask PNG

    def body() -> dict:
        data = request.get_json(silent=True)
        if not isinstance(data, dict):
            raise UserError("the request needs a JSON object")
        return data

    @app.errorhandler(UserError)
    def user_error(e: UserError):
        return jsonify(error=str(e)), 400

    @app.after_request
    def no_cache(response):
        response.headers["Cache-Control"] = "no-store"
        return response

    @app.get("/")
    def index():
        return send_file(STATIC / "index.html")

    @app.get("/api/samples")
    def samples():
        from stcn.interactive.session import bundled_samples

        return jsonify(samples=list(bundled_samples()), root=str(session.root))

    @app.get("/api/status")
    def status():
        return jsonify(session.status())

    @app.post("/api/open")
    def open_video():
        data = body()
        return jsonify(session.open(sample=data.get("sample"), path=data.get("path")))

    @app.get("/api/frame/<int:t>.jpg")
    def frame(t: int):
        return Response(session.frame_jpeg(t), mimetype="image/jpeg")

    @app.get("/api/mask/<int:t>.png")
    def mask(t: int):
        return Response(session.mask_png(t), mimetype="image/png")

    @app.post("/api/stroke")
    def stroke():
        d = body()
        return jsonify(session.stroke(d.get("frame"), d.get("object"), bool(d.get("positive", True)),
                                      d.get("points") or [], float(d.get("radius", 3))))  # fmt: skip

    @app.post("/api/import/<int:t>")
    def import_mask(t: int):
        upload = request.files.get("mask")
        if upload is None:
            raise UserError("no mask file in the upload")
        return jsonify(session.import_mask(t, upload.read()))

    for name in ("propagate", "cancel", "undo", "export"):
        app.add_url_rule(f"/api/{name}", name, lambda name=name: jsonify(getattr(session, name)()), methods=["POST"])

    @app.get("/api/overlay.mp4")
    def overlay():
        path = session.exported.get("overlay")
        if not path or not Path(path).is_file():
            raise UserError("no overlay exported yet: press Export")
        return send_file(path, mimetype="video/mp4")

    return app


def app_command(
    weights: Path = typer.Option(..., help="STCN checkpoint (official, or a weights.pth this pipeline trained)."),
    s2m: Path | None = S2M,
    fusion: Path | None = FUSION,
    seed: int = SEED,
    host: str = typer.Option("127.0.0.1", help="Address to listen on; anything but 127.0.0.1 opens it to others."),
    port: int = typer.Option(8050, help="Port (0: a free one)."),
    root: Path = typer.Option(Path("."), help="The page may open videos (mp4 or frame folders) under this folder."),
    out: Path = typer.Option(Path("stcn-app-out"), help="Exports go to OUT/<video>/masks/*.png and overlay.mp4."),
    max_frames: int | None = typer.Option(None, help="Open only the first N frames of a video."),
    resolution: int | None = typer.Option(
        480, help="Process and show frames at this shorter side (exported masks keep the input size); 0: as given."
    ),
    top_k: int = TOP_K,
    mem_every: int = MEM_EVERY,
    max_memory_frames: int | None = MAX_MEMORY_FRAMES,
    device: str | None = DEVICE,
) -> None:
    """Interactive segmentation in the browser: strokes -> masks -> propagation, rounds of corrections, export."""
    from werkzeug.serving import make_server

    from stcn.inference.loading import load_model
    from stcn.inference.settings import InferenceSettings
    from stcn.interactive.session import Session
    from stcn.interactive.weights import load_fusion, load_s2m

    if max_frames is not None and max_frames < 1:
        raise UserError("--max-frames must be at least 1")
    if not root.is_dir():
        raise UserError(f"--root {root} is not a folder")
    settings = InferenceSettings.from_knobs(
        {"top_k": top_k, "mem_every": mem_every, "max_memory_frames": max_memory_frames, "device": device,
         "resolution": resolution or None, "include_last": False, "precision": "fp32"}
    )  # fmt: skip
    models = (
        f"S2M: {s2m if s2m else f'seeded stand-in (seed {seed}), not trained: strokes give rough masks'}; "
        f"fusion: {fusion if fusion else f'seeded stand-in (seed {seed + 1})'}; STCN: {weights}"
    )
    session = Session(
        load_model(weights, settings.device),
        load_s2m(s2m, seed, settings.device),
        load_fusion(fusion, seed + 1, settings.device),
        settings, out, root, max_frames, models,
    )  # fmt: skip
    try:
        server = make_server(host, port, create_app(session), threaded=True, request_handler=quiet_handler())
    except OSError as e:
        raise UserError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    if host not in ("127.0.0.1", "localhost", "::1"):
        warning = f"warning: listening on {host}: anyone who can reach this port can use the page (no login)"
        print(warning, file=sys.stderr)
    print(f"models: {models}", file=sys.stderr)
    print(f"stcn app: http://{host}:{server.server_port}/  (Ctrl-C stops it)", file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


def register(app: typer.Typer) -> None:
    app.command("app")(app_command)
