"""Key encoder (ResNet-50 to layer3) and value encoder (ResNet-18 with biased convs, 5 input channels)."""

from __future__ import annotations

import torch
import torchvision
from torch import nn

from stcn.model.blocks import FeatureFusion


class KeyEncoder(nn.Module):
    """ResNet-50 stem + layer1 (`res2`), layer2, layer3 -> f16 (1024 ch), f8 (512), f4 (256)."""

    def __init__(self):
        super().__init__()
        resnet = torchvision.models.resnet50(weights=None)
        self.conv1, self.bn1, self.relu, self.maxpool = resnet.conv1, resnet.bn1, resnet.relu, resnet.maxpool
        self.res2, self.layer2, self.layer3 = resnet.layer1, resnet.layer2, resnet.layer3

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        f4 = self.res2(x)
        f8 = self.layer2(f4)
        f16 = self.layer3(f8)
        return f16, f8, f4


class BasicBlock(nn.Module):
    """ResNet-18 basic block whose convolutions carry biases (the official `mod_resnet`)."""

    def __init__(self, in_dim: int, out_dim: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_dim, out_dim, 3, stride=stride, padding=1)
        self.bn1 = nn.BatchNorm2d(out_dim)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(out_dim, out_dim, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(out_dim)
        self.downsample = None
        if stride != 1 or in_dim != out_dim:
            self.downsample = nn.Sequential(nn.Conv2d(in_dim, out_dim, 1, stride=stride), nn.BatchNorm2d(out_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += x if self.downsample is None else self.downsample(x)
        return self.relu(out)


def _layer(in_dim: int, out_dim: int, stride: int) -> nn.Sequential:
    return nn.Sequential(BasicBlock(in_dim, out_dim, stride), BasicBlock(out_dim, out_dim))


class ValueEncoder(nn.Module):
    """Encodes (RGB, object mask, other objects' mask) + key f16 into a 512-channel memory value."""

    def __init__(self, in_channels: int = 5):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 64, 7, stride=2, padding=3)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.layer1 = _layer(64, 64, 1)
        self.layer2 = _layer(64, 128, 2)
        self.layer3 = _layer(128, 256, 2)
        self.fuser = FeatureFusion(1024 + 256, 512)

    def forward(self, image: torch.Tensor, key_f16: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """image (K, 3, H, W), key_f16 (K, 1024, h, w), masks (K, 1 or 2, H, W): [object, others]."""
        x = torch.cat([image, masks], 1)
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fuser(x, key_f16)
