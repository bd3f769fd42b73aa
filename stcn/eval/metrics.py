"""DAVIS region (J) and boundary (F) measures and their statistics, vectorised over (..., H, W) stacks.

Every rule follows the official davis2017-evaluation code (semi-supervised task): J is the IoU
(1 when the union is empty), F is the boundary F-measure of `_seg2bmap` boundaries matched
within a disk of radius ceil(0.008 * image diagonal), and Mean/Recall/Decay are `db_statistics`.

`frame_measures` is what the scorer runs: one frame's label maps, every object on its own bounding box,
boundaries by one OpenCV morphological gradient, matches by one disk dilation per boundary map; the stack
functions (`jaccard`, `f_measure`) give the same numbers for (..., H, W) stacks of binary masks.
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


GRADIENT_2X2 = np.ones((2, 2), np.uint8)


def boundary_map(mask: np.ndarray) -> np.ndarray:
    """`seg2bmap` of one (H, W) uint8 mask in {0, 1}, as uint8 {0, 1}: max - min over each pixel's 2x2 window
    (itself, E, S, SE; pixels outside the image take no part), i.e. the official rule with its last row and
    column, by one OpenCV morphological gradient."""
    return cv2.morphologyEx(mask, cv2.MORPH_GRADIENT, GRADIENT_2X2, anchor=(0, 0))


def _box(mask: np.ndarray) -> tuple[slice, slice] | None:
    """Bounding box of the non-zero pixels of a uint8 (H, W) map plus a 1-pixel margin (no boundary pixel lies
    outside it, and inside it every pixel has the neighbours it has in the whole image); None when empty."""
    x, y, w, h = cv2.boundingRect(mask)
    if w == 0:
        return None
    return slice(max(y - 1, 0), y + h + 1), slice(max(x - 1, 0), x + w + 1)


def frame_measures(
    gt: np.ndarray, pred: np.ndarray, n_objects: int, kernel: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """J and F of objects 1..n_objects in one frame: gt and pred are (H, W) uint8 label maps (object k = label k),
    `kernel` the matching disk of the whole image (`disk(boundary_radius(shape))`). Official edge cases: J = 1
    when the union is empty; no predicted boundary -> P = 1, R = 0; no gt boundary -> P = 0, R = 1; none -> F = 1.
    """
    j, f = np.ones(n_objects), np.ones(n_objects)
    for k in range(n_objects):
        g, p = (gt == k + 1).view(np.uint8), (pred == k + 1).view(np.uint8)
        box = _box(g | p)
        if box is None:  # the object is in neither map: J = F = 1
            continue
        g, p = np.ascontiguousarray(g[box]), np.ascontiguousarray(p[box])
        j[k] = cv2.countNonZero(g & p) / cv2.countNonZero(g | p)
        gt_b, fg_b = boundary_map(g), boundary_map(p)
        n_gt, n_fg = cv2.countNonZero(gt_b), cv2.countNonZero(fg_b)
        if n_fg == 0 or n_gt == 0:
            precision, recall = (1.0 if n_fg == 0 else 0.0), (1.0 if n_gt == 0 else 0.0)
        else:
            precision = cv2.countNonZero(fg_b & cv2.dilate(gt_b, kernel)) / float(n_fg)
            recall = cv2.countNonZero(gt_b & cv2.dilate(fg_b, kernel)) / float(n_gt)
        total = precision + recall
        f[k] = 0.0 if total == 0 else 2 * precision * recall / total
    return j, f


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
