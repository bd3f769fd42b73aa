"""Training settings: one dataclass holding every default and check (`stcn train`, the DVC stage, benchmarks)."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import Any

from stcn.errors import UserError
from stcn.train.recipe import get_stage


@dataclass
class TrainConfig:
    """One run of one stage; None means the stage's recipe value (or the device's default).

    The one place of the training defaults and their checks: `stcn train`, the DVC stage and the
    benchmarks build this, and a bad value is a UserError when it is constructed.
    """

    stage: int
    data: list[str]
    out: str
    init: str | None = None
    imagenet_dir: str | None = None
    iterations: int | None = None
    batch_size: int | None = None
    crop: int = 384
    lr: float | None = None
    resume: bool = False  # continue from out/checkpoint.pth (the DVC stages set it: they resume)
    amp: bool | None = None
    checkpoint_every: int = 5000
    seed: int = 14159265
    num_workers: int | None = None  # None: 4, at most the CPU count
    log_every: int = 10
    device: str | None = None
    live: bool = True
    progress: bool | None = None
    keep_checkpoint: bool = True  # False: drop checkpoint.pth once weights.pth is written

    def __post_init__(self) -> None:
        get_stage(self.stage)
        if not self.data:
            raise UserError("no training data given (--data SHARDS)")
        if self.crop < 32 or self.crop % 16:
            raise UserError(f"--crop must be a multiple of 16 and at least 32, got {self.crop}")
        for name in ("iterations", "batch_size", "checkpoint_every", "log_every"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise UserError(f"--{name.replace('_', '-')} must be at least 1, got {value}")
        if self.lr is not None and self.lr <= 0:
            raise UserError(f"--lr must be positive, got {self.lr}")
        if self.num_workers is None:
            self.num_workers = min(4, os.cpu_count() or 1)
        elif self.num_workers < 0:
            raise UserError(f"--num-workers must be at least 0, got {self.num_workers}")

    def resolved(self, world_size: int) -> dict[str, Any]:
        """The settings with recipe defaults filled in, as stored in checkpoints."""
        stage = get_stage(self.stage)
        out = asdict(self)
        out.update(
            iterations=self.iterations or stage.iterations,
            batch_size=self.batch_size or stage.batch_size,
            lr=self.lr or stage.lr,
            world_size=world_size,
        )
        return out
