"""Inference speed against the original evaluation path (same run), precision ladder agreement, peak RSS.

    python benchmarks/inference.py                 # all parts; each rewrites its section of reports/benchmarks.md
    python benchmarks/inference.py --part speed    # speed vs the dense reference + conv peak (parity case A)
    python benchmarks/inference.py --part agreement  # fast/bf16 vs fp32: masks and J&F on the bundled sequences
    python benchmarks/inference.py --part ort      # ONNX Runtime settings (threads, graph optimisation)
    python benchmarks/inference.py --part memory   # peak RSS on long videos

Speed: the dense re-implementation of the original path (benchmarks/dense_reference.py) and ours at
each precision run alternately on the same decoded frames (best of --repeats); a plain 3x3 convolution
measured in the same run gives the machine's practical peak (fp32 and bf16). Weights: the parity
weights (tests/data/parity), so the same runs give the parity agreement.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from conftest import DAVIS, KEY_LIST, PARITY, TENNIS, seeded_state_dict  # noqa: E402

from benchmarks.dense_reference import segment_dense  # noqa: E402
from benchmarks.report import write_section  # noqa: E402
from stcn.data.images import read_frame, read_mask  # noqa: E402
from stcn.inference import InferenceCore, InferenceSettings  # noqa: E402
from stcn.inference.frames import image_tensor, one_hot  # noqa: E402
from stcn.inference.loading import load_model, prepare_for_inference  # noqa: E402
from stcn.inference.video import host_code  # noqa: E402
from stcn.model import STCN, load_weights  # noqa: E402
from stcn.model.trained import trained_resolution  # noqa: E402

RUNGS = ("fp32", "fast", "bf16")
REFERENCE = "reference (dense, original path)"
ORT = "ours onnxruntime fp32"  # `stcn export` graphs run by ONNX Runtime, read-out in numpy (NumpyCore)
DEFAULT_ALLOCATOR = "ours fp32, glibc's default allocator"  # STCN_ALLOCATOR=default: what the allocator setting buys
TIE_MARGIN = 0.02  # probability margin between the two most likely labels counted as "near a tie"


def weights(folder: Path) -> tuple[Path, str]:
    """The parity weights (made by tests/data/parity's script) in `folder`, and where they come from."""
    path = folder / "weights.pth"
    subprocess.run([sys.executable, PARITY / "make_weights.py", KEY_LIST, path], check=True, capture_output=True)
    return path, "parity weights (tests/data/parity)"


def model(state: dict | None = None) -> STCN:
    """Ours: BatchNorm folded, channels-last."""
    state = state if state is not None else seeded_state_dict(json.loads(KEY_LIST.read_text())["entries"])
    return prepare_for_inference(load_weights(STCN(), state))


def reference_model(state: dict) -> STCN:
    """The original's network: BatchNorm kept, NCHW."""
    return load_weights(STCN(), state).eval()


def run_ours(
    net: STCN,
    frames: list[np.ndarray],
    first: np.ndarray,
    ids: list[int],
    settings,
    margins: list[float] | None = None,
) -> np.ndarray:
    """Label maps (T, H, W) of one sequence (frames already decoded): step + un-pad/argmax per frame.

    `margins`, when given, receives per propagated frame the fraction of pixels whose two most likely
    labels are within `TIE_MARGIN` of each other (pixels any rounding difference may flip).
    """
    core_class, to_image, to_masks, to_labels = host_code(net)  # NumpyCore for ONNX Runtime, as `stcn segment`
    core = core_class(net, settings)
    out = np.zeros((len(frames), *first.shape), np.uint8)
    lut = np.array([0, *ids], np.uint8)
    for t, rgb in enumerate(frames):
        prob = core.step(
            to_image(rgb, settings.resolution),
            to_masks(first, ids, settings.resolution) if t == 0 else None,
            ids if t == 0 else None,
            is_last=t == len(frames) - 1,
        )
        out[t] = lut[to_labels(prob, rgb.shape[:2])]
        if margins is not None and t > 0:
            top2 = torch.topk(prob, 2, dim=0).values
            margins.append(float((top2[0] - top2[1] < TIE_MARGIN).float().mean()))
    return out


def conv_peak(repeats: int) -> dict[str, float]:
    """GFLOP/s of a plain 3x3 conv 256->256 on a 120x216 map (the decoder's 1/4-resolution convs), fp32 and bf16."""
    conv = torch.nn.Conv2d(256, 256, 3, padding=1).eval().to(memory_format=torch.channels_last)
    x = torch.randn(1, 256, 120, 216).contiguous(memory_format=torch.channels_last)
    flops = 2 * 256 * 256 * 9 * 120 * 216
    best = {}
    with torch.inference_mode():
        for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
            c, y = conv.to(dtype), x.to(dtype)
            c(y)
            times = []
            for _ in range(repeats):
                start = time.perf_counter()
                c(y)
                times.append(time.perf_counter() - start)
            best[name] = flops / min(times) / 1e9
    return best


def video_flops(net: STCN, shape: tuple[int, int], n_frames: int, n_objects: int, mem_every: int) -> float:
    """Convolution/matmul FLOPs of segmenting a video (official memory schedule), counted per component."""
    from torch.utils.flop_counter import FlopCounterMode

    h, w = ((s + 15) // 16 * 16 for s in shape)
    x = torch.zeros(1, 3, h, w).contiguous(memory_format=torch.channels_last)
    counts = {}
    with torch.inference_mode():
        for name, fn in (
            ("key", lambda: net.encode_key(x)),
            ("value", lambda: net.encode_value(x, torch.zeros(1, 1024, h // 16, w // 16), torch.zeros(1, 1, h, w))),
            (
                "decode",
                lambda: net.decode(
                    torch.zeros(1, 512, h // 16, w // 16),
                    torch.zeros(1, 512, h // 16, w // 16),
                    torch.zeros(1, 512, h // 8, w // 8),
                    torch.zeros(1, 256, h // 4, w // 4),
                ),
            ),
        ):
            counter = FlopCounterMode(display=False)
            with counter:
                fn()
            counts[name] = counter.get_total_flops()
    memory_frames = 1 + len([t for t in range(1, n_frames - 1) if t % mem_every == 0])
    return (
        n_frames * counts["key"]
        + memory_frames * n_objects * counts["value"]
        + (n_frames - 1) * n_objects * counts["decode"]
    )


def blackswan(n_frames: int) -> tuple[list[np.ndarray], np.ndarray]:
    """The first `n_frames` decoded frames of blackswan (parity case A) and its first mask."""
    paths = sorted((DAVIS / "JPEGImages/480p/blackswan").glob("*.jpg"))[:n_frames]
    return [read_frame(p) for p in paths], read_mask(DAVIS / "Annotations/480p/blackswan/00000.png")


def speed_child(path: str, weights_file: Path, n_frames: int, masks_file: Path) -> dict:
    """One path of the speed part in this (fresh) process: a 3-frame warm-up, then the timed video.

    The reference runs as the original scripts do (glibc's default allocator); ours goes through
    `prepare_for_inference`, as `stcn segment` / `stcn evaluate` do (allocator tuned, BatchNorm folded).
    """
    state = torch.load(weights_file, weights_only=True)
    frames, first = blackswan(n_frames)
    if path == REFERENCE:
        ref = reference_model(state)
        run = lambda fr: segment_dense(ref, fr, first, [1])  # noqa: E731
    elif path == ORT:
        from stcn.inference.ort_backend import OnnxSTCN

        onnx_model, settings = OnnxSTCN(weights_file.with_suffix(".onnx")), InferenceSettings()
        run = lambda fr: run_ours(onnx_model, fr, first, [1], settings)  # noqa: E731
    else:
        ours, settings = model(state), InferenceSettings(precision=path.split(",")[0].split()[-1])
        run = lambda fr: run_ours(ours, fr, first, [1], settings)  # noqa: E731
    run(frames[:3])
    start = time.perf_counter()
    masks = run(frames)
    seconds = time.perf_counter() - start
    np.save(masks_file, masks)
    return {"seconds": seconds}


def export_for_ort(weights_file: Path, out: Path | None = None) -> bool:
    """`stcn export` of the weights into `out` (default: next to them, <weights>.onnx/) when ONNX Runtime is
    installed."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        print("onnxruntime not installed: the ONNX Runtime path is left out", flush=True)
        return False
    from stcn.model.export import export_onnx

    out = out or weights_file.with_suffix(".onnx")
    out.mkdir(exist_ok=True)
    export_onnx(load_model(weights_file), out, weights_file)
    return True


def speed(n_frames: int, repeats: int, threads: int | None, only: list[str] | None = None) -> tuple[pd.DataFrame, str]:
    """Dense reference vs ours at every rung on parity case A's frames, each run in its own process,
    alternated (best of `repeats`); ratios, GFLOP/s and the conv peak measured between them."""
    folder = Path(tempfile.mkdtemp())
    weights_file, source = weights(folder)
    paths = [REFERENCE] + [f"ours {rung}" for rung in RUNGS] + [DEFAULT_ALLOCATOR]
    if only:  # a shorter run: these paths only (the reference and ours fp32 always run)
        paths = [p for p in paths if p in (REFERENCE, "ours fp32", *only)]
    if (not only or ORT in only) and export_for_ort(weights_file):
        paths.insert(2, ORT)
    times: dict[str, list[float]] = {name: [] for name in paths}
    masks: dict[str, np.ndarray] = {}
    peaks: list[dict[str, float]] = []
    for r in range(repeats):
        peaks.append(conv_peak(3))
        for name in paths:
            cmd = [sys.executable, __file__, "--speed-child", name, "--weights-file", weights_file]
            cmd += ["--frames", str(n_frames)] + (["--threads", str(threads)] if threads else [])
            env = {**os.environ, "STCN_ALLOCATOR": "default"} if name == DEFAULT_ALLOCATOR else None
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
            if proc.returncode != 0:
                sys.exit(f"{name} failed: {proc.stderr.strip().splitlines()[-1:]}")
            times[name].append(json.loads(proc.stdout.splitlines()[-1])["seconds"])
            masks[name] = np.load(weights_file.with_suffix(".masks.npy"))
            print(f"repeat {r + 1}/{repeats} {name}: {times[name][-1] / len(masks[name]):.3f} s/frame", flush=True)
    n, size = len(masks[REFERENCE]), masks[REFERENCE].shape[1:]  # the frames the children ran, their size
    ours = model(torch.load(weights_file, weights_only=True))
    shutil.rmtree(folder)
    peak = {k: max(p[k] for p in peaks) for k in peaks[0]}
    flops = video_flops(ours, size, n, 1, 5)
    case, ties = None, ""
    if (PARITY / "case_A.npz").is_file():
        npz = np.load(PARITY / "case_A.npz")
        case = npz["masks"][:n]
        margin = np.abs(2 * npz["probs"].astype(np.float32) - 1)  # 1 object: |p_object - p_background|
        ties = (
            f" In the original's own output on this case, {100 * (margin < TIE_MARGIN).mean():.2f}% of the pixels "
            f"(frames {', '.join(map(str, npz['prob_frames']))}) have their two labels within {TIE_MARGIN} of each "
            "other (untrained weights): those are the pixels a half-precision rung can flip."
        )
    base = min(times[REFERENCE])
    fp32 = masks["ours fp32"]
    rows = []
    for name, t in times.items():
        best = min(t)
        half = name in ("ours fast", "ours bf16")  # the ONNX Runtime path is fp32
        agree_fp32 = [(a == b).mean() for a, b in zip(masks[name], fp32, strict=True)]
        row = {
            "path": name,
            "frames": n,
            "s/frame (best)": best / n,
            "vs reference": base / best,
            f"vs reference (median of {len(t)})": float(np.median(times[REFERENCE]) / np.median(t)),
            "GFLOP/s": flops / best / 1e9,
            "% of conv peak": 100 * flops / best / 1e9 / peak["bf16" if half else "fp32"],
            "min per-frame agreement with ours fp32 (%)": 100 * min(agree_fp32),
        }
        if case is not None:
            row["min per-frame agreement with the original's masks (%)"] = 100 * min(
                (a == b).mean() for a, b in zip(masks[name], case, strict=True)
            )
        rows.append(row)
        print(row, flush=True)
    note = (
        f"Conv peak measured in the same run (3x3 conv 256->256 at 120x216, best of {3 * repeats}): "
        f"fp32 {peak['fp32']:.0f} GFLOP/s, bf16 {peak['bf16']:.0f} GFLOP/s; '% of conv peak' compares fp32 runs "
        "with the fp32 peak and fast/bf16 runs with the bf16 peak. FLOPs per video "
        f"{flops / 1e9:.0f} GFLOP (torch FlopCounterMode: key encoder per frame, value encoder per memory frame, "
        f"decoder per propagated frame). Weights: {source}.{ties}"
    )
    return pd.DataFrame(rows).round(3), note


def jf(pred: np.ndarray, root: Path, seq: str, stems: list[str], ids: list[int]) -> float:
    """J&F-Mean (%) of a label stack against the sequence's ground truth, frames 1..T-2 (the official rule)."""
    from stcn.eval.davis_score import score_sequence

    gt = np.stack([read_mask(root / "Annotations/480p" / seq / f"{s}.png") for s in stems])
    gt[gt == 255] = 0
    j, f = score_sequence(gt[1:-1], pred[1:-1], max(ids))
    return 100 * float((j.mean() + f.mean()) / 2)


def agreement(n_frames: int, weights_file: Path | None = None, resolution: int | None = None) -> pd.DataFrame:
    """Per-frame mask agreement and J&F difference of fast, bf16 (and ONNX Runtime) vs fp32 on the bundled sequences.

    Seeded random weights unless `weights_file` (an STCN checkpoint, e.g. the official `stcn.pth` or a
    trained `models/<run>/weights.pth`) is given. Frames are resized to `resolution` (shorter side) when
    given, as `stcn segment --resolution` does; masks are scored at the frames' own size.
    J&F needs at least 3 frames with ground truth (not tennis).
    """
    net = load_model(weights_file) if weights_file else model()
    runners = {rung: (net, InferenceSettings(precision=rung, resolution=resolution)) for rung in RUNGS}
    exported = Path(tempfile.mkdtemp()) / "graphs"  # not beside the weights: their folder may be read-only
    if weights_file is not None and export_for_ort(weights_file, exported):
        from stcn.inference.ort_backend import OnnxSTCN

        runners[ORT] = (OnnxSTCN(exported), InferenceSettings(resolution=resolution))
    cases = [(DAVIS, s) for s in ("blackswan", "car-shadow", "dog-agility", "libby")] + [(TENNIS, "tennis")]
    rows = []
    for root, seq in cases:
        paths = sorted((root / "JPEGImages/480p" / seq).glob("*.jpg"))[:n_frames]
        frames = [read_frame(p) for p in paths]
        first = read_mask(root / "Annotations/480p" / seq / f"{paths[0].stem}.png")
        ids = sorted(int(v) for v in np.unique(first) if v not in (0, 255))
        masks, seconds, ties = {}, {}, []
        for rung, (net_, settings) in runners.items():
            start = time.perf_counter()
            masks[rung] = run_ours(net_, frames, first, ids, settings, ties if rung == "fp32" else None)
            seconds[rung] = time.perf_counter() - start
        scored = len(paths) >= 3
        jf32 = jf(masks["fp32"], root, seq, [p.stem for p in paths], ids) if scored else float("nan")
        for rung in list(runners)[1:]:
            agree = np.array([(a == b).mean() for a, b in zip(masks[rung], masks["fp32"], strict=True)])
            jfr = jf(masks[rung], root, seq, [p.stem for p in paths], ids) if scored else float("nan")
            rows.append(
                {
                    "sequence": seq,
                    "objects": len(ids),
                    "frames": len(frames),
                    "precision": rung,
                    "speed vs ours fp32": seconds["fp32"] / seconds[rung],
                    "min per-frame agreement (%)": 100 * agree.min(),
                    "mean agreement (%)": 100 * agree.mean(),
                    f"fp32 pixels near a tie (%, margin < {TIE_MARGIN})": 100 * np.mean(ties),
                    "J&F fp32 (%)": jf32,
                    "J&F this rung (%)": jfr,
                    "|dJ&F| (points)": abs(jfr - jf32),
                }
            )
            print(rows[-1], flush=True)
    shutil.rmtree(exported.parent)
    table = pd.DataFrame(rows)
    scored = table[table["J&F fp32 (%)"].notna()]
    for rung in list(runners)[1:]:
        part = scored[scored["precision"] == rung]
        if len(part):
            jf32, jfr = part["J&F fp32 (%)"].mean(), part["J&F this rung (%)"].mean()
            summary = {"sequence": "all scored", "objects": part["objects"].sum(), "frames": part["frames"].sum(),
                       "precision": rung, "speed vs ours fp32": part["speed vs ours fp32"].mean(),
                       "min per-frame agreement (%)": part["min per-frame agreement (%)"].min(),
                       "mean agreement (%)": part["mean agreement (%)"].mean(),
                       f"fp32 pixels near a tie (%, margin < {TIE_MARGIN})": part.iloc[:, 7].mean(),
                       "J&F fp32 (%)": jf32, "J&F this rung (%)": jfr, "|dJ&F| (points)": abs(jfr - jf32)}  # fmt: skip
            table = pd.concat([table, pd.DataFrame([summary])], ignore_index=True)
            print(summary, flush=True)
    return table.round(3)


def ort_settings(n_frames: int, repeats: int) -> pd.DataFrame:
    """ONNX Runtime session settings (intra-op threads x graph optimisation level) beside PyTorch fp32 at the same
    thread count, on parity case A's first frames; alternated in this process, best of `repeats`."""
    import onnxruntime

    from stcn.inference.ort_backend import OnnxSTCN

    folder = Path(tempfile.mkdtemp())
    weights_file, source = weights(folder)
    export_for_ort(weights_file)
    frames, first = blackswan(n_frames)
    net = load_model(weights_file)
    runs = {}
    for threads in (1, os.cpu_count() or 1):
        runs[("torch", threads, "-")] = net
        for level in ("basic", "all"):
            runs[("onnxruntime", threads, level)] = OnnxSTCN(weights_file.with_suffix(".onnx"), threads, level)
    times: dict[tuple, list[float]] = {key: [] for key in runs}
    masks = {}
    for _ in range(repeats):
        for key, net_ in runs.items():
            torch.set_num_threads(key[1])
            run_ours(net_, frames[:2], first, [1], InferenceSettings())  # warm-up
            start = time.perf_counter()
            masks[key] = run_ours(net_, frames, first, [1], InferenceSettings())
            times[key].append(time.perf_counter() - start)
            print(key, f"{times[key][-1] / n_frames:.3f} s/frame", flush=True)
    shutil.rmtree(folder)
    rows = []
    for key, t in times.items():
        base = min(times[("torch", key[1], "-")])
        agree = min((a == b).mean() for a, b in zip(masks[key], masks[("torch", key[1], "-")], strict=True))
        rows.append({"backend": key[0], "threads": key[1], "graph optimisation": key[2],
                     "provider": "CPUExecutionProvider" if key[0] == "onnxruntime" else "-", "frames": n_frames,
                     "s/frame (best)": min(t) / n_frames, "speed vs torch fp32 (same threads)": base / min(t),
                     "min per-frame agreement with torch fp32 (%)": 100 * agree})  # fmt: skip
    print(f"weights: {source}; onnxruntime {onnxruntime.__version__}, providers "
          f"{onnxruntime.get_available_providers()}", flush=True)  # fmt: skip
    return pd.DataFrame(rows).round(3)


def memory_child(frames: int, max_memory: int | None, scale: float) -> dict:
    """Run one long synthetic video (real blackswan frames, cycled forward and backward) and report peak RSS."""
    net = model()
    paths = sorted((DAVIS / "JPEGImages/480p/blackswan").glob("*.jpg"))
    size = None
    cycle = []
    for p in paths:
        rgb = read_frame(p)
        if scale != 1:
            import cv2

            size = (round(rgb.shape[1] * scale), round(rgb.shape[0] * scale))
            rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
        cycle.append(rgb)
    cycle += cycle[-2:0:-1]
    first = read_mask(DAVIS / "Annotations/480p/blackswan/00000.png")
    if size is not None:
        import cv2

        first = cv2.resize(first, size, interpolation=cv2.INTER_NEAREST)
    core = InferenceCore(net, InferenceSettings(max_memory_frames=max_memory))
    process = psutil.Process()
    rss = []
    start = time.perf_counter()
    for t in range(frames):
        core.step(
            image_tensor(cycle[t % len(cycle)]),
            one_hot(first, [1]) if t == 0 else None,
            [1] if t == 0 else None,
            is_last=t == frames - 1,
            need_output=True,
        )
        rss.append(process.memory_info().rss / 2**20)
    return {
        "seconds": time.perf_counter() - start,
        "memory_frames": len(core.memory),
        "rss_after_10_frames_mb": rss[9],
        "peak_rss_during_video_mb": max(rss),
        "growth_mb": max(rss) - rss[9],
        "process_peak_rss_mb (incl. model set-up)": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def memory(scale: float) -> pd.DataFrame:
    rows = []
    for frames in (100, 1000):
        for max_memory in (None, 10):
            cmd = [sys.executable, __file__, "--child", str(frames), "--scale", str(scale)]
            if max_memory:
                cmd += ["--max-memory", str(max_memory)]
            out = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.splitlines()[-1])
            rows.append({"frames": frames, "--max-memory-frames": max_memory or "unbounded", **out})
            print(rows[-1], flush=True)
    return pd.DataFrame(rows).round(1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--part", choices=["speed", "agreement", "ort", "memory", "all"], default="all")
    ap.add_argument("--frames", type=int, default=20, help="frames of blackswan for the speed part (parity case A: 20)")
    ap.add_argument("--repeats", type=int, default=2, help="alternated repeats of the speed part (best is kept)")
    ap.add_argument("--agreement-frames", type=int, default=12, help="frames per sequence for the agreement part")
    ap.add_argument(
        "--weights", type=Path, help="an STCN checkpoint for the agreement part [default: seeded random weights]"
    )
    ap.add_argument(
        "--paths",
        nargs="+",
        metavar="PATH",
        help="speed part: only these paths besides the reference "
        f"and ours fp32 (of: {ORT!r}, 'ours fast', 'ours bf16', {DEFAULT_ALLOCATOR!r}) [default: all]",
    )
    ap.add_argument(
        "--resolution",
        type=int,
        help="agreement part: shorter side to run at [default: the --weights sidecar's trained resolution, else 480p]",
    )
    ap.add_argument("--ort-frames", type=int, default=6, help="frames of blackswan for the ONNX Runtime part")
    ap.add_argument("--scale", type=float, default=0.5, help="frame scale for the long-video memory part")
    ap.add_argument("--threads", type=int, default=None, help="torch threads [default: torch's, one per core]")
    ap.add_argument("--child", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--speed-child", help=argparse.SUPPRESS)
    ap.add_argument("--weights-file", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--max-memory", type=int, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    if a.child:
        print(json.dumps(memory_child(a.child, a.max_memory, a.scale)))
        return
    if a.speed_child:
        masks_file = a.weights_file.with_suffix(".masks.npy")
        print(json.dumps(speed_child(a.speed_child, a.weights_file, a.frames, masks_file)))
        return
    if a.part in ("speed", "all"):
        load = os.getloadavg()
        table, note = speed(a.frames, a.repeats, a.threads, a.paths)
        write_section(
            "Inference speed (480p) vs the original path" + (f" (--paths {', '.join(a.paths)})" if a.paths else ""),
            table,
            notes=(
                "Compute time per video with frames already decoded (I/O excluded): padding, inference, "
                "un-padding/resize/argmax. 'reference' is the dense re-implementation of the original release's "
                "evaluation path (benchmarks/dense_reference.py: dense affinity, top-k softmax scattered into the "
                "dense matrix, bmm, full-length probability tensor, BatchNorm unfolded, NCHW, the original's own "
                "out-of-place decoder and fusion code). Each path runs in a process of its own (a 3-frame warm-up, "
                "then the timed video), the paths alternating, on the same 1-object blackswan frames (parity case "
                "A): ours as `stcn segment` runs it (stcn/inference/allocator.py keeps freed feature maps in the "
                f"heap), the reference with glibc's default allocator, as the original scripts run. '{ORT}' runs the "
                "`stcn export` graphs (opset 18, BatchNorm folded) in ONNX Runtime's default CPU provider with the "
                "read-out in numpy host code (`stcn.inference.numpy_core`, as `stcn segment --backend onnxruntime`). "
                f"{note} "
                f"Load average (1/5/15 min) at start: {load[0]:.1f}/{load[1]:.1f}/{load[2]:.1f}, "
                f"at end: {os.getloadavg()[0]:.1f}; {torch.get_num_threads()} torch thread(s) on "
                f"{os.cpu_count()} cores."
            ),
        )
    if a.part in ("agreement", "all"):
        load = os.getloadavg()
        resolution = a.resolution
        if resolution is None and a.weights is not None and (trained := trained_resolution(a.weights)) is not None:
            resolution = trained[0]  # the weights' sidecar: run them at the resolution they were trained for
        title = "Precision ladder: mask agreement and J&F vs fp32"
        if a.weights:
            title += f" ({'/'.join(a.weights.parts[-3:-1])} weights, at {resolution or 'native 480'}p)"
        write_section(
            title,
            agreement(a.agreement_frames, a.weights, resolution),
            notes=(
                f"Weights: {a.weights or 'seeded random weights (tests/conftest.py)'}; first frames of every "
                "bundled sequence (tennis: 2 objects + void), "
                + (
                    f"resized to {resolution}p (shorter side, as `stcn segment --resolution {resolution}`; "
                    "the weights' sidecar gives it when --resolution is not given) and the masks resized back to "
                    "480p for scoring. "
                    if resolution
                    else "at their own size (480p). "
                )
                + "Agreement = fraction of pixels whose label equals the fp32 run's, per frame. "
                "fast = bf16 convolutions with the key projection, affinity, top-k, softmax, read-out and "
                "aggregation in fp32; bf16 = autocast throughout. 'Near a tie' = pixels of the fp32 run whose two most "
                "likely labels differ by less than the margin (mean over propagated frames): with untrained weights "
                "many pixels sit there and any rounding difference may flip them. J&F = J&F-Mean (%) of the rung's "
                "masks against the sequence's ground truth on the frames run, first and last excluded (the official "
                "rule); |dJ&F| = its difference from fp32 in points (goal <= 0.2 on trained weights); 'all scored' = "
                "the mean over the scored sequences (tennis has too few frames to score). With --weights and "
                "onnxruntime installed, the ONNX Runtime path (fp32 graphs of `stcn export`) is a row too. Speed "
                "ratios are single runs (see the speed section for alternated timings). "
                f"Load average at start: {load[0]:.1f}, at end: {os.getloadavg()[0]:.1f}."
            ),
        )
    if a.part in ("ort", "all"):
        import onnxruntime

        load = os.getloadavg()
        write_section(
            "ONNX Runtime settings",
            ort_settings(a.ort_frames, a.repeats),
            notes=(
                f"`stcn export` graphs of the parity weights run by ONNX Runtime {onnxruntime.__version__} "
                f"(providers available: {', '.join(onnxruntime.get_available_providers())}; the oneDNN provider is "
                "not in the PyPI wheel) vs PyTorch fp32 with the same thread count, on the first blackswan frames "
                "(480p, 1 object), frames decoded beforehand; the memory read-out is host code (torch for PyTorch, "
                "numpy for ONNX Runtime, as `stcn segment`). "
                "Alternated in one process, best of the repeats. 'basic' = constant folding and redundant-node "
                "removal, 'all' = also the layout (NCHWc) and fusion passes. "
                f"Load average (1/5/15 min) at start: {load[0]:.1f}/{load[1]:.1f}/{load[2]:.1f}, "
                f"at end: {os.getloadavg()[0]:.1f}."
            ),
        )
    if a.part in ("memory", "all"):
        write_section(
            "Inference peak RSS on long videos",
            memory(a.scale),
            notes=(
                f"Real blackswan frames cycled forward/backward, scaled by {a.scale} (to keep the 1000-frame runs "
                "short), 1 object, mem_every 5, fp32. RSS is sampled after every frame (psutil); growth is the "
                "peak during the video minus the RSS after frame 10. Unbounded memory (official behaviour) grows; "
                "--max-memory-frames 10 keeps frame 0 + the 9 most recent memory frames and RSS stays flat. "
                "The process peak includes generating the seeded weights before the video starts."
            ),
        )


if __name__ == "__main__":
    main()
