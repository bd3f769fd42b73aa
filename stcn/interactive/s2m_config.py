"""The knobs of one S2M training run (`S2MTrainConfig`: the `train_s2m` block of conf/config.yaml) and the names of
what it writes."""

from __future__ import annotations

from dataclasses import dataclass

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
