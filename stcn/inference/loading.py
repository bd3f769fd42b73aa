"""Building an inference-ready model from a checkpoint file."""

from __future__ import annotations

from pathlib import Path

import torch

from stcn.model import STCN, load_weights


def load_model(weights: str | Path, device: str = "cpu") -> STCN:
    """STCN in eval mode on `device` (channels-last), loaded strictly from an official-format checkpoint.

    Stage-0 (4-channel) checkpoints get a zero 5th value-encoder input channel, as the official
    evaluation does.
    """
    model = load_weights(STCN(), weights)
    return model.eval().to(device).to(memory_format=torch.channels_last)
