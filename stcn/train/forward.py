"""The training forward pass of the original release: 3 frames, memory from frame 0 (GT) and 1 (predicted).

Batch tensors (as the data layer yields them, batched):
    rgb (B, 3, 3, H, W) normalised frames; gt (B, 3, 1, H, W) first object mask;
    sec_gt (B, 3, 1, H, W) second object mask and selector (B, 2) for multi-object stages.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from stcn.model.memory import full_softmax, l2_affinity
from stcn.model.network import STCN


def aggregate_logits(prob: torch.Tensor) -> torch.Tensor:
    """Object probabilities (B, K, H, W) -> logits (B, 1 + K, H, W) of [prod(1 - p), p...], clamped."""
    prob = prob.float()
    new_prob = torch.cat([torch.prod(1 - prob, dim=1, keepdim=True), prob], 1).clamp(1e-7, 1 - 1e-7)
    return torch.log(new_prob / (1 - new_prob))


class TrainingForward(nn.Module):
    """Wraps an `STCN` so one `forward(batch)` call runs the whole 3-frame pass (one DDP forward)."""

    def __init__(self, net: STCN):
        super().__init__()
        self.net = net

    @property
    def single_object(self) -> bool:
        return self.net.single_object

    def _value(self, frame: torch.Tensor, f16: torch.Tensor, mask: torch.Tensor, other: torch.Tensor | None):
        """Batched value encoding (B, 512, h, w): the given 'others' channel, not the sum of the batch."""
        masks = mask if other is None else torch.cat([mask, other], 1)
        return self.net.value_encoder(frame, f16, masks)

    def _segment(
        self,
        query: tuple[torch.Tensor, ...],
        mem_key: torch.Tensor,
        mem_values: list[torch.Tensor],
        selector: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits (B, 1 + K, H, W) and soft masks (B, K, H, W) of a query frame from the memory.

        query = (key, thin, f8, f4) of that frame; mem_key (B, 64, T, h, w); mem_values: one
        (B, 512, T, h, w) per object slot.
        """
        key, thin, f8, f4 = query
        b, _, _, h, w = mem_key.shape
        affinity = full_softmax(l2_affinity(mem_key.flatten(2), key.flatten(2)))  # (B, THW, hw)
        logits = []
        for value in mem_values:
            read = torch.bmm(value.flatten(2), affinity).view(b, -1, h, w)
            logits.append(self.net.decoder(torch.cat([read, thin], 1), f8, f4))
        prob = torch.sigmoid(torch.cat(logits, 1))
        if selector is not None:
            prob = prob * selector[:, :, None, None]
        logits = aggregate_logits(prob)
        return logits, F.softmax(logits, dim=1)[:, 1:]

    def forward(
        self,
        rgb: torch.Tensor,
        gt: torch.Tensor,
        sec_gt: torch.Tensor | None = None,
        selector: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """{'logits_1', 'logits_2'} (B, 1 + K, H, W) and {'mask_1', 'mask_2'} soft masks (B, K, H, W)."""
        b, t = rgb.shape[:2]
        key, thin, f16, f8, f4 = (x.view(b, t, *x.shape[1:]) for x in self.net.encode_key(rgb.flatten(0, 1)))
        mem_key = key.transpose(1, 2)  # (B, 64, T, h, w)

        def query(i: int) -> tuple[torch.Tensor, ...]:
            return key[:, i], thin[:, i], f8[:, i], f4[:, i]

        if self.single_object:
            values = [self._value(rgb[:, 0], f16[:, 0], gt[:, 0], None).unsqueeze(2)]
        else:
            values = [
                self._value(rgb[:, 0], f16[:, 0], gt[:, 0], sec_gt[:, 0]).unsqueeze(2),
                self._value(rgb[:, 0], f16[:, 0], sec_gt[:, 0], gt[:, 0]).unsqueeze(2),
            ]
        logits_1, mask_1 = self._segment(query(1), mem_key[:, :, :1], values, selector)
        if self.single_object:
            new = [self._value(rgb[:, 1], f16[:, 1], mask_1, None)]
        else:
            new = [
                self._value(rgb[:, 1], f16[:, 1], mask_1[:, :1], mask_1[:, 1:2]),
                self._value(rgb[:, 1], f16[:, 1], mask_1[:, 1:2], mask_1[:, :1]),
            ]
        values = [torch.cat([v, n.unsqueeze(2)], 2) for v, n in zip(values, new, strict=True)]
        logits_2, mask_2 = self._segment(query(2), mem_key[:, :, :2], values, selector)
        return {"logits_1": logits_1, "logits_2": logits_2, "mask_1": mask_1, "mask_2": mask_2}
