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
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from stcn.data.folders import davis_sequences
from stcn.data.images import read_frame, read_mask
from stcn.errors import UserError
from stcn.inference.frames import image_tensor
from stcn.interactive.s2m import S2M
from stcn.interactive.simulate import Interaction, box_fill, first_round, iou, simulate
from stcn.interactive.weights import load_s2m, load_strict, seeded

WEIGHTS = "weights.pth"
EVALUATION = "evaluation.json"
STAND_IN_SEED = 0  # the stand-in S2M every command uses when no --s2m is given


@dataclass
class S2MTrainConfig:
    """Knobs of one S2M training run (the `train_s2m` block of conf/config.yaml)."""

    out: str
    davis: str | None = None  # DAVIS root (train and held-out frames)
    static: str | None = None  # static image folder (image/mask pairs)
    train_split: str = "train"
    heldout_split: str = "val"
    iterations: int = 4000
    batch_size: int = 8
    lr: float = 1e-4
    crop: int = 384  # training crop (square)
    size: int = 480  # shorter side the images are scaled to (x 0.75-1.25) before cropping
    frame_step: int = 1  # every N-th annotated DAVIS training frame
    empty_prob: float = 0.5  # share of samples with an empty current mask (first rounds)
    negative_prob: float = 0.5  # share of first rounds that also get a background stroke
    eval_size: int = 480  # shorter side of the held-out frames
    eval_step: int = 5  # every N-th annotated held-out frame...
    eval_offset: int = 0  # ...from this one (the sample: 5, between the static stand-in's every 10th frame)
    exclude_heldout: bool = True  # drop static images cut from held-out videos (False: the sample's fitting)
    init: str | None = None  # None: random (seeded); else S2M weights to start from
    seed: int = 0
    device: str = "cpu"
    num_workers: int = 0
    log_every: int = 10
    bn_batches: int = 10  # batches that re-estimate BatchNorm's statistics after training (0: keep the running ones)


@dataclass
class Sample:
    """A training or held-out image and its mask; `binary`: a 0/255 static mask (object = 1)."""

    image: Path
    mask: Path
    binary: bool = False


def static_samples(root: str | Path, exclude: set[str] = frozenset()) -> list[Sample]:
    """Image/mask pairs of a static image folder (`*.jpg` + `*.png` beside it), minus names in `exclude`."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"static image folder not found: {root}")
    out = []
    for jpg in sorted(root.rglob("*.jpg")):
        png = jpg.with_suffix(".png")
        parts = jpg.relative_to(root).with_suffix("").parts
        if png.is_file() and not any(p == n or p.startswith(f"{n}_") for p in parts for n in exclude):
            out.append(Sample(jpg, png, binary=True))
    return out


def davis_samples(root: str | Path, split: str, step: int, offset: int = 0) -> tuple[list[Sample], list[str]]:
    """Every `step`-th annotated frame from `offset` of DAVIS `split` (2017 lists), and the sequence names."""
    seqs = davis_sequences(root, 2017, split)
    out = []
    for seq in seqs:
        stems = [p for p in seq.frames if p.stem in seq.annotations]
        out += [Sample(p, seq.annotations[p.stem]) for p in stems[offset :: max(1, step)]]
    return out, [s.name for s in seqs]


def labels_of(sample: Sample) -> np.ndarray:
    """The sample's label mask (H, W) uint8: object ids, 0 background (static 0/255 mask: 1 = object)."""
    if sample.binary:
        from PIL import Image

        try:
            with Image.open(sample.mask) as im:
                return (np.asarray(im.convert("L")) > 127).astype(np.uint8)
        except OSError as e:
            raise UserError(f"cannot read mask {sample.mask}: {e}") from None
    mask = read_mask(sample.mask)
    return np.where(mask == 255, 0, mask).astype(np.uint8)


def _rescale(rgb: np.ndarray, labels: np.ndarray, shorter: float) -> tuple[np.ndarray, np.ndarray]:
    h, w = labels.shape
    scale = shorter / min(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
    return rgb, cv2.resize(labels, size, interpolation=cv2.INTER_NEAREST)


def _crop_around(obj: np.ndarray, crop: int, rng: np.random.Generator) -> tuple[int, int]:
    """Top-left corner of a `crop` window holding a random pixel of the object."""
    h, w = obj.shape
    ys, xs = np.nonzero(obj)
    k = rng.integers(len(ys))
    y0 = int(np.clip(ys[k] - rng.integers(crop), 0, h - crop))
    x0 = int(np.clip(xs[k] - rng.integers(crop), 0, w - crop))
    return y0, x0


class StrokeSamples(torch.utils.data.Dataset):
    """Item i: a seeded random sample, rescaled, cropped around one object, with a simulated interaction."""

    def __init__(self, samples: list[Sample], cfg: S2MTrainConfig):
        self.samples, self.cfg = samples, cfg

    def __len__(self) -> int:
        return self.cfg.iterations * self.cfg.batch_size

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        rng = np.random.default_rng([cfg.seed, index])
        for _ in range(20):  # a crop may miss every object: draw again
            sample = self.samples[rng.integers(len(self.samples))]
            rgb, labels = read_frame(sample.image), labels_of(sample)
            ids = [int(i) for i in np.unique(labels) if i != 0]
            if not ids:
                continue
            shorter = max(cfg.crop, cfg.size * rng.uniform(0.75, 1.25))
            rgb, labels = _rescale(rgb, labels, shorter)
            obj = labels == ids[rng.integers(len(ids))]
            if not obj.any():
                continue
            y0, x0 = _crop_around(obj, cfg.crop, rng)
            rgb = rgb[y0 : y0 + cfg.crop, x0 : x0 + cfg.crop]
            obj = obj[y0 : y0 + cfg.crop, x0 : x0 + cfg.crop]
            if rng.random() < 0.5:
                rgb, obj = rgb[:, ::-1], obj[:, ::-1]
            return network_input(rgb, simulate(obj, rng, cfg.empty_prob, cfg.negative_prob), obj)
        raise UserError(f"no object in 20 draws from the {len(self.samples)} training images (empty masks?)")


def network_input(rgb: np.ndarray, act: Interaction, gt: np.ndarray | None = None) -> dict[str, torch.Tensor]:
    """S2M's 6-channel input (normalised RGB, current mask, positive, negative) and the target."""
    maps = np.stack([act.current, act.positive, act.negative]).astype(np.float32)
    x = torch.cat([image_tensor(np.ascontiguousarray(rgb)), torch.from_numpy(maps)], 0)
    out = {"x": x}
    if gt is not None:
        out["gt"] = torch.from_numpy(np.ascontiguousarray(gt, dtype=np.float32))[None]
    return out


def build_model(cfg: S2MTrainConfig) -> S2M:
    """S2M from `cfg.init` (strict) or seeded random weights."""
    model = S2M()
    return load_strict(model, cfg.init, "S2M") if cfg.init else seeded(model, cfg.seed)


def training_samples(cfg: S2MTrainConfig) -> tuple[list[Sample], list[str], int]:
    """The training images (static + DAVIS train split), the held-out sequence names, and how many training
    images are cut from those videos (0 when `exclude_heldout`)."""
    heldout = davis_sequences(cfg.davis, 2017, cfg.heldout_split) if cfg.davis else []
    names = {s.name for s in heldout}
    samples = static_samples(cfg.static, names if cfg.exclude_heldout else set()) if cfg.static else []
    seen = len(samples) - len(static_samples(cfg.static, names)) if cfg.static else 0
    if cfg.davis:
        davis, train_names = davis_samples(cfg.davis, cfg.train_split, cfg.frame_step)
        if names & set(train_names):
            raise UserError(f"DAVIS {cfg.train_split} and {cfg.heldout_split} share {sorted(names & set(train_names))}")
        samples += davis
    if not samples:
        raise UserError("no S2M training images: give a DAVIS root and/or a static image folder")
    return samples, sorted(names), seen


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


BASELINES = {
    "first": "positive stroke's bounding box, filled",
    "correction": "current mask with the strokes painted in",
}


def report_markdown(result: dict[str, Any], notes: list[str] = ()) -> str:
    """reports/s2m.md: held-out IoU per round and method, and how the run went."""
    lines = [
        "# S2M (scribble-to-mask) trained on simulated strokes",
        "",
        f"Held-out: {result.get('heldout_frames', 0)} frames of {', '.join(result.get('heldout_sequences', []))}; "
        f"{result['train_images']} training images, {result['iterations']} iterations in {result['seconds']} s "
        f"(loss {result['first_loss']:.3f} -> {result['last_loss']:.3f}).",
        *(
            [
                f"{result['train_images_from_heldout_videos']} training images are other frames of the held-out videos "
                "(the sample's static stand-in): the held-out frames are unseen, their objects are not."
            ]
            if result.get("train_images_from_heldout_videos")
            else []
        ),
        "",
        "| round | trained S2M | untrained stand-in | baseline (no network) | objects |",
        "|---|---|---|---|---|",
    ]
    by = {(r["round"], r["method"]): r for r in result["rows"]}
    for name in ("first", "correction"):
        if (name, "trained") in by:
            cells = [f"{by[(name, m)]['iou']:.3f}" for m in ("trained", "stand-in", "baseline")]
            lines.append(f"| {name} | {' | '.join(cells)} | {by[(name, 'trained')]['n']} |")
    lines += ["", "IoU (Jaccard) of the masks S2M gives from one simulated interaction, mean over objects."]
    lines += [f"- baseline, {k} round: {v}" for k, v in BASELINES.items()]
    lines += [f"- {n}" for n in notes]
    return "\n".join(lines) + "\n"
