"""Simulated user strokes from a ground-truth mask, for training and scoring S2M (MiVOS's recipe).

A simulated interaction on one object: the current mask is empty (a first round) or an erroneous
version of the ground truth (eroded / dilated, a blob cut out or added: a later round). Positive
strokes lie in the missed part of the object (ground truth minus current mask), negative strokes in
the wrongly covered part (current mask minus ground truth), or, on an empty mask, sometimes in a
ring of background around the object. A stroke is a piece of the skeleton of the largest error
region (as a person draws along the middle of a region), thickened by one pixel and kept inside it.
Every function takes a `numpy.random.Generator`, so a seed gives the same strokes.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from skimage.morphology import skeletonize


@dataclass
class Interaction:
    """One simulated round on one object: the current mask and the positive / negative strokes (H, W) bool."""

    current: np.ndarray
    positive: np.ndarray
    negative: np.ndarray


def _disk(radius: int) -> np.ndarray:
    size = 2 * max(int(radius), 1) + 1
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))


def largest_region(region: np.ndarray) -> np.ndarray:
    """The largest 8-connected component of a bool mask (empty in, empty out)."""
    count, labels, stats, _ = cv2.connectedComponentsWithStats(region.astype(np.uint8), connectivity=8)
    if count <= 1:
        return np.zeros_like(region, dtype=bool)
    return labels == 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))


def stroke_in(region: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A stroke inside `region`: a random piece of the skeleton of its largest component, 3 px wide."""
    part = largest_region(region)
    if not part.any():
        return part
    skeleton = skeletonize(part)
    ys, xs = np.nonzero(skeleton)
    if len(ys) == 0:  # too thin for a skeleton: its innermost pixel
        dist = cv2.distanceTransform(part.astype(np.uint8), cv2.DIST_L2, 3)
        ys, xs = np.unravel_index(np.argmax(dist), dist.shape)
        ys, xs = np.atleast_1d(ys), np.atleast_1d(xs)
    i = rng.integers(len(ys))
    extent = max(np.ptp(ys), np.ptp(xs), 1)
    reach = extent * rng.uniform(0.25, 1.0)  # a piece of the skeleton around a random point on it
    keep = (ys - ys[i]) ** 2 + (xs - xs[i]) ** 2 <= reach**2
    stroke = np.zeros_like(part)
    stroke[ys[keep], xs[keep]] = True
    stroke = cv2.dilate(stroke.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    return stroke & part


def erroneous_mask(gt: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A wrong guess of `gt`: eroded or dilated by up to ~15 % of the object's size, then a blob cut or added."""
    ys, xs = np.nonzero(gt)
    if len(ys) == 0:
        return gt.copy()
    size = max(np.ptp(ys), np.ptp(xs), 2)
    radius = max(1, int(size * rng.uniform(0.02, 0.15)))
    m = gt.astype(np.uint8)
    m = cv2.erode(m, _disk(radius)) if rng.random() < 0.5 else cv2.dilate(m, _disk(radius))
    h, w = gt.shape
    cy, cx = (int(ys[rng.integers(len(ys))]), int(xs[rng.integers(len(xs))]))
    axes = (max(1, int(size * rng.uniform(0.1, 0.4))), max(1, int(size * rng.uniform(0.1, 0.4))))
    if rng.random() < 0.5:  # shift the blob's centre off the object half of the time (a false positive)
        cy = int(np.clip(cy + rng.normal(0, size / 2), 0, h - 1))
        cx = int(np.clip(cx + rng.normal(0, size / 2), 0, w - 1))
    blob = cv2.ellipse(np.zeros_like(m), (cx, cy), axes, float(rng.uniform(0, 180)), 0, 360, 1, -1).astype(bool)
    out = m.astype(bool)
    return out & ~blob if rng.random() < 0.5 else out | blob


def simulate(
    gt: np.ndarray, rng: np.random.Generator, empty_prob: float = 0.5, negative_prob: float = 0.5
) -> Interaction:
    """One simulated interaction on the object `gt` (H, W) bool: empty mask with probability `empty_prob`."""
    gt = gt.astype(bool)
    current = np.zeros_like(gt) if rng.random() < empty_prob else erroneous_mask(gt, rng)
    positive = stroke_in(gt & ~current, rng)
    if current.any():
        negative = stroke_in(current & ~gt, rng)
    elif rng.random() < negative_prob:
        ys, xs = np.nonzero(gt)
        size = max(np.ptp(ys), np.ptp(xs), 2) if len(ys) else min(gt.shape) // 4
        ring = cv2.dilate(gt.astype(np.uint8), _disk(max(2, int(size * rng.uniform(0.1, 0.3))))).astype(bool) & ~gt
        negative = stroke_in(ring, rng)
    else:
        negative = np.zeros_like(gt)
    if not positive.any() and not negative.any() and gt.any():  # the guess was right: confirm the object
        positive = stroke_in(gt, rng)
    return Interaction(current, positive, negative)


def first_round(gt: np.ndarray, rng: np.random.Generator) -> Interaction:
    """A first interaction: empty mask, one positive stroke (and no negative one)."""
    return simulate(gt, rng, empty_prob=1.0, negative_prob=0.0)


def box_fill(strokes: np.ndarray) -> np.ndarray:
    """Baseline: the bounding box of the positive strokes, filled (H, W) bool."""
    out = np.zeros_like(strokes, dtype=bool)
    ys, xs = np.nonzero(strokes)
    if len(ys):
        out[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1] = True
    return out


def iou(pred: np.ndarray, gt: np.ndarray) -> float:
    """Jaccard of two bool masks (1 when both are empty)."""
    union = np.logical_or(pred, gt).sum()
    return float(np.logical_and(pred, gt).sum() / union) if union else 1.0
