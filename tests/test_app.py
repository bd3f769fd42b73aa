"""`stcn app`: the round-from-a-mask API, the page's session, and the page itself in a real headless browser.

The browser is Debian's `chromium` (apt-get install chromium) driven by Playwright for Python, launched by
executable path (no browser download). The video is the bundled blackswan sample, 6 frames at 96p.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import urllib.request
import zipfile
from io import BytesIO
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np
import pytest
import torch
from clihelp import one_error, stcn
from conftest import DAVIS, REPO, seeded_state_dict
from PIL import Image

from stcn.data.images import read_mask
from stcn.errors import UserError
from stcn.inference.frames import image_tensor, pad_to_16
from stcn.inference.settings import InferenceSettings
from stcn.interactive.core import InteractiveCore
from stcn.interactive.s2m import dtype_of, prepare_s2m
from stcn.interactive.session import Session, check_object_id
from stcn.interactive.weights import load_fusion, load_s2m
from stcn.model import STCN, load_weights
from stcn.model.fold import count_batchnorm

pytestmark = pytest.mark.usefixtures("one_torch_thread")
CHROMIUM = Path("/usr/bin/chromium")
SIZE = (214, 120)  # (W, H): blackswan at a quarter of 854x480 (not a multiple of 16: padding is exercised)


def blackswan(n: int) -> tuple[torch.Tensor, np.ndarray]:
    """n real blackswan frames (normalised) and their ground truth, at SIZE."""
    images, masks = [], []
    for t in range(n):
        rgb = Image.open(DAVIS / f"JPEGImages/480p/blackswan/{t:05d}.jpg").convert("RGB").resize(SIZE, Image.BICUBIC)
        images.append(image_tensor(np.array(rgb)))
        masks.append(np.asarray(Image.fromarray(read_mask(DAVIS / f"Annotations/480p/blackswan/{t:05d}.png")).resize(
            SIZE, Image.NEAREST)))  # fmt: skip
    return torch.stack(images), np.stack(masks)


class CountingFusion(torch.nn.Module):
    """A fusion (here the default, linear), recording the frames it fuses (through nc, nr)."""

    def __init__(self, fusion):
        super().__init__()
        self.inner, self.calls = fusion, []

    def fuse(self, image, previous, current, attention, nc, nr):
        self.calls.append((nc, nr))
        return self.inner.fuse(image, previous, current, attention, nc, nr)


@pytest.fixture(scope="module")
def nets(official_entries):
    stcn = load_weights(STCN(), seeded_state_dict(official_entries)).eval()
    return stcn, load_s2m(None, 0), CountingFusion(load_fusion(None))


def test_round_from_a_full_mask_propagates_and_adds_objects(nets):
    stcn, s2m, fusion = nets
    images, gt = blackswan(6)
    core = InteractiveCore(stcn, s2m, fusion, images, 0, schedule=None)  # no object yet: they come with masks
    fusion.calls.clear()
    labels = core.apply_mask(0, gt[0])
    assert core.k == 1 and core.interacted == [0]
    assert np.array_equal(labels[0], gt[0])  # the given mask is the frame's mask, exactly
    assert all(labels[t].any() for t in range(1, 6))  # propagated to every other frame
    assert fusion.calls == []  # nothing earlier to fuse with
    before = labels.copy()
    second = gt[4].copy()
    second[5:30, 5:40] = 2  # a second object appears on frame 4
    labels = core.apply_mask(4, second)
    assert core.k == 2 and core.interacted == [0, 4]
    assert np.array_equal(labels[4], second) and np.array_equal(labels[0], before[0])
    assert [round(nc * 4) for nc, _ in fusion.calls] == [3, 2, 1]  # frames 3, 2, 1 fused (nc = |0 - i| / 4)
    assert (labels[1:4] == 2).any() and (labels[5] == 2).any()  # the new object is propagated both ways
    assert len(core.certain) == 2 and core.certain[0][1].shape[0] == 2  # frame 0's memory re-encoded for 2
    unchanged = core.labels()
    core.apply_mask(2, gt[2], propagate=False)  # only this frame
    assert np.array_equal(core.frame_labels(2), gt[2])
    assert np.array_equal(np.delete(core.labels(), 2, 0), np.delete(unchanged, 2, 0))
    with pytest.raises(ValueError, match="shape"):
        core.apply_mask(0, gt[0][:-1])


def test_mask_from_scribbles_changes_no_state(nets):
    stcn, s2m, fusion = nets
    images, gt = blackswan(3)
    core = InteractiveCore(stcn, s2m, fusion, images, 1, schedule=None)
    prob = core.prob.clone()
    scribbles = np.full(gt[0].shape, -1)
    scribbles[60, 80:120] = 1
    scribbles[10, 10:200] = 0
    mask = core.mask_from_scribbles(1, scribbles)
    assert mask.shape == gt[0].shape and mask.dtype == np.uint8 and set(np.unique(mask)) <= {0, 1}
    assert torch.equal(core.prob, prob) and core.count == 0 and core.interacted == []
    scribbles[30, 30:60] = 3  # a new object (id above k): one more S2M channel, still no state change
    assert mask.shape == core.mask_from_scribbles(1, scribbles).shape and core.k == 1


def make_session(nets, tmp_path: Path, frames: int = 6) -> Session:
    settings = InferenceSettings(resolution=96, mem_every=2)
    session = Session(*nets, settings, tmp_path / "out", tmp_path, max_frames=frames, models="test")
    session.open(sample="blackswan")
    return session


def test_session_rounds_ids_undo_cancel_import_and_export(nets, tmp_path):
    session = make_session(nets, tmp_path)
    w, h = session.video.size
    assert session.video.full == (854, 480) and h == 96
    session.stroke(0, 200, True, [[0.45, 0.5], [0.55, 0.5]], radius=3)
    assert (session.frame_ids(0)[48, int(0.45 * w) : int(0.55 * w)] == 200).all()  # the stroke is kept as drawn
    with pytest.raises(UserError, match="frame 0 has an edit"):
        session.stroke(3, 200, True, [[0.5, 0.5]])
    for bad in (0, 256, "x"):
        with pytest.raises(UserError, match=r"1\.\.255"):
            session.stroke(0, bad, True, [[0.5, 0.5]])
    assert check_object_id(255) == 255
    session.stroke(0, 7, False, [[0.45, 0.5]], radius=2)  # a negative click clears what it covers
    assert session.frame_ids(0)[48, int(0.45 * w)] == 0
    session.propagate()
    assert session.wait()["job"]["state"] == "done"
    first = np.stack([session.frame_ids(t) for t in range(6)])
    assert session.status()["objects"] == [200] and (first[1:] == 200).any()

    # cancel: the propagation is held inside its first frame until cancel was pressed
    gate, decode = threading.Event(), session.stcn.decode
    session.stroke(3, 9, True, [[0.2, 0.2], [0.3, 0.3]])
    session.stcn.decode = lambda *a: (gate.wait(30), decode(*a))[1]
    try:
        session.propagate()
        with pytest.raises(UserError, match="busy: propagate"):
            session.stroke(3, 9, True, [[0.5, 0.5]])
        session.cancel()
        gate.set()
        status = session.wait()
    finally:
        del session.stcn.decode
    assert status["job"]["state"] == "cancelled" and status["pending"] == 3 and status["objects"] == [200, 9]
    assert np.array_equal(np.stack([session.frame_ids(t) for t in range(6) if t != 3]), np.delete(first, 3, 0))
    session.propagate()
    assert session.wait()["job"]["state"] == "done" and session.status()["interacted"] == [0, 3]
    assert (session.frame_ids(5) == 9).any()
    session.undo()  # back to the state after round 1
    assert session.status()["interacted"] == [0] and session.status()["objects"] == [200]
    assert np.array_equal(np.stack([session.frame_ids(t) for t in range(6)]), first)

    # import a palette mask with id 255 on frame 2 (a round from a full mask), then export
    imported = np.zeros((480, 854), np.uint8)
    imported[100:300, 200:500] = 255
    buf = BytesIO()
    Image.fromarray(imported).save(buf, format="PNG")  # a grey PNG of ids
    session.import_mask(2, buf.getvalue())
    assert session.wait()["job"]["state"] == "done"
    assert session.status()["objects"] == [200, 255] and (session.frame_ids(2)[30:50, 60:100] == 255).all()
    session.export()
    status = session.wait()
    masks = sorted((tmp_path / "out" / "blackswan" / "masks").glob("*.png"))
    assert status["job"]["state"] == "done" and [p.stem for p in masks] == [f"{t:05d}" for t in range(6)]
    full = read_mask(masks[2])
    assert full.shape == (480, 854) and (full[150:250, 250:450] == 255).all() and set(np.unique(full)) <= {0, 200, 255}
    video = cv2.VideoCapture(str(tmp_path / "out" / "blackswan" / "overlay.mp4"))
    assert int(video.get(cv2.CAP_PROP_FRAME_COUNT)) == 6


def test_positive_strokes_only_add_and_the_masks_zip_and_progress(nets, tmp_path):
    """Issue 31: a later positive stroke never removes what earlier positive strokes of the round covered; the
    propagation's total is known from the start; the zip holds every mask at the input size."""
    session = make_session(nets, tmp_path)
    strokes = [[[0.45, 0.5], [0.55, 0.5]], [[0.2, 0.3], [0.3, 0.35]], [[0.7, 0.7]], [[0.5, 0.2], [0.52, 0.8]]]
    covered = np.zeros(session.frame_ids(0).shape, bool)
    for points in strokes:
        session.stroke(0, 4, True, points, radius=3)
        now = session.frame_ids(0) == 4
        assert now[covered].all(), f"{(~now & covered).sum()} pixels of object 4 lost to a later positive stroke"
        covered = now
    session.stroke(0, 4, False, [[0.45, 0.5]], radius=2)  # a negative stroke still removes
    assert session.frame_ids(0)[48, int(0.45 * session.video.size[0])] == 0

    gate, decode = threading.Event(), session.stcn.decode
    session.stcn.decode = lambda *a: (gate.wait(30), decode(*a))[1]
    try:
        status = session.propagate()  # held inside its first frame: the page already knows the total
        assert status["job"]["total"] == 5 and status["job"]["done"] == 0
        gate.set()
        assert session.wait()["job"]["state"] == "done"
    finally:
        del session.stcn.decode
    assert session.status()["video"]["resolution"] == 96

    name, data = session.masks_zip()
    assert name == "blackswan-masks.zip"
    with zipfile.ZipFile(BytesIO(data)) as archive:
        assert archive.namelist() == [f"blackswan/{t:05d}.png" for t in range(6)]
        for t in (0, 5):
            mask = np.asarray(Image.open(BytesIO(archive.read(f"blackswan/{t:05d}.png"))))
            shown = np.asarray(Image.fromarray(session.frame_ids(t)).resize((854, 480), Image.NEAREST))
            assert mask.shape == (480, 854) and np.array_equal(mask, shown)


def test_compact_state_gives_the_float_states_masks_in_uint8(nets, tmp_path):
    """The session's compact state (uint8 frames shared with the video, uint8 probabilities) gives the masks of
    the float state it replaced (normalised float frames, float probabilities) over two rounds (the second fuses
    with the stored probabilities), for object 255, in under a quarter of the bytes."""
    runs = {}
    for compact in (True, False):
        settings = InferenceSettings(resolution=96, mem_every=2)
        s = Session(*nets, settings, tmp_path / f"out-{compact}", tmp_path, 6, "test", compact=compact)
        s.open(sample="blackswan")
        s.stroke(0, 255, True, [[0.45, 0.5], [0.55, 0.5]], radius=3)
        s.propagate()
        assert s.wait()["job"]["state"] == "done"
        s.stroke(4, 255, False, [[0.5, 0.5]], radius=4)
        s.propagate()
        assert s.wait()["job"]["state"] == "done" and s.status()["interacted"] == [0, 4]
        runs[compact] = (np.stack([s.frame_ids(t) for t in range(6)]), s)
    (small, c), (wide, f) = runs[True], runs[False]
    assert c.core.prob.dtype == torch.uint8 and f.core.prob.dtype == torch.float32
    assert c.core.images is c.video.frames  # the frames are held once, as uint8 RGB
    assert (small == 255).any() and set(np.unique(small)) <= {0, 255}
    assert (small == wide).mean() >= 0.999
    assert c.core.nbytes() * 4 < f.core.nbytes() + sum(frame.nbytes for frame in f.video.frames)


def test_prepared_s2m_precision_rungs(nets):
    """`prepare_s2m` folds a copy (the given model keeps its BatchNorm), fp32 gives the same probabilities,
    fast runs layers 2-4 and the head in bf16 (stem and layer 1 in fp32) and stays close; CPU has no fp16."""
    s2m = nets[1]
    images, gt = blackswan(1)
    image, pad = pad_to_16(images[0])
    mask = pad_to_16(torch.from_numpy(gt[:1] == 1).float())[0]
    positive, negative = torch.zeros_like(mask), torch.zeros_like(mask)
    positive[0, 60, 90:130], negative[0, :, :4] = 1, 1
    exact, fast, half = (prepare_s2m(s2m, rung) for rung in ("fp32", "fast", "bf16"))
    assert count_batchnorm(exact) == 0 and count_batchnorm(s2m) > 0
    assert dtype_of(fast.backbone.layer1) == torch.float32 and dtype_of(fast.backbone.conv1) == torch.float32
    assert dtype_of(fast.backbone.layer2) == dtype_of(fast.classifier) == torch.bfloat16
    assert {p.dtype for p in half.parameters()} == {torch.bfloat16}
    with torch.inference_mode():
        p0, p1, p2, p3 = (m.object_probability(image, mask, positive, negative) for m in (s2m, exact, fast, half))
    assert p1.dtype == p2.dtype == p3.dtype == torch.float32 and p2.shape == mask.shape
    assert (p0 - p1).abs().max() < 1e-4 and (p0 - p2).abs().max() < 0.02 and (p0 - p3).abs().max() < 0.05
    with pytest.raises(UserError, match="unknown precision 'fp16' on cpu"):
        prepare_s2m(s2m, "fp16")


def test_app_command_errors_are_one_line(tmp_path, weights_file):
    r = stcn("app", "--weights", weights_file, "--root", tmp_path / "missing")
    assert one_error(r, alone=True) == f"error: --root {tmp_path / 'missing'} is not a folder"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Served(NamedTuple):
    """A running `stcn app`: its base URL, out folder, launch token and console lines (appended as they come)."""

    url: str
    out: Path
    token: str
    log: list[str]

    def page(self) -> str:
        """The URL printed at start: the page with the token."""
        return f"{self.url}?token={self.token}"


@pytest.fixture
def app_server(tmp_path, weights_file):
    """`stcn app` on a free local port (6 frames of the sample at 96p); yields a `Served`."""
    port, out, log = free_port(), tmp_path / "out", []
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    small = ["--max-frames", "6", "--resolution", "96", "--mem-every", "2"]
    cmd = [sys.executable, "-m", "stcn.cli", "app", "--weights", str(weights_file), "--port", str(port), "--out",
           str(out), "--root", str(tmp_path), *small]  # fmt: skip
    proc = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True)
    started = threading.Event()

    def read() -> None:
        for line in proc.stderr:
            log.append(line.rstrip("\n"))
            if line.startswith("stcn app: http"):
                started.set()
        started.set()  # exited

    threading.Thread(target=read, daemon=True).start()
    try:
        assert started.wait(600) and proc.poll() is None, f"stcn app did not start: {log}"
        (line,) = [line for line in log if line.startswith("stcn app: http")]
        token = re.search(r"\?token=([\w-]+)", line).group(1)
        assert line.startswith(f"stcn app: http://127.0.0.1:{port}/?token={token} ") and len(token) >= 32
        yield Served(f"http://127.0.0.1:{port}/", out, token, log)
    finally:
        proc.terminate()
        proc.wait(20)


def get(url: str, token: str) -> bytes:
    """GET with the launch token in the header (as a script does)."""
    request = urllib.request.Request(url, headers={"X-STCN-Token": token})
    return urllib.request.urlopen(request, timeout=10).read()


def get_json(url: str, token: str) -> dict:
    return json.loads(get(url, token))


def launch(playwright, *extra: str):
    assert CHROMIUM.is_file(), "Debian's chromium is needed: apt-get install -y chromium"
    profile = tempfile.mkdtemp(prefix="stcn-app-chromium-")
    args = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync", *extra]  # fmt: skip
    viewport = {"width": 1280, "height": 800}
    context = playwright.chromium.launch_persistent_context(
        profile, executable_path=str(CHROMIUM), headless=True, args=args, viewport=viewport
    )
    return context, profile


def test_page_in_a_real_browser_stroke_propagate_scrub_export(app_server, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    url, out, token = app_server.url, app_server.out, app_server.token
    with sync_playwright() as p:
        context, profile = launch(p)
        try:
            page = context.pages[0] if context.pages else context.new_page()
            page.goto(app_server.page())
            assert page.url == url  # the token left the address bar; an HttpOnly, SameSite=Strict cookie holds it
            (cookie,) = context.cookies()
            assert cookie["value"] == token and cookie["httpOnly"] and cookie["sameSite"] == "Strict"
            expect(page.locator("#sample option[value=blackswan]")).to_have_count(1)
            page.select_option("#sample", "blackswan")
            page.click("#open-sample")
            expect(page.locator("#frame-label")).to_have_text("frame 0 / 5")
            expect(page.locator("#models")).to_contain_text("seeded stand-in")
            page.fill("#object", "3")
            box = page.locator("#draw").bounding_box()
            y = box["y"] + box["height"] * 0.5
            page.mouse.move(box["x"] + box["width"] * 0.4, y)
            page.mouse.down()
            for i in range(1, 11):
                page.mouse.move(box["x"] + box["width"] * (0.4 + 0.02 * i), y)
            page.mouse.up()
            expect(page.locator("#message")).to_contain_text("mask updated on frame 0")
            mask = np.asarray(Image.open(BytesIO(get(url + "api/mask/0.png", token))))
            row = mask[mask.shape[0] // 2]
            assert (row[int(0.42 * mask.shape[1]) : int(0.58 * mask.shape[1])] == 3).all()  # under the stroke
            page.fill("#object", "256")
            page.locator("#object").dispatch_event("change")
            expect(page.locator("#message")).to_have_text("object id 256 is outside 1..255")
            page.fill("#object", "3")

            page.click("#propagate")
            expect(page.locator("#message")).to_contain_text("propagate done", timeout=120_000)
            status = get_json(url + "api/status", token)  # answered while the page polls; the round is in
            assert status["interacted"] == [0] and status["objects"] == [3] and status["rounds"] == 1

            page.locator("#slider").fill("4")  # scrub
            expect(page.locator("#frame-label")).to_have_text("frame 4 / 5")
            expect(page.locator("#mask")).to_have_attribute("src", re.compile(r"/api/mask/4\.png"))
            page.keyboard.press("ArrowRight")
            expect(page.locator("#frame-label")).to_have_text("frame 5 / 5")
            # the new src may still be loading (a busy machine): wait for the decoded image, then check its size
            page.wait_for_function(
                "(m => m.complete && m.naturalWidth > 0)(document.getElementById('mask'))", timeout=30_000
            )
            assert page.evaluate("document.getElementById('mask').naturalWidth") == 171

            page.click("#export")
            expect(page.locator("#message")).to_contain_text("export done", timeout=60_000)
            expect(page.locator("#exported a")).to_have_attribute("href", "/api/overlay.mp4")
            expect(page.locator("#processing")).to_contain_text("processing 171x96 (--resolution 96)")
            with page.expect_download() as download:  # the masks as a zip, from the page
                page.click("#download")
            zipped = tmp_path / "masks.zip"
            download.value.save_as(zipped)
            assert download.value.suggested_filename == "blackswan-masks.zip"
            page.screenshot(path=str(tmp_path / "page.png"))
        finally:
            context.close()
            shutil.rmtree(profile, ignore_errors=True)
    masks = sorted((out / "blackswan" / "masks").glob("*.png"))
    assert [m.stem for m in masks] == [f"{t:05d}" for t in range(6)]
    first = read_mask(masks[0])
    assert first.shape == (480, 854) and set(np.unique(first)) <= {0, 3}
    assert (first[240, int(0.42 * 854) : int(0.58 * 854)] == 3).all()  # the stroke's pixels, at the input size
    assert all((read_mask(m) == 3).any() for m in masks[1:])  # propagated
    overlay = out / "blackswan" / "overlay.mp4"
    assert overlay.stat().st_size > 0 and int(cv2.VideoCapture(str(overlay)).get(cv2.CAP_PROP_FRAME_COUNT)) == 6
    assert (tmp_path / "page.png").stat().st_size > 0
    with zipfile.ZipFile(zipped) as archive:  # the zip the page gave = the exported masks
        assert archive.namelist() == [f"blackswan/{m.name}" for m in masks]
        for m in masks:
            assert np.array_equal(np.asarray(Image.open(BytesIO(archive.read(f"blackswan/{m.name}")))), read_mask(m))
