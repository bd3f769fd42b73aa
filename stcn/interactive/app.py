"""`stcn app`: the interactive segmentation web page (Flask on Werkzeug's threaded server, local by default).

The page (stcn/interactive/static/: plain HTML, JavaScript and CSS, nothing from a CDN) calls a small
JSON API; every route answers at once: propagation and export run in the session's background
thread, and the page polls `/api/status` for their progress. A user error comes back as HTTP 400
with one line (`{"error": ...}`), which the page shows.

No action on behalf of another origin (as trusted local servers such as Jupyter do), checked on every
request before any route runs (`guard`), each refusal a 403 with one line:
- Host allow-list: the Host header must name 127.0.0.1, localhost, ::1, the --host listened on or an
  --allow-host name (any port: an ssh tunnel may map it), so a DNS-rebound name reaches nothing.
- A per-launch token (`secrets.token_urlsafe`), printed in the URL at start (`/?token=...`): the first visit
  sets an HttpOnly, SameSite=Strict cookie and drops the token from the address bar; every request needs that
  cookie, or the token in the `X-STCN-Token` header (scripts, curl).
- Same origin for every state-changing request (anything but GET/HEAD): the Origin header, or the Referer where
  there is no Origin, must be this server as the Host header names it. A request with neither (not a browser:
  browsers send Origin on every POST) must carry the token in the header, not only the cookie.
Bounds: a request body of at most MAX_BODY bytes (a JSON body MAX_JSON), a stroke of at most MAX_POINTS points
and radius MAX_RADIUS, an imported mask of the video's size (checked from the PNG header, before decoding),
at most `session.MAX_OBJECTS` objects; wrong JSON types are a 400, and no request gives a traceback.
"""

from __future__ import annotations

import hashlib
import math
import secrets
import sys
from pathlib import Path
from urllib.parse import urlsplit

from stcn.errors import UserError

STATIC = Path(__file__).resolve().parent / "static"
LOOPBACK = ("127.0.0.1", "localhost", "::1")
TOKEN_HEADER = "X-STCN-Token"
MAX_BODY = 16 * 1024 * 1024  # an imported mask PNG
MAX_JSON = 1024 * 1024  # a JSON request (a stroke's points)
MAX_POINTS = 10_000  # points in one stroke
MAX_RADIUS = 100  # a stroke's radius in pixels (the page offers 1..50)


def quiet_handler():  # -> a werkzeug request handler class
    """Werkzeug's request handler without a console line per request (the page polls)."""
    from werkzeug.serving import WSGIRequestHandler

    class QuietHandler(WSGIRequestHandler):
        def log_request(self, *args, **kwargs) -> None:
            pass

    return QuietHandler


def new_token() -> str:
    """A per-launch secret for the page's URL."""
    return secrets.token_urlsafe(24)


def allowed_hosts(host: str, extra: list[str] | tuple[str, ...] = ()) -> set[str]:
    """The host names (lower case, no port, IPv6 without brackets) the Host header may name."""
    return {name.strip("[]").lower() for name in (*LOOPBACK, host, *extra) if name}


def split_host(value: str | None) -> tuple[str | None, int | None]:
    """(host name, port) of a Host header value or an origin URL's netloc; (None, None) when malformed."""
    try:
        parts = urlsplit(f"//{value}")
        return parts.hostname, parts.port
    except ValueError:
        return None, None


def page_url(host: str, port: int, token: str) -> str:
    """The URL printed at start: the page with this launch's token."""
    name = f"[{host}]" if ":" in host else host
    return f"http://{name}:{port}/?token={token}"


def typed(data: dict, key: str, kind: type, default: object = None) -> object:
    """data[key] if it has JSON type `kind` (int: a whole number; float: a finite number), else one line."""
    value = data.get(key)
    if value is None:
        return default
    if kind is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    else:
        ok = isinstance(value, kind) and (kind is bool or not isinstance(value, bool))
    if not ok:
        what = {int: "a whole number", float: "a finite number", bool: "true or false", str: "a string", list: "a list"}
        raise UserError(f"{key!r} must be {what[kind]}, not {str(value)[:40]!r}")
    return value


def create_app(session, token: str, hosts: set[str] | None = None):  # -> flask.Flask
    """The Flask application serving the page and the API of one `Session`, guarded by `token` and `hosts`.

    `hosts`: the allowed Host names (`allowed_hosts`; default: the loopback names)."""
    from flask import Flask, Response, jsonify, redirect, request, send_file
    from werkzeug.exceptions import HTTPException

    hosts = allowed_hosts("") if hosts is None else hosts
    app = Flask(__name__, static_folder=str(STATIC), static_url_path="/static")
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY

    def body() -> dict:
        if (request.content_length or 0) > MAX_JSON:
            raise UserError(f"a JSON request may hold at most {MAX_JSON} bytes")
        data = request.get_json(silent=True)
        if not isinstance(data, dict):
            raise UserError("the request needs a JSON object")
        return data

    def matches(given: object) -> bool:
        return isinstance(given, str) and secrets.compare_digest(given.encode(), token.encode())

    def refuse(reason: str):
        path = "".join(request.path.split())[:200]  # one log line whatever the URL holds
        print(f"stcn app: refused {request.method} {path}: {reason}", file=sys.stderr, flush=True)
        return jsonify(error=reason), 403

    cookie = f"stcn_{hashlib.sha256(token.encode()).hexdigest()[:12]}"  # one per launch: ports share cookies

    @app.before_request
    def guard():
        """Host allow-list, same origin for state changes, the launch token (module docstring)."""
        name, port = split_host(request.host)
        if name not in hosts:
            return refuse(f"Host {request.host[:100]!r} is not this server (allowed: {', '.join(sorted(hosts))})")
        header = request.headers.get(TOKEN_HEADER)
        if request.method not in ("GET", "HEAD"):
            origin = request.headers.get("Origin") or request.headers.get("Referer")
            if origin is None and not matches(header):
                return refuse(f"a request without Origin must carry the token in the {TOKEN_HEADER} header")
            parts = urlsplit(origin or "")
            if origin is not None and (parts.scheme, *split_host(parts.netloc)) != ("http", name, port):
                return refuse(f"cross-origin request from {origin[:100]!r}")
        query = request.args.get("token")
        if query is not None and request.method == "GET":
            if not matches(query):
                return refuse("wrong token in the URL: open the URL `stcn app` printed at start")
            response = redirect(request.path) if request.path == "/" else None  # the token leaves the address bar
            if response is not None:
                response.set_cookie(cookie, token, httponly=True, samesite="Strict")
            return response
        if not (matches(header) or matches(request.cookies.get(cookie))):
            return refuse("no token: open the URL `stcn app` printed at start (http://...:PORT/?token=...)")
        return None

    @app.errorhandler(UserError)
    def user_error(e: UserError):
        return jsonify(error=str(e)), 400

    @app.errorhandler(HTTPException)
    def http_error(e: HTTPException):
        text = f"the request is larger than {MAX_BODY} bytes" if e.code == 413 else f"{e.name}: {e.description}"
        return jsonify(error=" ".join(text.split())), e.code or 500

    @app.errorhandler(Exception)
    def failure(e: Exception):  # a bug: one line in the log and on the page, the server keeps running
        line = f"{request.method} {request.path} failed: {type(e).__name__}: {' '.join(str(e).split())}"
        print(f"stcn app: {line}", file=sys.stderr, flush=True)
        return jsonify(error=line), 500

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
        return jsonify(session.open(sample=typed(data, "sample", str), path=typed(data, "path", str)))

    @app.get("/api/frame/<int:t>.jpg")
    def frame(t: int):
        return Response(session.frame_jpeg(t), mimetype="image/jpeg")

    @app.get("/api/mask/<int:t>.png")
    def mask(t: int):
        return Response(session.mask_png(t), mimetype="image/png")

    @app.post("/api/stroke")
    def stroke():
        d = body()
        points, radius = typed(d, "points", list, []), typed(d, "radius", float, 3)
        if len(points) > MAX_POINTS or not 0 < radius <= MAX_RADIUS:
            raise UserError(f"a stroke has at most {MAX_POINTS} points and a radius in (0, {MAX_RADIUS}] pixels")
        return jsonify(session.stroke(typed(d, "frame", int), typed(d, "object", int),
                                      typed(d, "positive", bool, True), points, radius))  # fmt: skip

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
