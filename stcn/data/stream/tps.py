"""Random thin-plate-spline (TPS) warps of an image and its mask (same warp for both).

As in the STCN release (stage 0): 12 random control points, each moved by Gaussian noise of
standard deviation `scale` (in units of the image size); the output pixel at a moved point shows
the image content of the original point. The spline is solved in NumPy, evaluated on a coarse
grid, upsampled (it is smooth) and applied with `cv2.remap`.
"""

from __future__ import annotations

import cv2
import numpy as np


def _kernel(d2: np.ndarray) -> np.ndarray:
    """TPS radial basis U(r) = r^2 log r^2, written on squared distances (0 at r = 0)."""
    return d2 * np.log(np.maximum(d2, 1e-12))


def fit_tps(centres: np.ndarray, values: np.ndarray, reg: float = 1e-6) -> np.ndarray:
    """Coefficients (n + 3, d) of the TPS through `values` (n, d) at `centres` (n, 2)."""
    n = len(centres)
    d2 = ((centres[:, None, :] - centres[None, :, :]) ** 2).sum(-1)
    p = np.hstack([np.ones((n, 1)), centres])
    a = np.zeros((n + 3, n + 3))
    a[:n, :n] = _kernel(d2) + reg * np.eye(n)
    a[:n, n:] = p
    a[n:, :n] = p.T
    b = np.zeros((n + 3, values.shape[1]))
    b[:n] = values
    return np.linalg.solve(a, b)


def eval_tps(coef: np.ndarray, centres: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Evaluate a fitted TPS at `points` (m, 2) -> (m, d)."""
    d2 = ((points[:, None, :] - centres[None, :, :]) ** 2).sum(-1)
    n = len(centres)
    return _kernel(d2) @ coef[:n] + coef[n] + points @ coef[n + 1 :]


def tps_maps(src: np.ndarray, dst: np.ndarray, height: int, width: int, step: int = 8) -> np.ndarray:
    """`cv2.remap` maps (H, W, 2) float32 moving normalised points `src` (n, 2 as x, y) to `dst`."""
    coef = fit_tps(dst, src - dst)
    gh, gw = -(-height // step), -(-width // step)
    # coarse-grid pixel positions as `cv2.resize` samples them (half-pixel centres)
    py = ((np.arange(gh) + 0.5) * height / gh - 0.5) / max(height - 1, 1)
    px = ((np.arange(gw) + 0.5) * width / gw - 0.5) / max(width - 1, 1)
    gy, gx = np.meshgrid(py, px, indexing="ij")
    grid = np.stack([gx.ravel(), gy.ravel()], 1)
    shift = eval_tps(coef, dst, grid).reshape(gh, gw, 2).astype(np.float32)
    shift = cv2.resize(shift, (width, height), interpolation=cv2.INTER_LINEAR)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    maps = np.empty((height, width, 2), np.float32)
    maps[..., 0] = xs + shift[..., 0] * (width - 1)
    maps[..., 1] = ys + shift[..., 1] * (height - 1)
    return maps


def random_tps_pair(
    image: np.ndarray, mask: np.ndarray, rng: np.random.Generator, scale: float = 0.02, points: int = 12
) -> tuple[np.ndarray, np.ndarray]:
    """Warp `image` (bilinear) and `mask` (nearest) with one random TPS; shapes are kept."""
    h, w = mask.shape[:2]
    ys = rng.choice(h, size=points, replace=False) / max(h - 1, 1)
    xs = rng.choice(w, size=points, replace=False) / max(w - 1, 1)
    src = np.stack([xs, ys], 1)
    dst = src + rng.normal(scale=scale, size=src.shape)
    maps = tps_maps(src, dst, h, w)
    warped = cv2.remap(image, maps, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    warped_mask = cv2.remap(mask, maps, None, cv2.INTER_NEAREST, borderMode=cv2.BORDER_REPLICATE)
    return warped, warped_mask
