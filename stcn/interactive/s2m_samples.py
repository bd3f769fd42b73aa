"""S2M's training and held-out images: static image/mask pairs and DAVIS frames (`Sample`), each object rescaled,
cropped and given one simulated interaction (`StrokeSamples`), as S2M's 6-channel input (`network_input`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from stcn.data.folders import davis_sequences
from stcn.data.images import read_frame, read_mask
from stcn.errors import UserError
from stcn.inference.frames import image_tensor
from stcn.interactive.s2m_config import S2MTrainConfig
from stcn.interactive.simulate import Interaction, simulate


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
