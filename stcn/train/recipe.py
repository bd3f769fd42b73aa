"""The paper's training recipe: per-stage hyper-parameters, the max_skip curriculum, bootstrap schedule."""

from __future__ import annotations

from dataclasses import dataclass

from stcn.errors import UserError

# bootstrapped cross-entropy: plain CE until START, then the hardest p of pixels, p 1.0 -> TOP_P by END
BOOTSTRAP_START, BOOTSTRAP_END, BOOTSTRAP_TOP_P = 20_000, 70_000, 0.15
WEIGHT_DECAY = 1e-7
# stage 0 draws from `[fss, DUTS-TR, DUTS-TE, ecssd] + [BIG_small, HRSOD_small] * 5` (the release's
# ConcatDataset): the two high-resolution sets are seen five times as often per image
STAGE0_REPEATS = {"BIG_small": 5, "HRSOD_small": 5}
LR_GAMMA = 0.1


@dataclass(frozen=True)
class Stage:
    """One training stage of the original release."""

    index: int
    data: str  # the stream's data kind: "static" (image + mask), "bl30k" or "video" (DAVIS / YouTube-VOS)
    single_object: bool
    lr: float
    batch_size: int  # per process
    iterations: int
    lr_steps: tuple[int, ...]
    skip_values: tuple[int, ...] = ()  # max_skip from the start, then at each fraction below
    skip_fractions: tuple[float, ...] = ()

    @property
    def is_video(self) -> bool:
        return self.data != "static"


_VIDEO_SKIPS = (5, 10, 15, 20, 25, 5)
STAGES: dict[int, Stage] = {
    0: Stage(0, "static", True, 1e-5, 8, 300_000, (150_000,)),
    1: Stage(1, "bl30k", False, 1e-5, 4, 500_000, (400_000,), _VIDEO_SKIPS, (0.1, 0.2, 0.3, 0.4, 0.8)),
    2: Stage(2, "video", False, 1e-5, 4, 300_000, (250_000,), _VIDEO_SKIPS, (0.1, 0.2, 0.3, 0.4, 0.9)),
    3: Stage(3, "video", False, 1e-5, 4, 150_000, (125_000,), _VIDEO_SKIPS, (0.1, 0.2, 0.3, 0.4, 0.9)),
}


def get_stage(index: int) -> Stage:
    """The recipe of stage `index` (0-3)."""
    if index not in STAGES:
        raise UserError(f"unknown training stage {index}: choose 0, 1, 2 or 3")
    return STAGES[index]


def scaled_lr_steps(stage: Stage, iterations: int) -> list[int]:
    """The stage's lr milestones, scaled when the run is shorter or longer than the recipe's."""
    return [round(s * iterations / stage.iterations) for s in stage.lr_steps]


def skip_changes(stage: Stage, iterations: int) -> list[int]:
    """Iterations (> 0) where the max_skip curriculum switches to its next value."""
    return [round(f * iterations) for f in stage.skip_fractions]


def max_skip_at(stage: Stage, iteration: int, iterations: int) -> int:
    """max_skip in force at `iteration` of a run of `iterations` (0 for static stages)."""
    if not stage.is_video:
        return 0
    value = stage.skip_values[0]
    for change, nxt in zip(skip_changes(stage, iterations), stage.skip_values[1:], strict=True):
        if iteration >= change:
            value = nxt
    return value


def bootstrap_fraction(iteration: int) -> float:
    """Fraction of hardest pixels kept by the bootstrapped CE at `iteration` (1.0 = plain CE)."""
    if iteration < BOOTSTRAP_START:
        return 1.0
    if iteration > BOOTSTRAP_END:
        return BOOTSTRAP_TOP_P
    return BOOTSTRAP_TOP_P + (1 - BOOTSTRAP_TOP_P) * (BOOTSTRAP_END - iteration) / (BOOTSTRAP_END - BOOTSTRAP_START)
