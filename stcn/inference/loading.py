"""Building an inference-ready model from a checkpoint file."""

from __future__ import annotations

from pathlib import Path

import torch

from stcn.inference.allocator import tune_allocator
from stcn.model import STCN, load_weights
from stcn.model.fold import fold_batchnorm


def prepare_for_inference(model: STCN, device: str = "cpu") -> STCN:
    """Eval mode, frozen BatchNorm folded into the convolutions, channels-last, on `device`; the process's
    allocator keeps freed feature maps for the next frame (`tune_allocator`)."""
    tune_allocator()
    return fold_batchnorm(model.eval()).to(device).to(memory_format=torch.channels_last)


def load_model(weights: str | Path, device: str = "cpu") -> STCN:
    """STCN ready for inference on `device` (`prepare_for_inference`), loaded strictly from an official checkpoint.

    Stage-0 (4-channel) checkpoints get a zero 5th value-encoder input channel, as the official
    evaluation does.
    """
    return prepare_for_inference(load_weights(STCN(), weights), device)
