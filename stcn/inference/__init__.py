"""Memory-based inference: a step-wise core (`InferenceCore.step`) and whole-video propagation."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from stcn.inference.core import InferenceCore
    from stcn.inference.settings import InferenceSettings

__all__ = ["InferenceCore", "InferenceSettings"]


def __getattr__(name: str):  # lazy, so that `stcn --help` does not import torch
    if name == "InferenceCore":
        from stcn.inference.core import InferenceCore

        return InferenceCore
    if name == "InferenceSettings":
        from stcn.inference.settings import InferenceSettings

        return InferenceSettings
    raise AttributeError(name)
