"""Loading the S2M / fusion checkpoints strictly; offline defaults: a seeded S2M stand-in, linear fusion."""

from __future__ import annotations

import sys
from collections import OrderedDict
from pathlib import Path

import torch
from torch import nn

from stcn.interactive.fusion import FusionNet, LinearFusion
from stcn.interactive.s2m import S2M
from stcn.model.checkpoint import read_state_dict, strict_load


def load_strict(model: nn.Module, source: str | Path | dict[str, torch.Tensor], what: str) -> nn.Module:
    """Load `source` into `model` with strict=True; a missing, unexpected or mis-shaped tensor is named."""
    state = read_state_dict(source) if not isinstance(source, dict) else OrderedDict(source)
    return strict_load(model, state, what)


def seeded(model: nn.Module, seed: int) -> nn.Module:
    """Re-initialise `model`'s parameters deterministically from `seed` (PyTorch's default initialisers)."""
    gen_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        for module in model.modules():
            if hasattr(module, "reset_parameters") and module is not model:
                module.reset_parameters()
    finally:
        torch.random.set_rng_state(gen_state)
    return model


def load_s2m(weights: str | Path | None, seed: int = 0, device: str = "cpu") -> S2M:
    """S2M from `s2m.pth`, or seeded stand-in weights when `weights` is None."""
    model = S2M()
    model = load_strict(model, weights, "S2M") if weights is not None else seeded(model, seed)
    return model.to(device).eval()


def load_fusion(weights: str | Path | None, device: str = "cpu") -> FusionNet | LinearFusion:
    """Fusion network from `fusion_stcn.pth`, or linear fusion (no weights) when `weights` is None."""
    if weights is None:
        return LinearFusion()
    return load_strict(FusionNet(), weights, "fusion").to(device).eval()


def describe_fusion(weights: str | Path | None) -> str:
    """How rounds are fused, in a few words: the checkpoint's path, or the linear default."""
    return str(weights) if weights is not None else "linear by frame distance (no fusion_stcn.pth)"


def stand_in_note(s2m: str | Path | None, fusion: str | Path | None) -> str | None:
    """One line saying which networks are missing (None when both weights are given): S2M is then a seeded,
    untrained stand-in, fusion the linear blend."""
    parts = []
    if s2m is None:  # its output does not depend on the strokes (about 0.49 everywhere): empty masks
        parts.append("S2M: seeded, untrained stand-in weights (no --s2m): an untrained S2M ignores the strokes, so "
                     "scribbled frames can come out empty")  # fmt: skip
    if fusion is None:
        parts.append("fusion: linear blend by frame distance (no --fusion fusion_stcn.pth), not MiVOS's network")
    return f"note: {'; '.join(parts)}" if parts else None


def announce_stand_ins(s2m: str | Path | None, fusion: str | Path | None) -> None:
    """Print `stand_in_note` on stderr when there is one."""
    if (note := stand_in_note(s2m, fusion)) is not None:
        print(note, file=sys.stderr, flush=True)
