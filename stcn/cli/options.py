"""Options shared by the command modules of several areas (declared once: the same flag, default and help)."""

from __future__ import annotations

import os

import typer

from stcn.inference.settings import InferenceSettings


def _set_quiet(quiet: bool) -> bool:
    """`--quiet`: no progress output for the rest of the process (the same as `STCN_QUIET=1`)."""
    if quiet:
        os.environ["STCN_QUIET"] = "1"
    return quiet


QUIET = typer.Option(False, "--quiet", "-q", callback=_set_quiet, help="No progress output (or set STCN_QUIET=1).")

# inference options shared by `stcn segment`, `stcn evaluate`, `stcn interact` ...; the defaults are InferenceSettings'
D = InferenceSettings
WEIGHTS = typer.Option(..., help="STCN checkpoint (official format).")
TOP_K = typer.Option(D.top_k, help="Memory entries kept per query pixel.")
MEM_EVERY = typer.Option(D.mem_every, help="Add a memory frame every N frames.")
INCLUDE_LAST = typer.Option(D.include_last, help="Keep the previous frame in a temporary memory slot.")
PRECISION = typer.Option(
    "auto",
    help="auto: fast where the device runs half precision natively (CUDA; a CPU with AMX / AVX512-BF16), else fp32 "
    "(said in one line); fp32 (exact); fast (half-precision convolutions, fp32 memory read-out); bf16 (CPU) / fp16 "
    "(CUDA) throughout.",
)
MAX_MEMORY_FRAMES = typer.Option(D.max_memory_frames, help="Bound memory to frame 0 + the most recent frames.")
DEVICE = typer.Option(None, help="cpu or cuda (default: cuda when available).")
RESOLUTION = typer.Option(
    None,
    help="Process frames resized to this shorter side; outputs keep the input size (default: the resolution in "
    "the weights' sidecar weights.json, written by stcn train; else as given).",
)
BACKEND = typer.Option(
    "torch",
    help="torch (PyTorch, --weights a checkpoint) or onnxruntime (ONNX Runtime, --weights a `stcn export` folder; "
    "CPU, fp32; pip install 'stcn[onnx]').",
)
