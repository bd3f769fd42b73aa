"""Inference knobs shared by the CLI, the evaluation and the benchmarks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported where it is used: the CLI reads these defaults without it
    import torch


@dataclass(frozen=True)
class InferenceSettings:
    """Official defaults: top-k 20, a memory frame every 5 frames, no temporary last frame, fp32."""

    top_k: int = 20
    mem_every: int = 5
    include_last: bool = False
    amp: bool = False
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

    def autocast(self) -> torch.autocast:
        """fp16 autocast on CUDA, bf16 on CPU; disabled unless `amp`."""
        import torch

        device_type = torch.device(self.device).type
        dtype = torch.float16 if device_type == "cuda" else torch.bfloat16
        return torch.autocast(device_type, dtype=dtype, enabled=self.amp)


def pick_device(name: str | None) -> str:
    """'cuda' when requested or available, else 'cpu'; asking for CUDA without one is a user error."""
    import torch

    from stcn.errors import UserError

    if name in (None, "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError("--device cuda requested but no CUDA device is available")
    return name
