"""Fusing a frame's propagated probabilities with the previous round's, between two interacted frames.

FusionNet: the MiVOS difference-aware fusion network (`fusion_stcn.pth`, 12 tensors, original names).
Input (9 channels): normalised RGB, the previous round's probability of the object, this round's
propagated probability, the attention map (positive, negative) and the time planes (nc, nr).
3x3 conv 9 -> 32 + ReLU, two residual blocks (two 3x3 convs, ReLU after each sum), 3x3 conv -> 1.

LinearFusion: no weights; the two probabilities weighted by the frame's distance to the two interacted
frames (MiVOS' linear baseline). The default where fusion_stcn.pth is not at hand.
"""

from __future__ import annotations

import torch
from torch import nn

IN_CHANNELS = 9
WIDTH = 32


class FusionNet(nn.Module):
    """(B, 9, H, W) -> logits (B, 1, H, W)."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Sequential(nn.Conv2d(IN_CHANNELS, WIDTH, 3, padding=1), nn.ReLU(inplace=True))
        self.conv2 = nn.Sequential(
            nn.Conv2d(WIDTH, WIDTH, 3, padding=1), nn.ReLU(inplace=True), nn.Conv2d(WIDTH, WIDTH, 3, padding=1)
        )
        self.conv3 = nn.Sequential(
            nn.Conv2d(WIDTH, WIDTH, 3, padding=1), nn.ReLU(inplace=True), nn.Conv2d(WIDTH, WIDTH, 3, padding=1)
        )
        self.final_conv = nn.Conv2d(WIDTH, 1, 3, padding=1)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)
        x = self.relu(x + self.conv2(x))
        x = self.relu(x + self.conv3(x))
        return self.final_conv(x)

    def fuse(
        self,
        image: torch.Tensor,
        previous: torch.Tensor,
        current: torch.Tensor,
        attention: torch.Tensor,
        nc: float,
        nr: float,
    ) -> torch.Tensor:
        """Fused probabilities (K, H, W): image (3, H, W), previous/current (K, H, W), attention (K, 2, H, W)."""
        k, h, w = previous.shape
        time = torch.tensor([nc, nr], dtype=image.dtype, device=image.device).view(1, 2, 1, 1).expand(k, 2, h, w)
        x = torch.cat([image.expand(k, -1, -1, -1), previous[:, None], current[:, None], attention, time], 1)
        return torch.sigmoid(self(x))[:, 0]


class LinearFusion(nn.Module):
    """Fusion without weights: nc * current + nr * previous, so a frame next to the new interaction t takes this
    round's propagation and a frame next to the earlier interaction c keeps the previous round's."""

    def fuse(
        self,
        image: torch.Tensor,
        previous: torch.Tensor,
        current: torch.Tensor,
        attention: torch.Tensor,
        nc: float,
        nr: float,
    ) -> torch.Tensor:
        """Fused probabilities (K, H, W), same arguments as FusionNet.fuse (image and attention are unused);
        nc = |c - i| / |c - t| and nr = |t - i| / |c - t| sum to 1 for a frame i between t and c."""
        return current * nc + previous * nr
