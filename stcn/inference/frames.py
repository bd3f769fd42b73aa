"""Frame and mask tensors for inference: the processing size, normalisation, padding to a multiple of 16, resizing
back."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as TF

from stcn.inference.slots import padding_16, unpad  # noqa: F401  (unpad undoes pad_to_16)

MEAN = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)


def target_size(size: tuple[int, int], resolution: int | None) -> tuple[int, int]:
    """(W, H) with the shorter side `resolution` (None: unchanged), each side at least 1."""
    w, h = size
    if resolution is None:
        return w, h
    scale = resolution / min(w, h)
    return max(1, round(w * scale)), max(1, round(h * scale))


def image_tensor(rgb: np.ndarray, resolution: int | None = None) -> torch.Tensor:
    """uint8 (H, W, 3) -> normalised float (3, H, W); optionally bicubic-resized to shorter side `resolution`."""
    x = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).float().div_(255)
    x = (x - MEAN) / STD
    if resolution is not None:
        x = TF.resize(x, resolution, InterpolationMode.BICUBIC, antialias=False)
    return x


def one_hot(labels: np.ndarray, ids: list[int], resolution: int | None = None) -> torch.Tensor:
    """Label map (H, W) -> float masks (K, H, W), one per id; optionally nearest-resized."""
    masks = torch.from_numpy(np.stack([labels == i for i in ids]).astype(np.float32))
    if resolution is not None:
        masks = TF.resize(masks, resolution, InterpolationMode.NEAREST)
    return masks


def pad_to_16(x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int, int, int]]:
    """Zero-pad the last two dims symmetrically to multiples of 16; returns (left, right, top, bottom)."""
    pad = padding_16(*x.shape[-2:])
    return F.pad(x, pad), pad


def labels_from_prob(prob: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    """(K+1, h, w) probabilities -> uint8 argmax labels (H, W) after bilinear resize to `size`."""
    if tuple(prob.shape[-2:]) != tuple(size):
        prob = F.interpolate(prob.unsqueeze(1), size, mode="bilinear", align_corners=False).squeeze(1)
    return channel_argmax(prob).cpu().numpy()


def channel_argmax(prob: torch.Tensor) -> torch.Tensor:
    """`torch.argmax(prob, dim=0)` as uint8 (ties to the lowest channel), by K+1 element-wise passes.

    An argmax over the leading (strided) dimension of a full-resolution map is a slow reduction;
    a running maximum over the channel planes is a few fast vectorised passes.
    """
    best, labels = prob[0], torch.zeros(prob.shape[1:], dtype=torch.uint8, device=prob.device)
    for c in range(1, prob.shape[0]):
        higher = prob[c] > best
        labels.masked_fill_(higher, c)
        best = torch.maximum(best, prob[c])
    return labels
