"""GPU readiness in one script (under 8 minutes on a CUDA machine): inference and training speed, agreement, memory.

    python benchmarks/gpu.py                      # on a CUDA machine: prints and writes "GPU readiness"
    python benchmarks/gpu.py --device cpu --quick # a short smoke run of the same code on CPU (writes nothing)

1. inference FPS at 480p on the bundled DAVIS val sequences (seeded weights) at every rung of the device's
   precision ladder (CUDA: fp32, fast, fp16);
2. fp32 mask agreement of the device with the CPU (same weights, same frames);
3. training iterations/s at crop 384, batch 4, AMP (fp16 + GradScaler on CUDA; bf16 on CPU) for stage 0
   (single-object network) and stage 3 (two objects);
4. peak GPU memory of each part.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from conftest import DAVIS  # noqa: E402

from benchmarks.inference import model, run_ours  # noqa: E402
from benchmarks.report import write_section  # noqa: E402
from benchmarks.train import PAPER_CROP, batch  # noqa: E402
from stcn.data.folders import davis_sequences  # noqa: E402
from stcn.data.images import read_frame, read_mask  # noqa: E402
from stcn.inference import InferenceSettings  # noqa: E402
from stcn.inference.settings import PRECISIONS  # noqa: E402


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def reset_peak(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()


def peak_mb(device: str) -> float:
    return torch.cuda.max_memory_allocated() / 2**20 if device.startswith("cuda") else float("nan")


def sequences(max_frames: int) -> list[tuple[str, list[np.ndarray], np.ndarray, list[int]]]:
    """Decoded frames, first mask and ids of every bundled DAVIS 2017 val sequence."""
    out = []
    for seq in davis_sequences(DAVIS, "2017", "val"):
        frames = [read_frame(p) for p in seq.frames[:max_frames]]
        first = read_mask(seq.annotations[seq.stems[0]])
        out.append((seq.name, frames, first, sorted(int(v) for v in np.unique(first) if v not in (0, 255))))
    return out


def inference(device: str, max_frames: int) -> tuple[list[dict], dict[str, np.ndarray]]:
    """FPS per precision rung over all sequences (one warm-up sequence first), and the fp32 masks."""
    net = model().to(device)
    seqs = sequences(max_frames)
    run_ours(net, seqs[0][1][:3], seqs[0][2], seqs[0][3], InferenceSettings(device=device))  # warm-up
    rows, fp32 = [], {}
    for rung in PRECISIONS[torch.device(device).type]:
        settings = InferenceSettings(precision=rung, device=device)
        reset_peak(device)
        frames = seconds = 0.0
        for name, seq_frames, first, ids in seqs:
            sync(device)
            start = time.perf_counter()
            masks = run_ours(net, seq_frames, first, ids, settings)
            sync(device)
            seconds += time.perf_counter() - start
            frames += len(seq_frames)
            if rung == "fp32":
                fp32[name] = masks
        rows.append({"part": f"inference 480p, {rung}", "frames": int(frames), "FPS / it/s": frames / seconds,
                     "peak GPU MB": peak_mb(device)})  # fmt: skip
        print(rows[-1], flush=True)
    return rows, fp32


def agreement(device: str, fp32: dict[str, np.ndarray], max_frames: int) -> dict:
    """Per-frame fp32 mask agreement of `device` with the CPU on the first sequence."""
    seq_name, frames, first, ids = sequences(max_frames)[0]
    cpu = run_ours(model(), frames, first, ids, InferenceSettings())
    agree = [(a == b).mean() for a, b in zip(cpu, fp32[seq_name][: len(frames)], strict=True)]
    row = {"part": f"fp32 masks {device} vs CPU ({seq_name})", "frames": len(frames),
           "min per-frame agreement (%)": 100 * min(agree)}  # fmt: skip
    print(row, flush=True)
    return row


def training(device: str, stage: int, crop: int, batch_size: int, steps: int) -> dict:
    """Iterations/s of full training steps with AMP (median of `steps` after a warm-up)."""
    from stcn.model import STCN
    from stcn.train.forward import TrainingForward
    from stcn.train.loss import compute_losses

    single = stage == 0
    torch.manual_seed(0)
    net = STCN(single_object=single).to(device)
    fwd = TrainingForward(net).eval()  # BatchNorm frozen, as in training
    opt = torch.optim.Adam(net.parameters(), lr=1e-5, weight_decay=1e-7)
    cuda = device.startswith("cuda")
    scaler = torch.amp.GradScaler("cuda", enabled=cuda)
    data = {k: v.to(device) for k, v in batch(crop, batch_size, 1 if single else 2).items()}
    if single:
        data["selector"] = None
    reset_peak(device)
    times = []
    for i in range(steps + 1):
        sync(device)
        start = time.perf_counter()
        with torch.autocast(torch.device(device).type, dtype=torch.float16 if cuda else torch.bfloat16):
            out = fwd(data["rgb"], data["gt"], None if single else data["sec_gt"], data["selector"])
            loss = compute_losses(out, data, 0)["total_loss"]
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        sync(device)
        if i:
            times.append(time.perf_counter() - start)
    s = sorted(times)[len(times) // 2]
    row = {"part": f"training stage {stage}, crop {crop}, batch {batch_size}, AMP", "frames": batch_size * 3,
           "FPS / it/s": 1 / s, "peak GPU MB": peak_mb(device)}  # fmt: skip
    print(row, flush=True)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda", help="cuda (default) or cpu for a smoke run")
    ap.add_argument("--quick", action="store_true", help="few frames, small crop, 1 step: checks the script runs")
    ap.add_argument("--frames", type=int, default=50, help="frames per sequence for inference")
    ap.add_argument("--steps", type=int, default=5, help="timed training steps per stage")
    ap.add_argument("--write", action="store_true", help="write the section even when not on CUDA")
    a = ap.parse_args()
    if a.device.startswith("cuda") and not torch.cuda.is_available():
        sys.exit("error: no CUDA device (use --device cpu --quick for a smoke run)")
    frames, crop, batch_size, steps = (3, 128, 1, 1) if a.quick else (a.frames, PAPER_CROP, 4, a.steps)
    start = time.perf_counter()
    rows, fp32 = inference(a.device, frames)
    rows.append(agreement(a.device, fp32, min(frames, 10)))
    for stage in (0, 3):
        rows.append(training(a.device, stage, crop, batch_size, steps))
    table = pd.DataFrame(rows).round(3)
    name = torch.cuda.get_device_name() if a.device.startswith("cuda") else "CPU"
    notes = (
        f"Device: {name}. Seeded random weights (tests/conftest.py). Inference: every bundled DAVIS 2017 val "
        f"sequence at 480p, first {frames} frames, compute only (frames decoded beforehand, masks arg-maxed on "
        "the device). Agreement: fp32 masks of this device vs the CPU on the first sequence. Training: full "
        "iterations (3 frames, backward, Adam) on random tensors, AMP = fp16 + GradScaler on CUDA. "
        f"Whole script: {time.perf_counter() - start:.0f} s; load average {os.getloadavg()[0]:.1f}."
    )
    print(table.to_markdown(index=False))
    if a.device.startswith("cuda") or a.write:
        write_section("GPU readiness (benchmarks/gpu.py)", table, notes)


if __name__ == "__main__":
    main()
