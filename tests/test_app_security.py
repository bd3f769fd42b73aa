"""`stcn app` acts for its own page only (#30): a page of another origin, a DNS-rebound Host name and a request
without the launch token change nothing; wrong JSON types, huge or mis-sized uploads and too many objects are
one-line 4xx errors, never an HTTP 500 or a traceback in the log.

Real servers: `stcn app` (the `app_server` fixture of test_app.py) and, for the attacker's page, Python's
http.server on another local port; the browser is Debian's chromium driven by Playwright (as in test_app.py).
"""

from __future__ import annotations

import base64
import http.client
import http.server
import json
import os
import shutil
import struct
import subprocess
import sys
import threading
import time
import zlib
from io import BytesIO

import numpy as np
import pytest
import test_app
from conftest import REPO
from PIL import Image
from test_app import Served, launch, make_session

from stcn.errors import UserError
from stcn.interactive.session import MAX_OBJECTS

pytestmark = pytest.mark.usefixtures("one_torch_thread")
app_server, nets = test_app.app_server, test_app.nets  # the fixtures of test_app.py


def send(app: Served, method: str, path: str, body: bytes = b"", headers: dict | None = None):
    """(status, JSON answer) of one raw request to the app (http.client: every header as given, Host included)."""
    host, port = app.url.split("/")[2].split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=60)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def api(app: Served, method: str, path: str, data: object = None, **headers: str):
    """A script's request: the token in the header, a JSON body."""
    body = b"" if data is None else json.dumps(data).encode()
    return send(app, method, path, body, {"X-STCN-Token": app.token, "Content-Type": "application/json", **headers})


def png(ids: np.ndarray) -> bytes:
    buf = BytesIO()
    Image.fromarray(ids.astype(np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def multipart(data: bytes) -> tuple[bytes, str]:
    """A form upload of `data` as the field `mask` (as the page's FormData sends it)."""
    boundary = "stcn-test-boundary"
    body = (f'--{boundary}\r\nContent-Disposition: form-data; name="mask"; filename="m.png"\r\n'
            f"Content-Type: image/png\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()  # fmt: skip
    return body, f"multipart/form-data; boundary={boundary}"


def zero_png(side: int, rows: int = 100) -> bytes:
    """A valid side x side grey PNG of zeros (about 1 KB per million pixels), built without holding its pixels:
    deflate blocks of `rows` rows ended by a full flush are identical, so one is repeated."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    c, block = zlib.compressobj(9), b"\0" * ((side + 1) * rows)
    first = c.compress(block) + c.flush(zlib.Z_FULL_FLUSH)  # the zlib header, then the block
    body = c.compress(block) + c.flush(zlib.Z_FULL_FLUSH)
    n = (side + 1) * side  # adler32 of n zero bytes: a = 1, b = n mod 65521
    stream = first + body * (side // rows - 1) + b"\x03\x00" + struct.pack(">I", ((n % 65521) << 16) | 1)
    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", stream) + chunk(b"IEND", b"")


def wait_idle(app: Served) -> dict:
    """The status once no job runs (an attack that got through may have started one)."""
    for _ in range(600):
        status = api(app, "GET", "/api/status")[1]
        if not status["job"] or status["job"]["state"] != "running":
            return status
        time.sleep(0.2)
    raise AssertionError("a job is still running")


def one_line_error(answer: dict) -> str:
    assert set(answer) == {"error"} and "\n" not in answer["error"] and answer["error"]
    return answer["error"]


def test_zero_png_is_a_valid_png():
    with Image.open(BytesIO(zero_png(300))) as im:
        assert im.size == (300, 300) and im.mode == "L" and im.getextrema() == (0, 0)


def test_foreign_host_is_refused_even_with_the_token(app_server):
    """DNS rebinding: the attacker's name resolves to 127.0.0.1; the Host header still names it."""
    port = app_server.url.split(":")[2].rstrip("/")
    for host in (f"attacker.example:{port}", "attacker.example", f"127.0.0.1.attacker.example:{port}"):
        for method, path in (("GET", "/"), ("GET", "/api/status"), ("GET", "/api/frame/0.jpg"), ("POST", "/api/open")):
            origin = {"Origin": f"http://{host}"} if method == "POST" else {}
            status, answer = api(app_server, method, path, {"sample": "blackswan"}, Host=host, **origin)
            assert status == 403 and one_line_error(answer).startswith(f"Host '{host}' is not this server")
    for host in (f"localhost:{port}", f"127.0.0.1:{port}", f"[::1]:{port}", "127.0.0.1:9999"):  # an ssh tunnel's port
        assert api(app_server, "GET", "/api/status", Host=host)[0] == 200
    assert api(app_server, "GET", "/api/status")[1]["video"] is None  # nothing was opened
    assert any("refused POST /api/open: Host 'attacker.example" in line for line in app_server.log)


def test_requests_without_the_launch_token_are_refused(app_server):
    app, same = app_server, {"Origin": app_server.url.rstrip("/")}
    cookie = f"stcn_x={app.token}"  # the right value under another name is no cookie of this launch
    for method, path, headers in (("GET", "/", {}), ("GET", "/api/status", {}), ("GET", "/static/app.js", {}),
                                  ("GET", "/?token=wrong", {}), ("GET", "/api/status", {"X-STCN-Token": "wrong"}),
                                  ("GET", "/api/status", {"Cookie": cookie}), ("POST", "/api/export", same),
                                  ("POST", "/api/open", {**same, "Cookie": cookie})):  # fmt: skip
        status, answer = send(app, method, path, b'{"sample": "blackswan"}', headers)
        assert status == 403 and "token" in one_line_error(answer), (method, path, headers)
    # the printed URL: its token sets the cookie and leaves the address bar
    connection = http.client.HTTPConnection(app.url.split("/")[2], timeout=30)
    connection.request("GET", f"/?token={app.token}")
    response = connection.getresponse()
    cookie = response.getheader("Set-Cookie")
    assert response.status == 302 and response.getheader("Location") == "/"
    assert f"={app.token};" in cookie and "HttpOnly" in cookie and "SameSite=Strict" in cookie
    cookie = cookie.split(";")[0]
    connection.close()
    assert send(app, "GET", "/api/status", headers={"Cookie": cookie})[0] == 200
    # a state change with the cookie but neither Origin nor Referer (not a browser) needs the token header
    body = b'{"sample": "blackswan"}'
    status, answer = send(app, "POST", "/api/open", body, {"Cookie": cookie, "Content-Type": "application/json"})
    assert status == 403 and "X-STCN-Token header" in one_line_error(answer)
    assert send(app, "GET", "/api/status", headers={"Cookie": cookie})[1]["video"] is None
    for headers in ({"Origin": app.url.rstrip("/")}, {"Referer": app.url + "?x=1"}, {"X-STCN-Token": app.token}):
        status, answer = send(app, "POST", "/api/open", body, {"Cookie": cookie, "Content-Type": "application/json",
                                                                **headers})  # fmt: skip
        assert status == 200 and answer["video"]["name"] == "blackswan", headers


ATTACK = """<!doctype html><html><body>
<iframe name="sink"></iframe>
<form id="form" method="post" action="APP/api/undo" target="sink" enctype="text/plain">
  <input name='{"sample": "blackswan", "x": "' value='"}'></form>
<script>
(async () => {
  const app = "APP";
  const mask = Uint8Array.from(atob("MASK"), (c) => c.charCodeAt(0));
  const form = new FormData();
  form.append("mask", new Blob([mask], { type: "image/png" }), "m.png");
  const tries = [["/api/export", undefined], ["/api/import/0", form], ["/api/propagate", undefined],
                 ["/api/open", JSON.stringify({ sample: "tennis-2-frames" })]];
  for (const [path, body] of tries) {
    try { await fetch(app + path, { method: "POST", mode: "no-cors", credentials: "include", body }); }
    catch (e) { document.body.append(String(e)); }
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
  document.querySelector("iframe").onload = () => { document.title = "done"; };
  document.getElementById("form").submit();
})();
</script></body></html>"""


def serve_attacker(page: str) -> tuple[http.server.HTTPServer, str]:
    """Another origin on this machine: an HTTP server on another local port serving `page` at /."""

    class Attacker(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            data = page.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Attacker)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_port}/"


def test_a_page_of_another_origin_changes_nothing(app_server):
    """The user opened the page (its cookie is in the browser), then visits a page of another port on 127.0.0.1:
    same site, so even the SameSite=Strict cookie goes along; the Origin check refuses every state change."""
    from playwright.sync_api import sync_playwright

    app = app_server
    ids = np.zeros((96, 171), np.uint8)
    ids[20:70, 40:120] = 7
    attack = ATTACK.replace("APP", app.url.rstrip("/")).replace("MASK", base64.b64encode(png(ids)).decode())
    attacker, attacker_url = serve_attacker(attack)
    with sync_playwright() as p:
        context, profile = launch(p)
        try:
            page = context.new_page()
            page.goto(app.page())
            page.wait_for_function("document.querySelectorAll('#sample option').length > 0")
            page.select_option("#sample", "blackswan")
            page.click("#open-sample")
            page.wait_for_function("document.getElementById('frame-label').textContent === 'frame 0 / 5'")
            before = wait_idle(app)
            evil = context.new_page()
            evil.goto(attacker_url)
            evil.wait_for_function("document.title === 'done'", timeout=60_000)
        finally:
            context.close()
            shutil.rmtree(profile, ignore_errors=True)
            attacker.shutdown()
    after = wait_idle(app)
    assert before["video"]["name"] == after["video"]["name"] == "blackswan"
    assert after == before and after["objects"] == [] and after["rounds"] == 0 and after["exported"] == {}
    assert not app.out.exists()  # no export was written
    refused = [line for line in app.log if f"cross-origin request from '{attacker_url.rstrip('/')}'" in line]
    paths = {line.split()[4].rstrip(":") for line in refused}
    assert paths == {"/api/export", "/api/import/0", "/api/propagate", "/api/open", "/api/undo"}, app.log


def test_a_dns_rebound_name_in_chromium_reaches_nothing(app_server):
    """Chromium resolves rebind.test to 127.0.0.1 (as after a DNS rebinding): the page at rebind.test:PORT is the
    attacker's origin, its same-origin requests reach the app with Host rebind.test:PORT and are refused."""
    from playwright.sync_api import sync_playwright

    app = app_server
    port = app.url.split(":")[2].rstrip("/")
    with sync_playwright() as p:
        context, profile = launch(p, "--host-resolver-rules=MAP rebind.test 127.0.0.1")
        try:
            page = context.new_page()
            response = page.goto(f"http://rebind.test:{port}/")
            assert response.status == 403 and "Host 'rebind.test" in response.text()
            answers = page.evaluate("""async () => {
                const open = await fetch("/api/open", { method: "POST", headers: { "Content-Type": "application/json" },
                                                         body: JSON.stringify({ sample: "blackswan" }) });
                const frame = await fetch("/api/frame/0.jpg");
                return [open.status, await open.text(), frame.status];
            }""")
        finally:
            context.close()
            shutil.rmtree(profile, ignore_errors=True)
    assert answers[0] == 403 and "Host 'rebind.test" in json.loads(answers[1])["error"] and answers[2] == 403
    assert api(app, "GET", "/api/status")[1]["video"] is None


def test_bad_requests_are_one_line_4xx_errors(app_server):
    """Wrong JSON types, a 30000x30000 PNG, a mask of another size, 255 objects, a body over the limit: each a 4xx
    with one line, nothing changed, no traceback in the log; the server still works afterwards."""
    app = app_server
    assert api(app, "POST", "/api/open", {"sample": "blackswan"})[0] == 200
    stroke = {"frame": 0, "object": 3, "positive": True, "points": [[0.5, 0.5]], "radius": 3}
    bad = [("/api/open", {"path": 5}, "'path' must be a string"), ("/api/open", {"sample": ["blackswan"]}, "string"),
           ("/api/open", [1, 2], "JSON object"), ("/api/stroke", {**stroke, "radius": "abc"}, "'radius' must be"),
           ("/api/stroke", {**stroke, "radius": [1]}, "'radius' must be"), ("/api/stroke", {**stroke, "radius": 1e300},
           "radius in (0, 100]"), ("/api/stroke", {**stroke, "points": 5}, "'points' must be a list"),
           ("/api/stroke", {**stroke, "points": [[0.5, 0.5]] * 10_001}, "at most 10000 points"),
           ("/api/stroke", {**stroke, "points": [["a", {}]]}, "[x, y] points"),
           ("/api/stroke", {**stroke, "positive": "false"}, "'positive' must be true or false"),
           ("/api/stroke", {**stroke, "object": 12.9}, "'object' must be a whole number"),
           ("/api/stroke", {**stroke, "object": "3"}, "'object' must be a whole number"),
           ("/api/stroke", {**stroke, "frame": "0"}, "'frame' must be a whole number"),
           ("/api/stroke", {**stroke, "frame": True}, "'frame' must be a whole number")]  # fmt: skip
    for path, data, message in bad:
        status, answer = api(app, "POST", path, data)
        assert status == 400 and message in one_line_error(answer), (path, data, answer)
    status, answer = send(app, "POST", "/api/stroke", b'{"radius": NaN, "frame": 0, "object": 1, "points": [[0, 0]]}',
                          {"X-STCN-Token": app.token, "Content-Type": "application/json"})  # fmt: skip
    assert status == 400 and "'radius' must be a finite number" in one_line_error(answer)

    too_many = np.arange(96 * 171).reshape(96, 171) % 256  # ids 0..255 at the shown size
    uploads = [(zero_png(30000), "Image size (900000000 pixels) exceeds limit"),
               (png(np.full((50, 400), 3)), "is 400x50, the video's frames are 854x480 (shown at 171x96)"),
               (png(too_many), f"at most {MAX_OBJECTS} objects"), (b"not a png", "cannot read")]  # fmt: skip
    for data, message in uploads:
        body, kind = multipart(data)
        status, answer = send(app, "POST", "/api/import/0", body, {"X-STCN-Token": app.token, "Content-Type": kind})
        assert status == 400 and message in one_line_error(answer), answer
    body, kind = multipart(b"\0" * (17 * 1024 * 1024))
    status, answer = send(app, "POST", "/api/import/0", body, {"X-STCN-Token": app.token, "Content-Type": kind})
    assert status == 413 and one_line_error(answer) == f"the request is larger than {16 * 1024 * 1024} bytes"
    status, answer = api(app, "GET", "/api/nowhere")
    assert status == 404 and one_line_error(answer).startswith("Not Found")

    status = api(app, "GET", "/api/status")[1]
    assert status["objects"] == [] and status["pending"] is None and status["job"] is None  # nothing changed
    assert api(app, "POST", "/api/stroke", stroke)[1]["objects"] == [3]  # the server still works
    assert not [line for line in app.log if "Traceback" in line or " failed: " in line], app.log


def test_objects_per_session_are_bounded(nets, tmp_path):
    """A mask import of ids 1..255 made 255 channels (GBs, minutes); now a session holds at most MAX_OBJECTS."""
    session = make_session(nets, tmp_path, frames=2)  # a short video: the accepted round propagates 20 objects
    w, h = session.video.size
    many = np.arange(w * h).reshape(h, w) % 256
    with pytest.raises(UserError, match=f"255 new objects .* at most {MAX_OBJECTS} objects"):
        session.import_mask(0, png(many))
    assert session.status()["objects"] == [] and session.job is None
    exactly = np.arange(w * h).reshape(h, w) % (MAX_OBJECTS + 1)  # ids 1..MAX_OBJECTS: accepted
    session.import_mask(0, png(exactly))
    assert session.wait()["job"]["state"] == "done" and session.status()["objects"] == list(range(1, MAX_OBJECTS + 1))
    with pytest.raises(UserError, match=f"1 new objects \\(ids 200\\) would make {MAX_OBJECTS + 1}"):
        session.stroke(1, 200, True, [[0.5, 0.5]])
    session.stroke(1, 5, True, [[0.5, 0.5]])  # an object the session holds: fine
    assert session.status()["objects"] == list(range(1, MAX_OBJECTS + 1))


def test_imported_mask_of_another_size_is_refused(nets, tmp_path):
    """400x50 onto a 854x480 video (shown at 171x96) was stretched; now refused like `stcn interact` refuses it.
    The input size and the shown size are both accepted."""
    session = make_session(nets, tmp_path, frames=2)
    with pytest.raises(UserError, match=r"imported mask is 400x50, the video's frames are 854x480 \(shown at 171x96\)"):
        session.import_mask(0, png(np.full((50, 400), 3)))
    assert session.status()["objects"] == [] and session.job is None
    for size in ((480, 854), (96, 171)):
        ids = np.zeros(size, np.uint8)
        ids[: size[0] // 2] = 4
        session.import_mask(1, png(ids))
        assert session.wait()["job"]["state"] == "done" and session.status()["objects"] == [4]
        assert (session.frame_ids(1)[:40] == 4).all() and not (session.frame_ids(1)[56:] == 4).any()


def test_help_states_the_bounds():
    env = {**os.environ, "COLUMNS": "200", "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-m", "stcn.cli", "app", "--help"], capture_output=True, text=True, env=env)
    text = " ".join(out.stdout.replace("│", " ").split())
    assert "?token=" in text and f"at most {MAX_OBJECTS} objects" in text and "--allow-host" in text, text
