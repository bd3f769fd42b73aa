"""Benchmark `stcn app`: strokes -> mask latency (fp32 vs fast), answers while propagation runs, memory.

Weights: `--stcn` / `--s2m` / `--fusion` checkpoints (e.g. the sample-trained models/s03/weights.pth and
models/s2m/weights.pth); the seeded stand-ins where one is not given (the same computation, so the times
hold for any weights, but the fast-vs-fp32 agreement only means something with a trained S2M). Frames: the
bundled real blackswan sequence.

    python benchmarks/app.py [--part latency,responsive,memory] [--repeats 3] [--long 1000] \
        [--stcn models/s03/weights.pth] [--s2m models/s2m/weights.pth]
    python benchmarks/app.py --part screenshot --stcn ... --s2m ...   # reports/app.png (Debian's chromium)

- latency: one stroke -> S2M -> the frame's mask (Session.stroke) at 854x480 (the sample's 480p), for the
  fp32 and the fast rung side by side (two sessions, alternating which goes first): per repeat a positive
  stroke across the swan on another frame, then a negative one on the water; median wall and CPU seconds,
  and the IoU of the two rungs' masks after each stroke (the same strokes in the same order).
- responsive: a real `stcn app` server (Werkzeug, threaded) on 127.0.0.1; the same requests (status,
  a frame JPEG, a mask PNG) timed while idle and while a propagation runs, alternating kinds.
- memory: a long video (blackswan's real frames cycled forward/backward) opened at 64p and propagated with
  --max-memory-frames 10, once with the session's compact state (uint8 frames and probabilities) and once with
  the float state it held before (normalised float frames, float probabilities), each in its own process;
  RSS sampled every 0.2 s.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
from conftest import seeded_state_dict  # noqa: E402

from benchmarks.report import write_section  # noqa: E402
from stcn.inference.settings import InferenceSettings  # noqa: E402
from stcn.interactive.session import BUNDLED, Session  # noqa: E402
from stcn.interactive.weights import load_fusion, load_s2m  # noqa: E402
from stcn.model import STCN, load_weights  # noqa: E402

BLACKSWAN = BUNDLED / "davis-mini" / "JPEGImages" / "480p" / "blackswan"
STROKE = [[0.40, 0.45], [0.47, 0.50], [0.55, 0.52]]  # across the swan
WATER = [[0.10, 0.85], [0.30, 0.90]]  # a background stroke on the water


def nets(args: argparse.Namespace):
    """STCN, S2M and fusion: the given checkpoints; otherwise seeded stand-ins (STCN, S2M) and linear fusion."""
    if args.stcn:
        stcn = load_weights(STCN(), args.stcn).eval()
    else:
        entries = json.loads((ROOT / "tests" / "data" / "stcn_state_dict.json").read_text())["entries"]
        stcn = load_weights(STCN(), seeded_state_dict(entries)).eval()
    return stcn, load_s2m(args.s2m, 0), load_fusion(args.fusion)


def session(models, settings: InferenceSettings, root: Path, max_frames: int | None, compact: bool = True) -> Session:
    out = Path(tempfile.mkdtemp(prefix="stcn-app-bench-"))
    return Session(*models, settings, out, root, max_frames, "bench", compact=compact)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of the objects' pixels (same id) of two label maps; 1 when both are empty."""
    union = ((a > 0) | (b > 0)).sum()
    return float(((a == b) & (a > 0)).sum() / union) if union else 1.0


def latency(models, repeats: int) -> list[dict]:
    """Stroke -> mask on 854x480 frames, fp32 and fast side by side; 2 strokes per repeat and rung."""
    rungs = ("fp32", "fast")
    sessions = {
        r: session(models, InferenceSettings(resolution=480, precision=r), BLACKSWAN.parent, None) for r in rungs
    }
    for s in sessions.values():
        s.open(sample="blackswan")
        s.stroke(0, 1, True, STROKE)  # warm-up
        s.undo()
    wall: dict[str, list[float]] = {r: [] for r in rungs}
    cpu: dict[str, list[float]] = {r: [] for r in rungs}
    agree: list[float] = []
    frames = np.linspace(1, len(sessions["fp32"].video.stems) - 1, repeats).round().astype(int)
    for i, frame in enumerate(frames):
        for positive, points in ((True, STROKE), (False, WATER)):
            order = rungs if i % 2 == 0 else rungs[::-1]
            for r in order:
                s = sessions[r]
                t0, c0 = time.perf_counter(), time.process_time()
                s.stroke(int(frame), 1, positive, points)
                wall[r].append(time.perf_counter() - t0)
                cpu[r].append(time.process_time() - c0)
            agree.append(iou(*(sessions[r].frame_ids(int(frame)) for r in rungs)))
        for s in sessions.values():
            s.undo()
    rows = []
    for r in rungs:
        rows.append({"measure": f"stroke -> mask, 854x480, {r} (s)", "median": statistics.median(wall[r]),
                     "max": max(wall[r]), "n": len(wall[r]), "target": "<= 1.5 s"})  # fmt: skip
        rows.append({"measure": f"stroke -> mask, {r}: CPU time, both threads (s)", "median": statistics.median(cpu[r]),
                     "max": max(cpu[r]), "n": len(cpu[r]), "target": ""})  # fmt: skip
    ratio = statistics.median(wall["fp32"]) / statistics.median(wall["fast"])
    rows.append({"measure": "speed-up fast vs fp32 (median wall)", "median": ratio, "max": ratio, "n": 1, "target": ""})
    rows.append({"measure": "IoU fast vs fp32 masks after each stroke (median; max column: min)",
                 "median": statistics.median(agree), "max": min(agree), "n": len(agree),
                 "target": ">= 0.99"})  # fmt: skip
    return rows


def responsive(models, repeats: int) -> list[dict]:
    """Requests answered by the real server, idle vs while a propagation runs (ms)."""
    from werkzeug.serving import make_server

    from stcn.interactive.app import TOKEN_HEADER, create_app, new_token, quiet_handler

    s = session(models, InferenceSettings(resolution=240), BLACKSWAN.parent, 30)
    s.open(sample="blackswan")
    token = new_token()
    server = make_server("127.0.0.1", 0, create_app(s, token), threaded=True, request_handler=quiet_handler())
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}/api/"
    paths = ["status", "frame/7.jpg", "mask/7.png"]

    def timed(rounds: int) -> dict[str, list[float]]:
        out: dict[str, list[float]] = {p: [] for p in paths}
        for _ in range(rounds):
            for p in paths:
                t0 = time.perf_counter()
                urllib.request.urlopen(
                    urllib.request.Request(url + p, headers={TOKEN_HEADER: token}), timeout=30
                ).read()
                out[p].append((time.perf_counter() - t0) * 1000)
        return out

    try:
        idle = timed(repeats)
        s.stroke(0, 1, True, STROKE)
        s.propagate()
        time.sleep(1.0)  # well inside the propagation (29 frames)
        busy = timed(repeats)
        still_running = s.status()["job"]["state"] == "running"
        s.wait()
    finally:
        server.shutdown()
    rows = []
    for p in paths:
        rows.append({"measure": f"GET /api/{p} idle (ms)", "median": statistics.median(idle[p]),
                     "max": max(idle[p]), "n": repeats, "target": ""})  # fmt: skip
        rows.append({"measure": f"GET /api/{p} during propagation (ms)", "median": statistics.median(busy[p]),
                     "max": max(busy[p]), "n": repeats, "target": "< 200 ms"})  # fmt: skip
    if not still_running:
        rows.append({"measure": "note: propagation ended before the last request", "median": float("nan"),
                     "max": float("nan"), "n": 0, "target": ""})  # fmt: skip
    return rows


def long_video(folder: Path, n: int) -> Path:
    """n frames: blackswan's real frames cycled forward and backward (symbolic links)."""
    frames = sorted(BLACKSWAN.glob("*.jpg"))
    cycle = frames + frames[-2:0:-1]
    folder.mkdir(parents=True, exist_ok=True)
    for t in range(n):
        (folder / f"{t:05d}.jpg").symlink_to(cycle[t % len(cycle)])
    return folder


def memory(models, n: int, compact: bool) -> dict:
    """RSS while opening and propagating an n-frame video at 64p, memory bank bounded to 10 frames."""
    process = psutil.Process()
    root = Path(tempfile.mkdtemp(prefix="stcn-app-long-"))
    long_video(root / "long", n)
    s = session(models, InferenceSettings(resolution=64, max_memory_frames=10), root, None, compact=compact)
    base = process.memory_info().rss / 2**20
    t0 = time.perf_counter()
    s.open(path="long")
    opened, open_s = process.memory_info().rss / 2**20, time.perf_counter() - t0
    s.stroke(0, 1, True, STROKE)
    samples, t0 = [], time.perf_counter()
    s.propagate()
    while s.status()["job"]["state"] == "running":
        samples.append(process.memory_info().rss / 2**20)
        time.sleep(0.2)
    prop_s = time.perf_counter() - t0
    held = s.core.nbytes() + s.undo_to.labels.nbytes + (0 if compact else sum(f.nbytes for f in s.video.frames))
    w, h = s.video.size
    return {"state": s.job.state, "size": f"{w}x{h}", "base": base, "opened": opened, "open_s": open_s,
            "median": statistics.median(samples), "max": max(samples), "samples": len(samples), "prop_s": prop_s,
            "memory_frames": s.core.max_memory_seen, "held_per_frame": held / n, "pixels": w * h}  # fmt: skip


def memory_rows(n: int, argv: list[str]) -> list[dict]:
    """`memory` for the float state (before) and the compact state (now), each in a fresh process."""
    rows = []
    for kind in ("float", "compact"):
        cmd = [sys.executable, __file__, "--part", f"memory-{kind}", "--long", str(n), *argv]
        result = subprocess.run(
            cmd, capture_output=True, text=True, check=True, env={**os.environ, "PYTHONPATH": str(ROOT)}
        )
        m = json.loads(result.stdout.strip().splitlines()[-1])
        label = f"{n} frames at {m['size']}, {kind} state"
        rows += [
            {"measure": f"{label}: RSS before open (MiB)", "median": m["base"], "max": m["base"], "n": 1, "target": ""},
            {"measure": f"{label}: RSS after open (MiB), {m['open_s']:.0f} s", "median": m["opened"],
             "max": m["opened"], "n": 1, "target": ""},
            {"measure": f"{label}: RSS during propagation (MiB), {m['prop_s']:.0f} s ({m['state']}), max memory "
                        f"frames read {m['memory_frames']}", "median": m["median"], "max": m["max"],
             "n": m["samples"], "target": "bounded"},
            {"measure": f"{label}: RSS max - RSS before open (MiB; per frame, KiB, in max column)",
             "median": m["max"] - m["base"], "max": (m["max"] - m["base"]) * 1024 / n, "n": 1, "target": ""},
            {"measure": f"{label}: state held per frame (bytes; bytes per pixel in max column)",
             "median": m["held_per_frame"], "max": m["held_per_frame"] / m["pixels"], "n": 1, "target": ""},
        ]  # fmt: skip
    return rows


def screenshot(path: Path, args: argparse.Namespace) -> None:
    """The page after a stroke, a propagation and a scrub, in Debian's chromium (reports/app.png)."""
    import shutil
    import socket

    from playwright.sync_api import expect, sync_playwright

    folder = Path(tempfile.mkdtemp(prefix="stcn-app-shot-"))
    weights = args.stcn
    if weights is None:  # seeded stand-in STCN
        weights = folder / "stcn_random.pth"
        entries = json.loads((ROOT / "tests" / "data" / "stcn_state_dict.json").read_text())["entries"]
        torch.save(seeded_state_dict(entries), weights)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cmd = [sys.executable, "-m", "stcn.cli", "app", "--weights", str(weights), "--port", str(port), "--out",
           str(folder / "out"), "--max-frames", "12", "--resolution", "240"]  # fmt: skip
    cmd += [a for flag, value in (("--s2m", args.s2m), ("--fusion", args.fusion)) if value for a in (flag, str(value))]
    proc = subprocess.Popen(cmd, env={**os.environ, "PYTHONPATH": str(ROOT)}, stderr=subprocess.PIPE, text=True)
    profile = tempfile.mkdtemp(prefix="stcn-app-chromium-")
    args = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip
    try:
        page_url = ""
        for line in proc.stderr:  # the URL with this launch's token, printed once the server listens
            sys.stderr.write(line)
            if line.startswith("stcn app: http"):
                page_url = line.split()[2]
                break
        if not page_url:
            raise SystemExit("stcn app did not start")
        threading.Thread(target=lambda: sys.stderr.writelines(proc.stderr), daemon=True).start()  # keep draining
        with sync_playwright() as p:
            ctx = p.chromium.launch_persistent_context(
                profile, executable_path="/usr/bin/chromium", headless=True, args=args,
                viewport={"width": 1280, "height": 760},
            )  # fmt: skip
            page = ctx.new_page()
            page.goto(page_url)
            page.select_option("#sample", "blackswan")
            page.click("#open-sample")
            expect(page.locator("#frame-label")).to_have_text("frame 0 / 11")
            box = page.locator("#draw").bounding_box()
            page.mouse.move(box["x"] + box["width"] * 0.40, box["y"] + box["height"] * 0.45)
            page.mouse.down()
            for x, y in STROKE[1:]:
                page.mouse.move(box["x"] + box["width"] * x, box["y"] + box["height"] * y, steps=5)
            page.mouse.up()
            expect(page.locator("#message")).to_contain_text("mask updated", timeout=120_000)
            page.click("#propagate")
            expect(page.locator("#message")).to_contain_text("propagate done", timeout=600_000)
            page.locator("#slider").fill("6")
            page.wait_for_timeout(1500)
            page.screenshot(path=str(path), full_page=True)
            ctx.close()
    finally:
        proc.terminate()
        proc.wait(20)
        shutil.rmtree(profile, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--part", default="latency,responsive,memory")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--long", type=int, default=1000, help="frames of the long video")
    parser.add_argument("--stcn", type=Path, help="STCN weights (default: seeded stand-in)")
    parser.add_argument("--s2m", type=Path, help="S2M weights, e.g. models/s2m/weights.pth (default: seeded)")
    parser.add_argument("--fusion", type=Path, help="fusion weights (default: linear fusion)")
    args = parser.parse_args()
    weights = [
        a for flag in ("stcn", "s2m", "fusion") if getattr(args, flag) for a in (f"--{flag}", str(getattr(args, flag)))
    ]
    if args.part == "screenshot":
        screenshot(ROOT / "reports" / "app.png", args)
        return
    if args.part.startswith("memory-"):  # one side of the memory part, in its own process (JSON on stdout)
        print(json.dumps(memory(nets(args), args.long, compact=args.part == "memory-compact")))
        return
    load = os.getloadavg()
    models = nets(args)
    rows = []
    for part in args.part.split(","):
        rows += {"latency": lambda: latency(models, args.repeats),
                 "responsive": lambda: responsive(models, max(args.repeats, 5)),
                 "memory": lambda: memory_rows(args.long, weights)}[part]()  # fmt: skip
    table = pd.DataFrame(rows).round(3)
    end = os.getloadavg()
    notes = (
        f"torch threads: {torch.get_num_threads()}; load average (1/5/15 min) at start "
        f"{load[0]:.1f}/{load[1]:.1f}/{load[2]:.1f}, at the end {end[0]:.1f} on {os.cpu_count()} cores "
        "(a shared machine: other jobs ran, the wall times move with the load; CPU time summed over both threads "
        "is what an idle 2-core machine would take at most, twice its wall time at best). "
        f"Weights: STCN {args.stcn or 'seeded'}, S2M {args.s2m or 'seeded'}, fusion {args.fusion or 'linear'}. "
        "Stroke latency = Session.stroke: rasterise, S2M (ResNet-50 DeepLabV3+, BatchNorm folded, channels-last; "
        "fp32, or fast = layers 2-4 and the head in bf16 on this CPU's AMX, stem and layer 1 in fp32) at 864x480 "
        "padded, keep the stroke's "
        "pixels. Requests are answered by Werkzeug's threads while the propagation thread computes (torch "
        "releases the GIL). Memory: the memory bank is bounded by --max-memory-frames (max memory frames read); "
        "the float state (before) held every frame as RGB uint8 + normalised float and every frame's "
        "probabilities as float, (3 + 12 + 4(K+1) + 1) bytes a pixel; the compact state holds RGB uint8 and "
        "uint8 probabilities, (3 + (K+1) + 1) bytes a pixel (the + 1: the undo snapshot's labels). RSS during "
        "propagation: median close to max means it stays flat while the 1000 frames are propagated (the memory "
        "bank does not grow); its rise over RSS after open is mostly the networks' working memory, not per-frame."
    )
    print(write_section("Interactive app (stcn app)", table, notes))


if __name__ == "__main__":
    main()
