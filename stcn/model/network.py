"""The STCN network with the official checkpoint's module names.

Inference uses `encode_key` once per frame, `encode_value` for memory frames and `decode` on the
memory read-out; training (`stcn.train`) composes the same calls with a full-softmax read-out.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from stcn.model.blocks import ResBlock, UpsampleBlock
from stcn.model.encoders import KeyEncoder, ValueEncoder

KEY_DIM = 64
VALUE_DIM = 512


class KeyProjection(nn.Module):
    """3x3 conv 1024 -> 64 with orthogonal init and zero bias."""

    def __init__(self, in_dim: int = 1024, key_dim: int = KEY_DIM):
        super().__init__()
        self.key_proj = nn.Conv2d(in_dim, key_dim, 3, padding=1)
        nn.init.orthogonal_(self.key_proj.weight.data)
        nn.init.zeros_(self.key_proj.bias.data)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.key_proj(x)


class Decoder(nn.Module):
    """Read-out + thin query (1024 ch, stride 16) -> one logit per pixel at full resolution."""

    def __init__(self):
        super().__init__()
        self.compress = ResBlock(1024, 512)
        self.up_16_8 = UpsampleBlock(512, 512, 256)
        self.up_8_4 = UpsampleBlock(256, 256, 256)
        self.pred = nn.Conv2d(256, 1, 3, padding=1)

    def forward(self, f16: torch.Tensor, f8: torch.Tensor, f4: torch.Tensor) -> torch.Tensor:
        x = self.compress(f16)
        x = self.up_16_8(f8, x)
        x = self.up_8_4(f4, x)
        x = self.pred(F.relu(x, inplace=True))
        return F.interpolate(x, scale_factor=4, mode="bilinear", align_corners=False)


class STCN(nn.Module):
    """Key encoder, value encoder, key projection/compression and decoder (official names)."""

    def __init__(self, single_object: bool = False):
        super().__init__()
        self.single_object = single_object
        self.key_encoder = KeyEncoder()
        self.value_encoder = ValueEncoder(4 if single_object else 5)
        self.key_proj = KeyProjection()
        self.key_comp = nn.Conv2d(1024, 512, 3, padding=1)
        self.decoder = Decoder()

    def encode_key(self, frame: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """frame (B, 3, H, W) -> key (B, 64, H/16, W/16), thin query f16 (512), f16, f8, f4."""
        f16, f8, f4 = self.key_encoder(frame)
        return self.key_proj(f16), self.key_comp(f16), f16, f8, f4

    def encode_value(self, frame: torch.Tensor, f16: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """Memory values of K objects in one frame.

        frame (1, 3, H, W) or (K, 3, H, W), f16 (1 or K, 1024, h, w), masks (K, 1, H, W)
        -> (K, 512, h, w). The "others" channel is the sum of the other objects' masks.
        """
        k = masks.shape[0]
        frame = frame.expand(k, -1, -1, -1)
        f16 = f16.expand(k, -1, -1, -1)
        if not self.single_object:
            others = masks.sum(0, keepdim=True) - masks if k > 1 else torch.zeros_like(masks)
            masks = torch.cat([masks, others], 1)
        return self.value_encoder(frame, f16, masks)

    def decode(
        self, readout: torch.Tensor, thin_query: torch.Tensor, f8: torch.Tensor, f4: torch.Tensor
    ) -> torch.Tensor:
        """Object probabilities (K, 1, H, W) from K read-outs (K, 512, h, w) and the query features."""
        k = readout.shape[0]
        x = torch.cat([readout, thin_query.expand(k, -1, -1, -1)], 1)
        return torch.sigmoid(self.decoder(x, f8.expand(k, -1, -1, -1), f4.expand(k, -1, -1, -1)))
