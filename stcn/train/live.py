"""Rank-0 metrics (dvclive, for DVC metrics and training-curve plots) and progress with loss, IoU and ETA
(`stcn.progress`: a rich bar on a terminal, periodic lines in logs)."""

from __future__ import annotations

import csv
import os
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from stcn.progress import progress_bar


def truncate_history(live_dir: str | Path, step: int) -> None:
    """Drop metric rows logged at or after `step` (a killed run logged past its last checkpoint)."""
    for tsv in Path(live_dir, "plots", "metrics").rglob("*.tsv"):
        with tsv.open(newline="") as f:
            rows = list(csv.reader(f, delimiter="\t"))
        if not rows or "step" not in rows[0]:
            continue
        col = rows[0].index("step")
        kept = [rows[0]] + [r for r in rows[1:] if int(r[col]) < step]
        with tsv.open("w", newline="") as f:
            csv.writer(f, delimiter="\t", lineterminator="\n").writerows(kept)


def scientific(value: float) -> str:
    """A learning rate as the metrics summary shows it: `1.00e-05` (the curve keeps the number)."""
    return f"{value:.2e}"


def inside_dvc() -> bool:
    """True in a `dvc repro`/`dvc exp run` stage or below a folder holding `.dvc`."""
    if os.environ.get("DVC_ROOT"):
        return True
    here = Path.cwd().resolve()
    return any((p / ".dvc").is_dir() for p in (here, *here.parents))


def open_live(live_dir: str | Path, resume: bool):
    """A dvclive `Live` that never saves experiments or writes dvc.yaml, and that outside a DVC
    project does not touch the repository (plain dvclive would `dvc init` the enclosing Git repo)."""
    from dvclive import Live

    class _Live(Live):
        def _init_dvc(self) -> None:
            if inside_dvc():
                super()._init_dvc()
            else:
                self._dvc_file = "dvc.yaml"

    return _Live(dir=str(live_dir), resume=resume, save_dvc_exp=False, dvcyaml=None)


class TrainLog:
    """Logs scalars per step to dvclive and advances a progress bar; a no-op on ranks other than 0."""

    def __init__(
        self,
        live_dir: str | Path | None,
        total: int,
        start: int,
        params: dict[str, Any],
        enabled: bool = True,
        progress: bool | None = None,
    ):
        self.enabled = enabled
        self.live = None
        self.total, self.start = total, start
        self._bar = None
        self._stack = ExitStack()
        if not enabled:
            return
        if live_dir is not None:
            if start > 0:
                truncate_history(live_dir, start)
            self.live = open_live(live_dir, resume=start > 0)
            self.live.log_params({k: v for k, v in params.items() if isinstance(v, str | int | float | bool)})
        # progress None: a bar on a terminal, periodic lines elsewhere; False: silent; True: a bar
        self._bar = self._stack.enter_context(
            progress_bar("train", total, "it", quiet=True if progress is False else None, start=start,
                         terminal=True if progress else None)
        )  # fmt: skip

    def log(self, step: int, metrics: dict[str, float], speed: str = "") -> None:
        """Record `metrics` at iteration `step` (0-based) and move the bar to step + 1; `speed` (wall-clock
        throughput) goes to the console only, so the recorded metrics reproduce exactly."""
        if not self.enabled:
            return
        if self.live is not None:
            self.live.step = step
            for name, value in metrics.items():
                self.live.log_metric(f"train/{name}", value)
            if "lr" in metrics:  # `dvc metrics show` rounds to 5 decimals: 1e-6 would read 0.0
                self.live.summary["train"]["lr"] = scientific(metrics["lr"])
            self.live.make_summary()
        info = f"loss {metrics.get('loss', float('nan')):.4f} iou {metrics.get('iou', float('nan')):.3f}"
        info = f"{info} {speed}" if speed else info
        if self._bar is not None:
            self._bar.update(step + 1, info=info)

    def close(self) -> None:
        """Flush dvclive and stop the bar."""
        self._stack.close()
        if self.live is not None:
            self.live.end()
