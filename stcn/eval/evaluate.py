"""Benchmark evaluation: predict a whole DAVIS / YouTube-VOS split, time it, and score it when possible."""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from rich.progress import Progress

from stcn.data.folders import Sequence, davis_sequences, youtube_sequences
from stcn.data.images import read_mask, write_mask
from stcn.errors import UserError
from stcn.eval.ranks import Ranks, balance
from stcn.inference.overlap import read_ahead
from stcn.inference.settings import InferenceSettings
from stcn.inference.video import Timing, folder_frames, propagate
from stcn.model.network import STCN

DATASETS = ("davis2016", "davis2017", "youtube")


@dataclass
class Evaluation:
    """What one evaluation produced: timing, score tables (DAVIS with full ground truth) and files."""

    dataset: str
    split: str
    timing: Timing
    global_results: pd.DataFrame | None = None
    per_sequence: pd.DataFrame | None = None
    files: list[Path] = field(default_factory=list)

    def summary(self) -> dict:
        row = {
            "dataset": self.dataset,
            "split": self.split,
            "frames": self.timing.frames,
            "seconds": round(self.timing.seconds, 3),
            "fps": round(self.timing.fps, 3),
        }
        if self.global_results is not None:
            row.update({k: round(float(v), 4) for k, v in self.global_results.iloc[0].items()})
        return row


def _first_annotation(seq: Sequence, binarise: bool) -> dict[str, np.ndarray]:
    stem = seq.stems[0]
    if stem not in seq.annotations:
        raise UserError(f"sequence {seq.name!r}: no annotation for its first frame {stem}")
    mask = read_mask(seq.annotations[stem])
    return {stem: (mask > 0).astype(np.uint8) if binarise else mask}


def _fully_annotated(seqs: list[Sequence]) -> bool:
    return all(set(s.stems) <= set(s.annotations) for s in seqs)


def evaluate(
    model: STCN,
    dataset: str,
    root: str | Path,
    split: str,
    out: str | Path,
    settings: InferenceSettings,
    progress: bool = True,
    ranks: Ranks | None = None,
) -> Evaluation:
    """Predict every sequence of the split into `out`, measure FPS, and score DAVIS splits with ground truth.

    DAVIS: `out/<seq>/<frame>.png` from the first frame's objects (2016: one binarised object).
    YouTube-VOS: frames resized to shorter side 480, every object enters at its first annotated frame,
    output only for the annotated subset's frames, in `out/Annotations/<video>/` and `out/submission.zip`.
    With `ranks` (torchrun), this rank predicts its share of the videos; rank 0 then scores and writes
    the summary over all of them (other ranks return their own timing and no files).
    """
    ranks = ranks or Ranks()
    if dataset not in DATASETS:
        raise UserError(f"unknown dataset {dataset!r}; choose one of {', '.join(DATASETS)}")
    out = Path(out)
    youtube = dataset == "youtube"
    if youtube:
        seqs = youtube_sequences(root, split)
        settings = InferenceSettings(**{**settings.__dict__, "resolution": settings.resolution or 480})
        pred_root = out / "Annotations"
    else:
        seqs = davis_sequences(root, dataset[-4:], split)
        pred_root = out
    timing = Timing()
    every = seqs
    seqs = [seqs[i] for i in balance([len(s.frames) for s in seqs], ranks.world)[ranks.rank]]
    with Progress(disable=not progress, transient=True) as bar:
        total = sum(len(s.required) if s.required is not None else len(s.frames) for s in seqs)
        task = bar.add_task(f"{dataset} {split}" + (f" (rank {ranks.rank})" if ranks.world > 1 else ""), total=total)
        for seq in seqs:
            masks = (
                {s: read_mask(p) for s, p in seq.annotations.items()}
                if youtube
                else _first_annotation(seq, binarise=dataset == "davis2016")
            )
            folder = pred_root / seq.name

            def write(stem: str, labels: np.ndarray, rgb: np.ndarray, folder: Path = folder) -> None:
                write_mask(folder / f"{stem}.png", labels)
                bar.advance(task)

            frames = read_ahead(folder_frames(seq.frames))  # JPEG decoding overlaps the network
            timing += propagate(model, frames, masks, settings, write, seq.required, seq.name)
    if ranks.world > 1:
        timings = ranks.gather(timing)  # also waits until every rank has written its predictions
        if not ranks.is_main:
            return Evaluation(dataset, split, timing)
        timing = Timing(sum(t.frames for t in timings), sum(t.seconds for t in timings))
        seqs = every
    result = Evaluation(dataset, split, timing)
    if youtube:
        result.files.append(_zip_submission(out))
    elif _fully_annotated(seqs):
        from stcn.eval.davis_score import score_davis

        result.global_results, result.per_sequence = score_davis(root, dataset[-4:], split, out, out, progress)
    (out / "evaluation.json").write_text(json.dumps(result.summary(), indent=2) + "\n")
    return result


def _zip_submission(out: Path) -> Path:
    """The official YouTube-VOS submission layout: Annotations/<video>/<frame>.png in a zip."""
    path = out / "submission.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for png in sorted((out / "Annotations").rglob("*.png")):
            zf.write(png, png.relative_to(out).as_posix())
    return path


if __name__ == "__main__":  # torchrun --nproc-per-node N -m stcn.eval.evaluate --weights ... (as `stcn evaluate`)
    from stcn.eval.ranks import main

    main()
