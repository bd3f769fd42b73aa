"""The STCN network (official checkpoint layout), its memory read-out and checkpoint loading."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from stcn.model.checkpoint import load_weights, official_state_dict
    from stcn.model.network import STCN

__all__ = ["STCN", "load_weights", "official_state_dict"]


def __getattr__(name: str):  # lazy: the torch-free modules (trained, onnx_format) import without torch
    if name == "STCN":
        from stcn.model.network import STCN

        return STCN
    if name in ("load_weights", "official_state_dict"):
        from stcn.model import checkpoint

        return getattr(checkpoint, name)
    raise AttributeError(name)
