"""S2M's held-out scoring: mean IoU of the trained S2M, the seeded stand-in and a baseline without a network, for one
first round and one correction round per object (seeded: every model sees the same strokes)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from stcn.data.images import read_frame
from stcn.errors import UserError
from stcn.interactive.s2m import S2M
from stcn.interactive.s2m_config import STAND_IN_SEED, S2MTrainConfig
from stcn.interactive.s2m_samples import _rescale, davis_samples, labels_of, network_input
from stcn.interactive.simulate import box_fill, first_round, iou, simulate
from stcn.interactive.weights import load_s2m


@torch.inference_mode()
def evaluate_heldout(model: S2M, cfg: S2MTrainConfig, stand_in: S2M | None = None) -> dict[str, Any]:
    """Mean IoU on the held-out frames: trained S2M, seeded stand-in, no-network baseline; two rounds each."""
    device = next(model.parameters()).device
    stand_in = stand_in or load_s2m(None, STAND_IN_SEED, str(device))
    samples, _ = davis_samples(cfg.davis, cfg.heldout_split, cfg.eval_step, cfg.eval_offset)
    scores: dict[tuple[str, str], list[float]] = {}
    case = 0
    for sample in samples:
        rgb, labels = read_frame(sample.image), labels_of(sample)
        rgb, labels = _rescale(rgb, labels, cfg.eval_size)
        for k in (int(i) for i in np.unique(labels) if i != 0):
            gt = labels == k
            for name, act in (
                ("first", first_round(gt, np.random.default_rng([cfg.seed, 1, case]))),
                ("correction", simulate(gt, np.random.default_rng([cfg.seed, 2, case]), empty_prob=0.0)),
            ):
                x = network_input(rgb, act)["x"][None].to(device)
                baseline = box_fill(act.positive) if name == "first" else (act.current | act.positive) & ~act.negative
                for method, pred in (
                    ("trained", model(x)[0, 0].cpu().numpy() > 0),
                    ("stand-in", stand_in(x)[0, 0].cpu().numpy() > 0),
                    ("baseline", baseline),
                ):
                    scores.setdefault((name, method), []).append(iou(pred, gt))
            case += 1
    if not scores:
        raise UserError(f"no held-out objects in DAVIS {cfg.heldout_split} of {cfg.davis}")
    rows = [{"round": r, "method": m, "iou": round(float(np.mean(v)), 4), "n": len(v)} for (r, m), v in scores.items()]
    return {"rows": rows, "heldout_frames": len(samples)}
