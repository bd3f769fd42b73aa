"""Inference-only graph clean-up: fold frozen BatchNorm layers into the convolutions before them.

In eval mode a BatchNorm is an affine map per channel, so `bn(conv(x))` equals one convolution with
scaled weights and a shifted bias (`torch.nn.utils.fusion.fuse_conv_bn_eval`). Folding removes a full
pass over every feature map of the encoders; the outputs agree up to float rounding.
"""

from __future__ import annotations

from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

# (conv, bn) attribute pairs of the torchvision Bottleneck and our biased BasicBlock / stems
_PAIRS = (("conv1", "bn1"), ("conv2", "bn2"), ("conv3", "bn3"))


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """Fold every `convN -> bnN` pair and every `conv, bn` run inside a Sequential (a ResNet downsample,
    DeepLabV3+'s ASPP and head blocks) of an eval-mode model, in place."""
    if model.training:
        raise ValueError("fold_batchnorm needs a model in eval mode")
    for module in model.modules():
        for conv_name, bn_name in _PAIRS:
            conv, bn = getattr(module, conv_name, None), getattr(module, bn_name, None)
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                setattr(module, conv_name, fuse_conv_bn_eval(conv, bn))
                setattr(module, bn_name, nn.Identity())
        if isinstance(module, nn.Sequential):  # downsample = (conv, bn), DeepLab's (conv, bn, relu) blocks
            for i in range(len(module) - 1):
                if isinstance(module[i], nn.Conv2d) and isinstance(module[i + 1], nn.BatchNorm2d):
                    module[i], module[i + 1] = fuse_conv_bn_eval(module[i], module[i + 1]), nn.Identity()
    return model


def count_batchnorm(model: nn.Module) -> int:
    """BatchNorm layers left in `model` (0 after `fold_batchnorm`)."""
    return sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
