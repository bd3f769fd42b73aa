"""Inference knobs shared by the CLI, the evaluation and the benchmarks."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # torch is imported where it is used: the CLI reads these defaults without it
    import torch

# the precision ladder per device type: fp32 (exact), fast (half-precision convolutions, fp32 memory
# read-out), and half precision everywhere (bf16 on CPU, fp16 on CUDA)
PRECISIONS = {"cpu": ("fp32", "fast", "bf16"), "cuda": ("fp32", "fast", "fp16")}


def half_dtype(device: str) -> torch.dtype:
    """The half-precision type of a device: fp16 on CUDA, bf16 elsewhere (AMX / AVX512-BF16 on CPU)."""
    import torch

    return torch.float16 if torch.device(device).type == "cuda" else torch.bfloat16


HALF_FLAGS = ("amx_bf16", "avx512_bf16")  # CPU flags (Linux /proc/cpuinfo) of native bf16 matrix / dot-product units


def native_half(device: str) -> bool:
    """Whether `device` runs half-precision convolutions natively: CUDA, or a CPU with AMX-BF16 or AVX512-BF16.

    `STCN_NATIVE_HALF=0/1` overrides the CPU's answer (tests; a CPU whose flags mislead)."""
    if str(device).startswith("cuda"):
        return True
    forced = os.environ.get("STCN_NATIVE_HALF", "")
    if forced in ("0", "1"):
        return forced == "1"
    try:
        with open("/proc/cpuinfo") as info:
            line = next((line for line in info if line.startswith("flags")), "")
    except OSError:
        return False
    flags = set(line.partition(":")[2].split())
    return any(flag in flags for flag in HALF_FLAGS)


def auto_rung(device: str, backend: str = "torch") -> tuple[str, str]:
    """(rung, why) that precision auto runs: `fast` where the device runs half precision natively (CUDA; a CPU with
    AMX / AVX512-BF16), else fp32 (emulated bf16 is several times slower); ONNX Runtime: fp32."""
    if backend == "onnxruntime":
        return "fp32", "ONNX Runtime runs fp32"
    if native_half(device):
        return "fast", "CUDA" if str(device).startswith("cuda") else "this CPU has AMX / AVX512-BF16"
    return "fp32", "this CPU has no AMX / AVX512-BF16: half precision would be emulated, slower"


def choose_precision(precision: str | None, device: str, backend: str = "torch", say: bool = False) -> str:
    """The rung that runs: `precision` as given, or `auto_rung`'s for auto (the default; with `say`, one line on
    stderr names it and why). Asking for a half-precision rung on a CPU that emulates it is warned about."""
    precision = precision or "auto"
    if precision == "auto":
        chosen, why = auto_rung(device, backend)
        if say:
            print(f"note: precision auto -> {chosen} ({why}; pass --precision to choose)", file=sys.stderr, flush=True)
        return chosen
    cpu = str(device).split(":")[0] == "cpu"
    if precision in ("fast", "bf16") and cpu and backend == "torch" and not native_half(device):
        print(f"warning: --precision {precision} on a CPU without AMX / AVX512-BF16: bf16 is emulated there and "
              "usually slower than fp32", file=sys.stderr, flush=True)  # fmt: skip
    return precision


def precision_said(asked: str | None, settings: InferenceSettings, backend: str = "torch") -> str:
    """The rung that ran, for a command's closing line: `precision fp32 (auto: this CPU has no AMX ...)`."""
    if (asked or "auto") != "auto":
        return f"precision {settings.precision}"
    return f"precision {settings.precision} (auto: {auto_rung(settings.device, backend)[1]})"


def check_precision(precision: str, device: str) -> str:
    """`precision` when it is a rung of the device's ladder; otherwise a one-line UserError."""
    from stcn.errors import UserError

    kind = str(device).split(":")[0]
    rungs = PRECISIONS.get(kind, ("fp32",))
    if precision not in rungs:
        raise UserError(f"unknown precision {precision!r} on {kind}; choose one of auto, {', '.join(rungs)}")
    return precision


@dataclass(frozen=True)
class InferenceSettings:
    """Official defaults: top-k 20, a memory frame every 5 frames, no temporary last frame, fp32."""

    top_k: int = 20
    mem_every: int = 5
    include_last: bool = False
    precision: str = "fp32"  # fp32 | fast | bf16 (CPU) / fp16 (CUDA); see PRECISIONS
    max_memory_frames: int | None = None  # None: unbounded (official); else frame 0 + most recent
    device: str = "cpu"
    resolution: int | None = None  # resize frames so the shorter side is this (YouTube-VOS: 480)

    def __post_init__(self) -> None:
        """The checks every caller gets (CLI, pipelines, benchmarks): a bad value is a UserError here."""
        from stcn.errors import UserError

        if self.top_k < 1 or self.mem_every < 1:
            raise UserError("--top-k and --mem-every must be at least 1")
        if self.max_memory_frames is not None and self.max_memory_frames < 1:
            raise UserError("--max-memory-frames must be at least 1")
        if self.resolution is not None and self.resolution < 16:
            raise UserError(f"--resolution must be at least 16 pixels, got {self.resolution}")
        check_precision(self.precision, self.device)

    @classmethod
    def from_knobs(cls, knobs: Mapping[str, Any]) -> InferenceSettings:
        """Settings from a mapping of knobs (command-line options, a params.yaml block): the keys naming a field
        are used, a missing or None value is the official default, the device is `pick_device`'s and precision
        auto is `choose_precision`'s rung (the commands' closing line says it: `precision_said`)."""
        given = {f.name: knobs[f.name] for f in fields(cls) if knobs.get(f.name) is not None and f.name != "device"}
        device = pick_device(knobs.get("device"))
        if "precision" in given:  # auto: the rung this device runs natively (commands say it in their last line)
            given["precision"] = choose_precision(given["precision"], device, knobs.get("backend") or "torch")
        return cls(**given, device=device)

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        """The official value of every knob but the device (what a null in params.yaml stands for)."""
        return {f.name: f.default for f in fields(cls) if f.name != "device"}

    @property
    def half_convs(self) -> bool:
        """Whether the convolutions run in half precision (every rung but fp32)."""
        return self.precision != "fp32"

    @property
    def fp32_readout(self) -> bool:
        """Whether keys, affinity, top-k, softmax and aggregation stay in fp32 (fp32 and fast)."""
        return self.precision in ("fp32", "fast")

    def autocast(self) -> torch.autocast:
        """Half-precision autocast (fp16 on CUDA, bf16 on CPU) unless fp32."""
        import torch

        device_type = torch.device(self.device).type
        return torch.autocast(device_type, dtype=half_dtype(self.device), enabled=self.half_convs)

    def exact(self) -> contextlib.AbstractContextManager:
        """fp32 for the memory read-out: autocast off on the `fast` rung, a no-op otherwise."""
        import torch

        if self.precision == "fast":
            return torch.autocast(torch.device(self.device).type, enabled=False)
        return contextlib.nullcontext()


def pick_device(name: str | None) -> str:
    """'cuda' when requested or available, else 'cpu'; asking for CUDA without one is a user error.
    An explicit 'cpu' does not import torch (the ONNX Runtime path runs without it)."""
    if name is not None and name.startswith("cpu"):
        return name
    import torch

    from stcn.errors import UserError

    if name in (None, "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError("--device cuda requested but no CUDA device is available")
    return name
