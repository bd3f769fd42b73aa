"""Bootstrapped cross-entropy over the aggregated logits, and IoU of the predicted masks."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from stcn.train.recipe import bootstrap_fraction


def bootstrapped_ce(logits: torch.Tensor, target: torch.Tensor, fraction: float) -> torch.Tensor:
    """Mean CE over the hardest `fraction` of pixels (all pixels when fraction >= 1)."""
    if fraction >= 1:
        return F.cross_entropy(logits, target)
    raw = F.cross_entropy(logits, target, reduction="none").flatten()
    return torch.topk(raw, int(raw.numel() * fraction), sorted=False).values.mean()


def _iou_parts(pred: torch.Tensor, gt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    pred, gt = pred > 0.5, gt > 0.5
    return (pred & gt).sum().float(), (pred | gt).sum().float()


def compute_losses(
    out: dict[str, torch.Tensor], batch: dict[str, torch.Tensor], iteration: int
) -> dict[str, torch.Tensor]:
    """'total_loss' (summed over frames 1, 2; averaged over the batch), 'loss_1', 'loss_2', 'p',
    and the IoU numerator/denominator 'iou_i', 'iou_u' (first object; plus the second when present).

    A sample without a second object (selector[1] == 0) is scored on 2 classes, else on 3.
    """
    fraction = bootstrap_fraction(iteration)
    cls_gt = batch["cls_gt"]
    selector = batch.get("selector")
    b, t = cls_gt.shape[:2]
    losses: dict[str, torch.Tensor] = {}
    total = inter = union = 0
    for i in range(1, t):
        logits = out[f"logits_{i}"]
        loss_i = 0
        for j in range(b):
            classes = 3 if selector is not None and selector[j, 1] > 0.5 else 2
            loss_i = loss_i + bootstrapped_ce(logits[j : j + 1, :classes], cls_gt[j : j + 1, i], fraction) / b
        losses[f"loss_{i}"] = loss_i
        total = total + loss_i
        n, d = _iou_parts(out[f"mask_{i}"][:, :1], batch["gt"][:, i])
        inter, union = inter + n, union + d
        if selector is not None:
            n, d = _iou_parts(out[f"mask_{i}"][:, 1:2], batch["sec_gt"][:, i])
            inter, union = inter + n, union + d
    losses["total_loss"] = total
    losses["iou_i"], losses["iou_u"] = inter, union
    losses["p"] = torch.tensor(fraction)
    return losses


def iou(losses: dict[str, torch.Tensor]) -> float:
    """IoU of the predicted masks from `compute_losses` parts (1.0 when both are empty)."""
    u = float(losses["iou_u"])
    return float(losses["iou_i"]) / u if u > 0 else 1.0
