"""The STCN training augmentations, drawn from an explicit `numpy.random.Generator`.

Geometry: each torchvision op of the original release (RandomAffine, RandomHorizontalFlip,
RandomResizedCrop, Resize + RandomCrop) becomes a 3x3 matrix on pixel-centre coordinates; the
ops of one frame are multiplied into one matrix and applied once with `cv2.warpAffine` (image
bicubic after an area pre-shrink when the warp shrinks it, mask nearest), so image and mask
stay aligned by construction. Colour: ColorJitter / RandomGrayscale with torchvision's ranges
and random order, on float tensors.

Which ops are per sequence and which per frame follows the original code (its `all_*`
transforms are re-seeded with one seed per sequence, its `pair_*` ones with one seed per frame):
    stage 0 (static):  sequence: affine(scale 0.8-1.5) + h-flip, jitter(0.1, 0.05, 0.05, 0.05)
                       + grayscale(0.05); frame: affine(20 deg, scale 0.9-1.1, shear 10),
                       resize + random crop, jitter(0.1, 0.05, 0.05, 0), TPS warp (p 0.33).
    video stages:      sequence: h-flip + random-resized-crop (scale 0.36-1, BL30K 0.25-1),
                       jitter(0.1, 0.03, 0.03, 0) + grayscale(0.05); frame: affine(15 deg,
                       shear 10), jitter(0.01, 0.01, 0.01, 0).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torchvision.transforms.v2.functional as TF

from stcn.data.stream.tps import random_tps_pair

IM_MEAN = (0.485, 0.456, 0.406)
IM_STD = (0.229, 0.224, 0.225)
FILL = tuple(round(255 * m) for m in IM_MEAN)  # the original fills images with the mean colour
SHRINK_PREFILTER = 0.8  # below this scale the image is area-resized first (anti-aliasing)


# --- geometry ------------------------------------------------------------------------------
def translation(tx: float, ty: float) -> np.ndarray:
    """3x3 translation."""
    return np.array([[1.0, 0, tx], [0, 1.0, ty], [0, 0, 1.0]])


def centred_affine(size: tuple[int, int], angle: float, scale: float = 1.0, shear: float = 0.0) -> np.ndarray:
    """Rotation (deg), isotropic scale and x-shear (deg) about the centre of an (H, W) canvas."""
    h, w = size
    a, s = math.radians(angle), math.radians(shear)
    rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    lin = scale * rot @ np.array([[1.0, -math.tan(s)], [0.0, 1.0]])
    m = np.eye(3)
    m[:2, :2] = lin
    cx, cy = (w - 1) / 2, (h - 1) / 2
    return translation(cx, cy) @ m @ translation(-cx, -cy)


def hflip(width: int) -> np.ndarray:
    """Horizontal flip of a canvas `width` pixels wide."""
    return np.array([[-1.0, 0, width - 1], [0, 1.0, 0], [0, 0, 1.0]])


def crop_resize(box: tuple[float, float, float, float], out: tuple[int, int]) -> np.ndarray:
    """Map the box (top, left, height, width) onto an (H, W) output, as crop-then-resize does."""
    top, left, bh, bw = box
    sy, sx = out[0] / bh, out[1] / bw
    return np.array([[sx, 0, (0.5 - left) * sx - 0.5], [0, sy, (0.5 - top) * sy - 0.5], [0, 0, 1.0]])


def random_affine(
    rng: np.random.Generator,
    size: tuple[int, int],
    degrees: float,
    scale: tuple[float, float] = (1.0, 1.0),
    shear: float = 0.0,
) -> np.ndarray:
    """torchvision RandomAffine(degrees, scale, shear) without translation, as a matrix."""
    return centred_affine(size, rng.uniform(-degrees, degrees), rng.uniform(*scale), rng.uniform(-shear, shear))


def random_resized_crop_box(
    rng: np.random.Generator,
    size: tuple[int, int],
    scale: tuple[float, float],
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
) -> tuple[int, int, int, int]:
    """torchvision RandomResizedCrop's box (top, left, height, width): 10 tries, then a centre crop."""
    h, w = size
    area = h * w
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(*log_ratio))
        cw, ch = round(math.sqrt(target * aspect)), round(math.sqrt(target / aspect))
        if 0 < cw <= w and 0 < ch <= h:
            return int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1)), ch, cw
    in_ratio = w / h
    if in_ratio < ratio[0]:
        cw, ch = w, round(w / ratio[0])
    elif in_ratio > ratio[1]:
        ch, cw = h, round(h * ratio[1])
    else:
        cw, ch = w, h
    return (h - ch) // 2, (w - cw) // 2, ch, cw


def resize_random_crop(rng: np.random.Generator, size: tuple[int, int], crop: int) -> np.ndarray:
    """torchvision Resize(crop) (shorter side -> crop) then RandomCrop(crop), as a matrix."""
    h, w = size
    nh, nw = (crop, int(crop * w / h)) if h <= w else (int(crop * h / w), crop)
    top, left = int(rng.integers(0, nh - crop + 1)), int(rng.integers(0, nw - crop + 1))
    resize = np.array([[nw / w, 0, 0.5 * nw / w - 0.5], [0, nh / h, 0.5 * nh / h - 0.5], [0, 0, 1.0]])
    return translation(-left, -top) @ resize


def warp_pair(
    image: np.ndarray, mask: np.ndarray, matrix: np.ndarray, out: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """Apply the source->output `matrix` to image (bicubic, mean fill) and mask (nearest, 0 fill)."""
    oh, ow = out
    mask_out = cv2.warpAffine(mask, matrix[:2], (ow, oh), flags=cv2.INTER_NEAREST, borderValue=0)
    h, w = image.shape[:2]
    sx, sy = np.linalg.norm(matrix[:2, 0]), np.linalg.norm(matrix[:2, 1])
    if min(sx, sy) < SHRINK_PREFILTER:
        nw, nh = max(1, round(w * min(sx, 1.0))), max(1, round(h * min(sy, 1.0)))
        image = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA)
        back = np.array([[w / nw, 0, 0.5 * w / nw - 0.5], [0, h / nh, 0.5 * h / nh - 0.5], [0, 0, 1.0]])
        matrix = matrix @ back
    image_out = cv2.warpAffine(image, matrix[:2], (ow, oh), flags=cv2.INTER_CUBIC, borderValue=FILL)
    return image_out, mask_out


# --- colour --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Jitter:
    """ColorJitter(brightness, contrast, saturation, hue) + RandomGrayscale(grey) ranges."""

    brightness: float = 0.0
    contrast: float = 0.0
    saturation: float = 0.0
    hue: float = 0.0
    grey: float = 0.0

    def sample(self, rng: np.random.Generator) -> tuple[list[tuple[str, float]], bool]:
        """Draw the ops in random order with their factors, and whether to turn grey."""
        ranges = {"brightness": self.brightness, "contrast": self.contrast}
        ranges |= {"saturation": self.saturation, "hue": self.hue}
        ops = []
        for i in rng.permutation(4):
            name = _OPS[i]
            r = ranges[name]
            if r > 0:
                ops.append((name, rng.uniform(-r, r) if name == "hue" else rng.uniform(1 - r, 1 + r)))
        return ops, bool(self.grey > 0 and rng.random() < self.grey)


_OPS = ("brightness", "contrast", "saturation", "hue")
_ADJUST = {
    "brightness": TF.adjust_brightness,
    "contrast": TF.adjust_contrast,
    "saturation": TF.adjust_saturation,
    "hue": TF.adjust_hue,
}


def apply_jitter(image: torch.Tensor, params: tuple[list[tuple[str, float]], bool]) -> torch.Tensor:
    """Apply sampled `Jitter` params to a float (3, H, W) image in [0, 1]."""
    ops, grey = params
    for name, factor in ops:
        image = _ADJUST[name](image, factor)
    if grey:
        image = TF.rgb_to_grayscale(image, num_output_channels=3)
    return image


def to_float(image: np.ndarray) -> torch.Tensor:
    """uint8 (H, W, 3) -> float (3, H, W) in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).float().div_(255)


def normalise(image: torch.Tensor) -> torch.Tensor:
    """ImageNet mean/std normalisation of a float (3, H, W) image in [0, 1]."""
    return TF.normalize(image, list(IM_MEAN), list(IM_STD))


# --- the two recipes -----------------------------------------------------------------------
STATIC_SEQUENCE_JITTER = Jitter(0.1, 0.05, 0.05, 0.05, grey=0.05)
STATIC_FRAME_JITTER = Jitter(0.1, 0.05, 0.05, 0.0)
VIDEO_SEQUENCE_JITTER = Jitter(0.1, 0.03, 0.03, 0.0, grey=0.05)
VIDEO_FRAME_JITTER = Jitter(0.01, 0.01, 0.01, 0.0)


def _finish(
    images: list[np.ndarray], seq_jitter: Jitter, frame_jitter: Jitter, rng: np.random.Generator, colour: bool
) -> list[torch.Tensor]:
    seq = seq_jitter.sample(rng)
    out = []
    for im in images:
        t = to_float(im)
        if colour:
            t = apply_jitter(apply_jitter(t, seq), frame_jitter.sample(rng)).clamp_(0, 1)
        out.append(normalise(t))
    return out


def static_pseudo_video(
    image: np.ndarray,
    mask: np.ndarray,
    rng: np.random.Generator,
    crop: int = 384,
    frames: int = 3,
    tps_p: float = 0.33,
    colour: bool = True,
) -> tuple[list[torch.Tensor], list[np.ndarray]]:
    """Stage 0: `frames` augmented copies of one RGB uint8 image and its uint8 mask.

    Returns normalised (3, crop, crop) tensors and warped uint8 masks (values of `mask`).
    `colour=False` skips the photometric ops (for alignment tests).
    """
    size = mask.shape[:2]
    sequence = random_affine(rng, size, 0, scale=(0.8, 1.5))
    if rng.random() < 0.5:
        sequence = hflip(size[1]) @ sequence
    ims, masks = [], []
    for _ in range(frames):
        pair = random_affine(rng, size, 20, scale=(0.9, 1.1), shear=10)
        matrix = resize_random_crop(rng, size, crop) @ pair @ sequence
        im, m = warp_pair(image, mask, matrix, (crop, crop))
        if rng.random() < tps_p:
            im, m = random_tps_pair(im, m, rng, scale=0.02)
        ims.append(im)
        masks.append(m)
    return _finish(ims, STATIC_SEQUENCE_JITTER, STATIC_FRAME_JITTER, rng, colour), masks


def video_frames(
    images: list[np.ndarray],
    masks: list[np.ndarray],
    rng: np.random.Generator,
    crop: int = 384,
    scale: tuple[float, float] = (0.36, 1.0),
    colour: bool = True,
) -> tuple[list[torch.Tensor], list[np.ndarray]]:
    """Video stages: augment chosen frames (RGB uint8) and label masks (uint8 ids) of one video.

    Returns normalised (3, crop, crop) tensors and warped uint8 label masks.
    """
    size = masks[0].shape[:2]
    sequence = np.eye(3) if rng.random() >= 0.5 else hflip(size[1])
    sequence = crop_resize(random_resized_crop_box(rng, size, scale), (crop, crop)) @ sequence
    ims, out_masks = [], []
    for image, mask in zip(images, masks, strict=True):
        matrix = random_affine(rng, (crop, crop), 15, shear=10) @ sequence
        im, m = warp_pair(image, mask, matrix, (crop, crop))
        ims.append(im)
        out_masks.append(m)
    return _finish(ims, VIDEO_SEQUENCE_JITTER, VIDEO_FRAME_JITTER, rng, colour), out_masks
