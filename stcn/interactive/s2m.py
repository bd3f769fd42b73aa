"""S2M, the scribble-to-mask network of MiVOS: DeepLabV3+ with a ResNet-50 backbone, 6 input channels.

Input: normalised RGB, this object's current mask (hard 0/1), positive and negative scribble maps.
Output: one logit per pixel (the caller applies the sigmoid). Module names follow the original
checkpoint `s2m.pth` (`backbone.*` = the ResNet-50 without its classifier, `classifier.*` = the
DeepLabV3+ head), so it loads with `strict=True`. Output stride 16: layer4 dilated, ASPP rates 6/12/18.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import resnet50
from torchvision.models.segmentation.deeplabv3 import ASPP

IN_CHANNELS = 6
ASPP_RATES = (6, 12, 18)


def dtype_of(module: nn.Module) -> torch.dtype:
    """The dtype of a module's parameters (a prepared `fast` S2M mixes fp32 and half-precision parts)."""
    return next(module.parameters()).dtype


class Backbone(nn.Module):
    """ResNet-50 stem and stages (no pooling/fc), first conv widened to 6 channels; returns layer1 and layer4."""

    def __init__(self, in_channels: int = IN_CHANNELS):
        super().__init__()
        net = resnet50(weights=None, replace_stride_with_dilation=[False, False, True])
        self.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1, self.relu, self.maxpool = net.bn1, net.relu, net.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = net.layer1, net.layer2, net.layer3, net.layer4

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        low = self.layer1(x)
        return low, self.layer4(self.layer3(self.layer2(low.to(dtype_of(self.layer2)))))


class DeepLabHeadV3Plus(nn.Module):
    """Low-level projection (256 -> 48), ASPP on layer4 (2048 -> 256), 3x3 fuse and a 1x1 classifier."""

    def __init__(self, num_classes: int = 1, low_channels: int = 256, in_channels: int = 2048):
        super().__init__()
        self.project = nn.Sequential(
            nn.Conv2d(low_channels, 48, 1, bias=False), nn.BatchNorm2d(48), nn.ReLU(inplace=True)
        )
        self.aspp = ASPP(in_channels, list(ASPP_RATES), 256)
        self.classifier = nn.Sequential(
            nn.Conv2d(304, 256, 3, padding=1, bias=False),
            nn.BatchNorm2d(256),
            nn.ReLU(inplace=True),
            nn.Conv2d(256, num_classes, 1),
        )

    def forward(self, low: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        dtype = dtype_of(self)
        low, out = self.project(low.to(dtype)), out.to(dtype)
        out = F.interpolate(self.aspp(out), size=low.shape[-2:], mode="bilinear", align_corners=False)
        return self.classifier(torch.cat([low, out], 1))


class S2M(nn.Module):
    """Scribble-to-mask: (B, 6, H, W) -> logits (B, 1, H, W)."""

    def __init__(self):
        super().__init__()
        self.backbone = Backbone()
        self.classifier = DeepLabHeadV3Plus()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.classifier(*self.backbone(x))
        return F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)

    def object_probability(
        self, image: torch.Tensor, mask: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor
    ) -> torch.Tensor:
        """Probabilities (K, H, W) for K objects from one image (3, H, W) and K each of mask/pos/neg (K, H, W)."""
        k = mask.shape[0]
        x = torch.cat([image.expand(k, -1, -1, -1), mask[:, None], positive[:, None], negative[:, None]], 1)
        weight = self.backbone.conv1.weight  # a prepared model (`prepare_s2m`): channels-last, maybe half weights
        if weight.is_contiguous(memory_format=torch.channels_last):
            x = x.to(weight.dtype).contiguous(memory_format=torch.channels_last)
        return torch.sigmoid(self(x).float())[:, 0]


def prepare_s2m(model: S2M, precision: str = "fp32", device: str = "cpu") -> S2M:
    """A copy of `model` ready for strokes -> mask: eval mode, BatchNorm folded into the convolutions,
    channels-last, on `device`, with weights cast once to the device's half type (bf16 on CPU: AMX /
    AVX512-BF16; fp16 on CUDA) by precision rung (`stcn.inference.settings`), so no autocast re-casts them
    on each call:

    - fp32: nothing in half precision;
    - fast: layers 2-4 and the DeepLabV3+ head (about 90 % of the work); the stem and layer 1 stay fp32, as
      their stride-4 features go straight to the head's boundary detail (measured on blackswan 480p with the
      sample-trained S2M: mask IoU vs fp32 >= 0.997 this way, 0.987-0.993 with layer 1 in bf16 too);
    - bf16 / fp16: every layer.
    """
    from stcn.inference.settings import check_precision, half_dtype
    from stcn.model.fold import fold_batchnorm

    check_precision(precision, device)
    prepared = fold_batchnorm(copy.deepcopy(model).eval()).to(device).to(memory_format=torch.channels_last)
    half = half_dtype(device)
    if precision == "fast":
        for part in (prepared.backbone.layer2, prepared.backbone.layer3, prepared.backbone.layer4):
            part.to(half)
        prepared.classifier.to(half)
    elif precision != "fp32":
        prepared.to(half)
    return prepared
