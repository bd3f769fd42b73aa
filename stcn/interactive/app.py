"""`stcn app`: the interactive segmentation web page (Flask on Werkzeug's threaded server, local by default).

The page (stcn/interactive/static/: plain HTML, JavaScript and CSS, nothing from a CDN) calls a small
JSON API; every route answers at once: propagation and export run in the session's background
thread, and the page polls `/api/status` for their progress. A user error comes back as HTTP 400
with one line (`{"error": ...}`), which the page shows.
"""

from __future__ import annotations

from pathlib import Path

from stcn.errors import UserError

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

    @app.get("/api/masks.zip")
    def masks_zip():
        name, data = session.masks_zip()
        return Response(data, mimetype="application/zip",
                        headers={"Content-Disposition": f'attachment; filename="{name}"'})  # fmt: skip

    @app.get("/api/overlay.mp4")
    def overlay():
        path = session.exported.get("overlay")
        if not path or not Path(path).is_file():
            raise UserError("no overlay exported yet: press Export")
        return send_file(path, mimetype="video/mp4")

    return app
