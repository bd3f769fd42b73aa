"""Training step speed on this CPU: one full STCN training iteration (3-frame forward, bootstrapped CE,
backward, Adam step) at the paper's 384 px crop and a small 'sample profile' size, fp32 and bf16 autocast.

Inputs are random tensors of the data layer's batch shapes (the step's cost does not depend on the
pixel values); BatchNorm frozen as in training. Each setting runs in a process of its own, with glibc's
default allocator and with the inference allocator setting (stcn/inference/allocator.py), the settings
alternating over `--rounds` (best kept). Run: `python benchmarks/train.py [--sizes 384 128]` (writes the
"Training step" section of reports/benchmarks.md).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.report import write_section  # noqa: E402
from stcn.inference.allocator import OPT_OUT, tune_allocator  # noqa: E402
from stcn.model import STCN  # noqa: E402
from stcn.train.config import TrainConfig  # noqa: E402
from stcn.train.forward import TrainingForward  # noqa: E402
from stcn.train.loss import compute_losses  # noqa: E402

PAPER_CROP = TrainConfig.__dataclass_fields__["crop"].default  # the training crop default (the paper's)


def batch(size: int, batch_size: int, objects: int) -> dict[str, torch.Tensor]:
    """A training batch of the data layer's shapes with 1 or 2 objects."""
    g = torch.Generator().manual_seed(0)
    gt = (torch.rand(batch_size, 3, 1, size, size, generator=g) > 0.7).float()
    sec = (torch.rand(batch_size, 3, 1, size, size, generator=g) > 0.8).float() * (1 - gt) * (objects > 1)
    return {
        "rgb": torch.randn(batch_size, 3, 3, size, size, generator=g),
        "gt": gt,
        "sec_gt": sec,
        "selector": torch.tensor([[1.0, float(objects > 1)]] * batch_size),
        "cls_gt": (gt[:, :, 0] + 2 * sec[:, :, 0]).long(),
    }


def time_steps(size: int, batch_size: int, bf16: bool, steps: int, single: bool) -> float:
    """Seconds per training iteration (median of `steps` after one warm-up step)."""
    torch.manual_seed(0)
    net = STCN(single_object=single)
    fwd = TrainingForward(net).eval()
    opt = torch.optim.Adam(net.parameters(), lr=1e-5, weight_decay=1e-7)
    data = batch(size, batch_size, 1 if single else 2)
    times = []
    for i in range(steps + 1):
        t = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = fwd(data["rgb"], data["gt"], None if single else data["sec_gt"], None if single else data["selector"])
            loss = compute_losses(out, data if not single else {**data, "selector": None}, 0)["total_loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if i:
            times.append(time.perf_counter() - t)
    return sorted(times)[len(times) // 2]


def child(size: int, batch_size: int, bf16: bool, steps: int, single: bool) -> dict:
    """One setting in this (fresh) process; the allocator as `OPT_OUT` in the environment says."""
    tuned = tune_allocator()
    return {"seconds": time_steps(size, batch_size, bf16, steps, single), "tuned": tuned}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[PAPER_CROP, 128], help="square crop sizes")
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per setting (after 1 warm-up)")
    parser.add_argument("--rounds", type=int, default=2, help="alternated rounds over all settings (best kept)")
    parser.add_argument("--stage0", action="store_true", help="single-object (stage 0) network instead")
    parser.add_argument("--child", nargs=2, metavar=("SIZE", "PRECISION"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        size, precision = int(args.child[0]), args.child[1]
        print(json.dumps(child(size, args.batch_size, precision == "bf16", args.steps, args.stage0)))
        return
    settings = [(size, p, a) for size in args.sizes for p in ("fp32", "bf16") for a in ("default", "tuned")]
    best: dict[tuple, float] = {}
    for _ in range(args.rounds):
        for size, precision, allocator in settings:
            cmd = [sys.executable, __file__, "--child", str(size), precision, "--batch-size", str(args.batch_size),
                   "--steps", str(args.steps), *(["--stage0"] if args.stage0 else [])]  # fmt: skip
            env = {**os.environ, OPT_OUT: "default" if allocator == "default" else "tuned"}
            result = json.loads(subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout)
            if allocator == "tuned" and not result["tuned"]:
                raise SystemExit(f"the allocator setting does not apply here ({platform.libc_ver()[0] or 'no glibc'})")
            key = (size, precision, allocator)
            best[key] = min(best.get(key, float("inf")), result["seconds"])
            print(key, round(result["seconds"], 3), flush=True)
    rows = []
    for (size, precision, allocator), s in best.items():
        rows.append({
            "crop": f"{size}x{size}", "batch": args.batch_size,
            "precision": "bf16 autocast" if precision == "bf16" else "fp32",
            "allocator": "glibc default" if allocator == "default" else "tuned (as inference)",
            "s/iteration": round(s, 3), "iterations/s": round(1 / s, 3), "samples/s": round(args.batch_size / s, 3),
            "tuned vs default": round(best[(size, precision, "default")] / s, 3),
        })  # fmt: skip
    table = pd.DataFrame(rows)
    ratios = table[table["allocator"] != "glibc default"].groupby("crop", sort=False)["tuned vs default"]
    effect = "; ".join(f"{crop}: {r.min():.3f}x-{r.max():.3f}x" for crop, r in ratios)
    objects = "single-object (stage 0)" if args.stage0 else "two-object (stages 1-3)"
    notes = (
        f"One full training iteration of the {objects} network: 3 frames, key features once, memory from "
        "frame 0 (GT) and frame 1 (predicted), full-softmax read-out, bootstrapped CE, backward, Adam step; "
        f"median of {args.steps} steps after a warm-up, each setting in a fresh process, best of {args.rounds} "
        f"alternated rounds, {torch.get_num_threads()} torch threads. 'tuned' = the allocator setting `stcn "
        f"segment` / `evaluate` apply (freed feature maps stay in the heap), tuned vs default per crop: {effect}; "
        "training keeps glibc's default. Random inputs of the data layer's batch shapes (data loading is "
        "benchmarked separately). The recipe's 300k-500k iterations per stage need GPUs; the CPU numbers bound "
        "what CPU tests and smoke runs can do."
    )
    write_section("Training step", table, notes)


if __name__ == "__main__":
    main()
