"""Training S2M (scribble-to-mask) the MiVOS way: strokes simulated from ground-truth masks.

    result = train_s2m(S2MTrainConfig(out="models/s2m", davis="data/davis17", static="data/static"))

Training images: the static image set (every `*.jpg` with a `.png` mask beside it, mask > 127 = object)
and the frames of DAVIS's `train_split`, one object at a time (other objects count as background).
Each sample is rescaled, cropped around the object, flipped at random, and gets one simulated
interaction (stcn.interactive.simulate): an empty or erroneous current mask with positive / negative
strokes. The loss is the binary cross-entropy of S2M's logits against the object's mask.

Held-out scoring: the annotated frames of DAVIS's `heldout_split` (every `eval_step`-th), each object,
one first round (empty mask, a positive stroke) and one correction round (erroneous mask, strokes on
its errors), seeded so that every model sees the same strokes. Scored: the trained S2M, the seeded
stand-in (`--s2m` unset) and a baseline without a network (first round: the positive stroke's bounding
box filled; correction: the current mask with the strokes painted in). With `exclude_heldout`, static images
whose folder or name starts with a held-out sequence's name are left out of training (the bundled static
stand-in is cut from every bundled DAVIS video, every 10th frame); the report says how many were kept.

Writes `out/weights.pth` (S2M's state dict, the tensor names of MiVOS's `s2m.pth`: it loads strict),
`out/dvclive/` (loss and IoU per step, held-out IoUs in the summary) and `out/evaluation.json`.

This module is the training loop; the rest by job: `s2m_config.py` (the knobs), `s2m_samples.py` (the images and
their simulated interactions), `s2m_eval.py` (the held-out scoring), `s2m_report.py` (reports/s2m.md).
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from stcn.errors import UserError
from stcn.interactive.s2m import S2M
from stcn.interactive.s2m_config import EVALUATION, WEIGHTS, S2MTrainConfig
from stcn.interactive.s2m_eval import evaluate_heldout
from stcn.interactive.s2m_report import report_markdown  # noqa: F401  (re-exported, as training_samples)
from stcn.interactive.s2m_samples import Sample, StrokeSamples, training_samples
from stcn.interactive.weights import load_strict, seeded


def build_model(cfg: S2MTrainConfig) -> S2M:
    """S2M from `cfg.init` (strict) or seeded random weights."""
    model = S2M()
    return load_strict(model, cfg.init, "S2M") if cfg.init else seeded(model, cfg.seed)


def train_s2m(cfg: S2MTrainConfig, progress: bool | None = None) -> dict[str, Any]:
    """Train S2M per `cfg`; writes out/weights.pth, out/dvclive/, out/evaluation.json; returns the evaluation."""
    from stcn.train.checkpointing import atomic_save
    from stcn.train.live import TrainLog

    if cfg.iterations < 1 or cfg.batch_size < 1 or cfg.crop < 16 or cfg.size < cfg.crop:
        raise UserError(f"train_s2m: iterations/batch_size >= 1, crop >= 16 and size >= crop needed ({cfg})")
    out = Path(cfg.out)
    samples, heldout, seen = training_samples(cfg)
    device = torch.device(cfg.device)
    torch.manual_seed(cfg.seed)
    model = build_model(cfg).to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, fused=True)  # fused: 4x faster steps on CPU
    loader = torch.utils.data.DataLoader(
        StrokeSamples(samples, cfg), batch_size=cfg.batch_size, num_workers=cfg.num_workers, shuffle=False
    )
    out.mkdir(parents=True, exist_ok=True)
    log = TrainLog(out / "dvclive", cfg.iterations, 0, dataclasses.asdict(cfg), progress=progress)
    losses: list[float] = []
    start = time.perf_counter()
    try:
        for step, batch in enumerate(loader):
            x, gt = batch["x"].to(device), batch["gt"].to(device)
            logits = model(x)
            loss = F.binary_cross_entropy_with_logits(logits, gt)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
            if step % cfg.log_every == 0 or step == cfg.iterations - 1:
                pred = logits.detach() > 0
                inter = (pred & (gt > 0.5)).sum().item()
                union = (pred | (gt > 0.5)).sum().item()
                log.log(step, {"loss": losses[-1], "iou": inter / union if union else 1.0})
        recalibrate_batchnorm(model, samples, cfg, device)
        seconds = time.perf_counter() - start
        atomic_save(model.state_dict(), out / WEIGHTS)
        result = evaluate_heldout(model.eval(), cfg) if cfg.davis else {"rows": []}
        result.update(
            train_images=len(samples), heldout_sequences=heldout, iterations=cfg.iterations, seconds=round(seconds, 1),
            train_images_from_heldout_videos=seen,
            first_loss=float(np.mean(losses[: max(1, len(losses) // 10)])),
            last_loss=float(np.mean(losses[-max(1, len(losses) // 10) :])),
        )  # fmt: skip
        if log.live is not None:
            for row in result["rows"]:
                log.live.summary.setdefault("heldout", {})[f"{row['round']}/{row['method']}"] = row["iou"]
            log.live.make_summary()
    finally:
        log.close()
    (out / EVALUATION).write_text(json.dumps(result, indent=1) + "\n")
    return result


@torch.no_grad()
def recalibrate_batchnorm(model: S2M, samples: list[Sample], cfg: S2MTrainConfig, device: torch.device) -> None:
    """BatchNorm's statistics as the plain average over `cfg.bn_batches` fresh training batches ("precise BN"):
    after a short run the running averages still lag the weights, and the evaluation-mode masks suffer."""
    if cfg.bn_batches < 1:
        return
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
    extra = StrokeSamples(samples, dataclasses.replace(cfg, seed=cfg.seed + 1, iterations=cfg.bn_batches))
    model.train()
    for batch in torch.utils.data.DataLoader(extra, batch_size=cfg.batch_size, num_workers=cfg.num_workers):
        model(batch["x"].to(device))
    for m, momentum in zip(norms, momenta, strict=True):
        m.momentum = momentum
