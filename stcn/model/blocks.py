"""Building blocks of the STCN decoder and fusion: ResBlock, CBAM, upsampling."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ResBlock(nn.Module):
    """x (+ 3x3 conv shortcut when the width changes) + conv2(relu(conv1(relu(x)))); biases, no BN."""

    def __init__(self, in_dim: int, out_dim: int | None = None):
        super().__init__()
        out_dim = out_dim or in_dim
        self.downsample = None if in_dim == out_dim else nn.Conv2d(in_dim, out_dim, 3, padding=1)
        self.conv1 = nn.Conv2d(in_dim, out_dim, 3, padding=1)
        self.conv2 = nn.Conv2d(out_dim, out_dim, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r = self.conv2(F.relu(self.conv1(F.relu(x)), inplace=True))
        shortcut = x if self.downsample is None else self.downsample(x)
        return r.add_(shortcut)  # in place: one feature map less to allocate (conv2's backward needs no output)


class ChannelGate(nn.Module):
    """CBAM channel attention: shared MLP over global average and max pooling."""

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        # index 0 is a flatten in the official layout, so the linear layers are mlp.1 and mlp.3
        self.mlp = nn.Sequential(
            nn.Flatten(),
            nn.Linear(channels, channels // reduction),
            nn.ReLU(),
            nn.Linear(channels // reduction, channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        att = self.mlp(x.mean((2, 3))) + self.mlp(x.amax((2, 3)))
        return x * torch.sigmoid(att)[:, :, None, None]


class _SpatialConv(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 1, 7, padding=3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class SpatialGate(nn.Module):
    """CBAM spatial attention: 7x7 conv over the channel-wise max and mean."""

    def __init__(self):
        super().__init__()
        self.spatial = _SpatialConv()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = torch.cat([x.amax(1, keepdim=True), x.mean(1, keepdim=True)], 1)
        return x * torch.sigmoid(self.spatial(pooled))


class CBAM(nn.Module):
    """Convolutional Block Attention Module: channel gate, then spatial gate."""

    def __init__(self, channels: int):
        super().__init__()
        self.ChannelGate = ChannelGate(channels)
        self.SpatialGate = SpatialGate()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.SpatialGate(self.ChannelGate(x))


class FeatureFusion(nn.Module):
    """Fuses value features with the key encoder's f16: ResBlock -> x + CBAM(x) -> ResBlock."""

    def __init__(self, in_dim: int, out_dim: int):
        super().__init__()
        self.block1 = ResBlock(in_dim, out_dim)
        self.attention = CBAM(out_dim)
        self.block2 = ResBlock(out_dim, out_dim)

    def forward(self, x: torch.Tensor, f16: torch.Tensor) -> torch.Tensor:
        x = self.block1(torch.cat([x, f16], 1))
        return self.block2(x + self.attention(x))


class UpsampleBlock(nn.Module):
    """3x3 conv on the skip feature + bilinear x2 of the coarser feature, then a ResBlock."""

    def __init__(self, skip_dim: int, up_dim: int, out_dim: int):
        super().__init__()
        self.skip_conv = nn.Conv2d(skip_dim, up_dim, 3, padding=1)
        self.out_conv = ResBlock(up_dim, out_dim)

    def forward(self, skip: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
        x = self.skip_conv(skip)
        x += F.interpolate(up, scale_factor=2, mode="bilinear", align_corners=False)
        return self.out_conv(x)
