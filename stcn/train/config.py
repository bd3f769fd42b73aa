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
        """Every number is checked here, so a bad value from params.yaml or `-S` is one line naming it."""
        for name, lowest, recipe in _NUMBERS:
            _check_number(name, getattr(self, name), lowest, recipe)
        get_stage(self.stage)
        if not self.data:
            raise UserError("no training data given (--data SHARDS)")
        if self.crop < 32 or self.crop % 16:
            raise UserError(f"--crop must be a multiple of 16 and at least 32, got {self.crop}")
        if self.num_workers is None:
            self.num_workers = min(4, os.cpu_count() or 1)

    def resolved(self, world_size: int) -> dict[str, Any]:
        """The settings with recipe defaults filled in, as stored in checkpoints."""
        stage = get_stage(self.stage)
        out = asdict(self)
        out.update(
            iterations=stage.iterations if self.iterations is None else self.iterations,
            batch_size=stage.batch_size if self.batch_size is None else self.batch_size,
            lr=stage.lr if self.lr is None else self.lr,
            world_size=world_size,
        )
        return out


# (setting, smallest allowed value, None allowed = the recipe's / default value); lr may be any positive float
_NUMBERS = (("stage", 0, False), ("iterations", 1, True), ("batch_size", 1, True), ("crop", 16, False),
            ("lr", 0.0, True), ("checkpoint_every", 1, False), ("seed", -(2**63), False), ("num_workers", 0, True),
            ("log_every", 1, False))  # fmt: skip


def _check_number(name: str, value: Any, lowest: float, recipe: bool) -> None:
    """A UserError naming `name` unless `value` is an int (a positive number for float `lowest`) >= `lowest`."""
    if value is None and recipe:
        return
    real = isinstance(lowest, float)
    ok_type = isinstance(value, int | float) if real else isinstance(value, int)
    if isinstance(value, bool) or not ok_type or (value <= lowest if real else value < lowest):
        kind = "a positive number" if real else f"an integer >= {lowest}" if lowest > -(2**63) else "an integer"
        raise UserError(
            f"training setting {name} must be {kind}{' (or null for the recipe value)' if recipe else ''}, "
            f"got {value!r}"
        )
