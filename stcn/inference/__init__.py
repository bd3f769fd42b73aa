"""Memory-based inference: a step-wise core (`InferenceCore.step`) and whole-video propagation."""

from stcn.inference.core import InferenceCore
from stcn.inference.settings import InferenceSettings

__all__ = ["InferenceCore", "InferenceSettings"]
