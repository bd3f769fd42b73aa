"""Loading official (and our own) STCN checkpoints with strict key and shape checks."""

from __future__ import annotations

import contextlib
import warnings
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from stcn.errors import UserError
from stcn.model.onnx_format import check_checkpoint_path

CONV1 = "value_encoder.conv1.weight"


def read_state_dict(path: str | Path) -> OrderedDict[str, torch.Tensor]:
    """The tensors of a checkpoint file: a plain state dict, or one under 'network'/'model'/'state_dict'."""
    path = Path(path)
    check_checkpoint_path(path)
    # quiet: torch's notices about the pickle protocol of a file it then refuses
    data = load_tensors(path, lambda e: UserError(f"cannot read checkpoint {path}: {load_failure(e)}"), quiet=True)
    for key in ("network", "model", "state_dict"):
        if isinstance(data, dict) and isinstance(data.get(key), dict):
            data = data[key]
    if not isinstance(data, dict) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise UserError(f"not an STCN state dict: {path}")
    return OrderedDict((k.removeprefix("module."), v) for k, v in data.items())


def load_tensors(path: Path, refused: Callable[[Exception], UserError], quiet: bool = False) -> Any:
    """`torch.load` of a file of tensors and plain containers only (`weights_only`: no other pickled object is ever
    loaded), onto the CPU; whatever it raises (torch raises many types for truncated / foreign files) becomes the
    UserError `refused(error)`. `quiet`: torch's warnings are not shown."""
    try:
        with warnings.catch_warnings() if quiet else contextlib.nullcontext():
            if quiet:
                warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise refused(e) from None


def load_failure(e: Exception) -> str:
    """Why torch.load (weights_only) refused a file, in our words: PyTorch's own text suggests
    `weights_only=False`, an unsafe fix we never take for a weights file."""
    text = " ".join(str(e).split())
    if "weights_only" in text or "Weights only" in text:
        return "not a checkpoint of tensors (it holds other pickled objects, which are never loaded: unsafe)"
    return f"not a PyTorch checkpoint or a damaged one ({type(e).__name__}: {text[:120]})"


def pad_value_encoder_input(state: dict[str, torch.Tensor], orthogonal: bool = False) -> None:
    """Give a stage-0 (4-channel) value encoder its 5th input channel: zeros, or orthogonal init."""
    w = state.get(CONV1)
    if w is None or w.shape[1] != 4:
        return
    extra = torch.zeros(w.shape[0], 1, *w.shape[2:], dtype=w.dtype)
    if orthogonal:
        nn.init.orthogonal_(extra)
    state[CONV1] = torch.cat([w, extra], 1)


def load_weights(
    model: nn.Module, source: str | Path | dict[str, torch.Tensor], orthogonal_pad: bool = False
) -> nn.Module:
    """Load a checkpoint into `model` with strict=True; a mismatch names the offending tensor."""
    state = read_state_dict(source) if not isinstance(source, dict) else OrderedDict(source)
    expected = model.state_dict()
    if expected[CONV1].shape[1] == 5:
        pad_value_encoder_input(state, orthogonal_pad)
    return strict_load(model, state, "STCN")


def strict_load(model: nn.Module, state: dict[str, torch.Tensor], what: str) -> nn.Module:
    """`model.load_state_dict(state, strict=True)`, a missing, unexpected or mis-shaped tensor being one
    UserError that names it (`what` names the network)."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        parts = [f"missing {missing[0]!r}"] if missing else []
        parts += [f"unexpected {unexpected[0]!r}"] if unexpected else []
        counts = f"{len(missing)} missing, {len(unexpected)} unexpected"
        raise UserError(f"checkpoint does not match {what}: {' and '.join(parts)} ({counts})")
    for name, tensor in state.items():
        if tuple(tensor.shape) != tuple(expected[name].shape):
            raise UserError(
                f"{what} checkpoint tensor {name} has shape {list(tensor.shape)}, expected {list(expected[name].shape)}"
            )
    model.load_state_dict(state, strict=True)
    return model


def official_state_dict(model: nn.Module) -> OrderedDict[str, torch.Tensor]:
    """The model's tensors as the official release saves them (no 'module.' prefix, CPU)."""
    model = getattr(model, "module", model)
    return OrderedDict((k, v.detach().cpu()) for k, v in model.state_dict().items())
