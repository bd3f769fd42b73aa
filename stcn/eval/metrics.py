"""DAVIS region (J) and boundary (F) measures and their statistics, vectorised over (..., H, W) stacks.

Every rule follows the official davis2017-evaluation code (semi-supervised task): J is the IoU
(1 when the union is empty), F is the boundary F-measure of `_seg2bmap` boundaries matched
within a disk of radius ceil(0.008 * image diagonal), and Mean/Recall/Decay are `db_statistics`.
"""

from __future__ import annotations

import math
import warnings

import cv2
import numpy as np

BOUND_TH = 0.008


def disk(radius: int) -> np.ndarray:
    """A uint8 disk structuring element: 1 where x² + y² <= radius² (as skimage.morphology.disk)."""
    r = np.arange(-radius, radius + 1)
    return (r[None, :] ** 2 + r[:, None] ** 2 <= radius**2).astype(np.uint8)


def boundary_radius(shape: tuple[int, ...], bound_th: float = BOUND_TH) -> int:
    """Matching tolerance in pixels for an (H, W) image: ceil(bound_th * diagonal), or bound_th if >= 1."""
    if bound_th >= 1:
        return int(bound_th)
    return int(math.ceil(bound_th * float(np.linalg.norm(shape[-2:]))))


def seg2bmap(seg: np.ndarray) -> np.ndarray:
    """Boundary pixels of binary masks (..., H, W): a pixel differing from its E, S or SE neighbour.

    As the official rule, the last row compares only with E, the last column only with S (the
    outside counts as background) and the bottom-right pixel is never a boundary.
    """
    seg = seg.astype(bool, copy=False)
    b = np.zeros(seg.shape, dtype=bool)
    x = seg[..., :-1, :-1]
    inner = b[..., :-1, :-1]
    np.not_equal(x, seg[..., :-1, 1:], out=inner)
    inner |= x != seg[..., 1:, :-1]
    inner |= x != seg[..., 1:, 1:]
    np.not_equal(seg[..., -1, :-1], seg[..., -1, 1:], out=b[..., -1, :-1])
    np.not_equal(seg[..., :-1, -1], seg[..., 1:, -1], out=b[..., :-1, -1])
    return b


def _count(x: np.ndarray) -> np.ndarray:
    """Number of True pixels per (H, W) plane."""
    return np.count_nonzero(x.reshape(*x.shape[:-2], x.shape[-2] * x.shape[-1]), axis=-1)


def jaccard(gt: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """IoU of binary masks (..., H, W) per plane; 1 where both masks are empty."""
    gt, pred = gt.astype(bool, copy=False), pred.astype(bool, copy=False)
    if gt.shape != pred.shape:
        raise ValueError(f"shape mismatch: gt {gt.shape} vs prediction {pred.shape}")
    inter, union = _count(gt & pred), _count(gt | pred)
    with np.errstate(invalid="ignore", divide="ignore"):
        j = inter / union
    return np.where(union == 0, 1.0, j)


def _matches(fg_b: np.ndarray, gt_b: np.ndarray, kernel: np.ndarray) -> tuple[int, int]:
    """Boundary pixels of each map within the disk of the other map's boundary, on their bounding box."""
    rows = np.flatnonzero((fg_b | gt_b).any(axis=1))
    cols = np.flatnonzero((fg_b | gt_b).any(axis=0))
    box = np.s_[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    fg, gt = fg_b[box].view(np.uint8), gt_b[box].view(np.uint8)
    fg_match = np.count_nonzero(fg & cv2.dilate(gt, kernel))
    gt_match = np.count_nonzero(gt & cv2.dilate(fg, kernel))
    return fg_match, gt_match


def f_measure(
    gt: np.ndarray, pred: np.ndarray, bound_th: float = BOUND_TH, image_shape: tuple[int, int] | None = None
) -> np.ndarray:
    """Boundary F-measure of binary masks (..., H, W) per plane, with the official empty-boundary cases.

    `image_shape` sets the tolerance when the masks are crops of larger images (default: their size).
    """
    if gt.shape != pred.shape:
        raise ValueError(f"shape mismatch: gt {gt.shape} vs prediction {pred.shape}")
    lead = gt.shape[:-2]
    gt_b = np.ascontiguousarray(seg2bmap(gt)).reshape(-1, *gt.shape[-2:])
    fg_b = np.ascontiguousarray(seg2bmap(pred)).reshape(-1, *gt.shape[-2:])
    n_gt, n_fg = _count(gt_b).astype(float), _count(fg_b).astype(float)
    kernel = disk(boundary_radius(image_shape or gt.shape, bound_th))
    # the official edge cases: no predicted boundary -> P=1, R=0; no gt boundary -> P=0, R=1; none -> 1, 1
    precision = np.where(n_fg == 0, 1.0, 0.0)
    recall = np.where(n_gt == 0, 1.0, 0.0)
    for i in np.flatnonzero((n_fg > 0) & (n_gt > 0)):
        fg_match, gt_match = _matches(fg_b[i], gt_b[i], kernel)
        precision[i] = fg_match / n_fg[i]
        recall[i] = gt_match / n_gt[i]
    total = precision + recall
    with np.errstate(invalid="ignore", divide="ignore"):
        f = np.where(total == 0, 0.0, 2 * precision * recall / total)
    return f.reshape(lead)


def statistics(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean, Recall (fraction > 0.5) and Decay (first-quarter mean - last-quarter mean) over the last axis."""
    values = np.asarray(values, dtype=float)
    n = values.shape[-1]
    # the official bin edges, including their uint8 cast (it wraps for sequences above 256 frames)
    ids = (np.round(np.linspace(1, n, 5) + 1e-10) - 1).astype(np.uint8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=RuntimeWarning)
        mean = np.nanmean(values, axis=-1)
        recall = np.nanmean(values > 0.5, axis=-1)
        first = np.nanmean(values[..., ids[0] : ids[1] + 1], axis=-1)
        last = np.nanmean(values[..., ids[3] : ids[4] + 1], axis=-1)
    return mean, recall, first - last
