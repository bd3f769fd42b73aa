"""Benchmark evaluation: predict a whole DAVIS / YouTube-VOS split, time it, and score it when possible."""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from rich.progress import Progress

from stcn.atomic import atomic_folder, atomic_path, write_text_atomic
from stcn.data.folders import Sequence, davis_sequences, youtube_sequences
from stcn.data.images import read_mask, write_mask
from stcn.errors import UserError
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
) -> Evaluation:
    """Predict every sequence of the split into `out`, measure FPS, and score DAVIS splits with ground truth.

    DAVIS: `out/<seq>/<frame>.png` from the first frame's objects (2016: one binarised object).
    YouTube-VOS: frames resized to shorter side 480, every object enters at its first annotated frame,
    output only for the annotated subset's frames, in `out/Annotations/<video>/` and `out/submission.zip`.
    """
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
    with Progress(disable=not progress, transient=True) as bar:
        total = sum(len(s.required) if s.required is not None else len(s.frames) for s in seqs)
        task = bar.add_task(f"{dataset} {split}", total=total)
        for seq in seqs:
            masks = (
                {s: read_mask(p) for s, p in seq.annotations.items()}
                if youtube
                else _first_annotation(seq, binarise=dataset == "davis2016")
            )
            with atomic_folder(pred_root / seq.name) as folder:  # a sequence's folder appears complete

                def write(stem: str, labels: np.ndarray, rgb: np.ndarray, folder: Path = folder) -> None:
                    write_mask(folder / f"{stem}.png", labels)
                    bar.advance(task)

                timing += propagate(model, folder_frames(seq.frames), masks, settings, write, seq.required, seq.name)
    result = Evaluation(dataset, split, timing)
    if youtube:
        result.files.append(_zip_submission(out))
    elif _fully_annotated(seqs):
        from stcn.eval.davis_score import score_davis

        result.global_results, result.per_sequence = score_davis(root, dataset[-4:], split, out, out, progress)
    write_text_atomic(out / "evaluation.json", json.dumps(result.summary(), indent=2) + "\n")
    return result


def _zip_submission(out: Path) -> Path:
    """The official YouTube-VOS submission layout: Annotations/<video>/<frame>.png in a zip."""
    path = out / "submission.zip"
    with atomic_path(path) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
        for png in sorted((out / "Annotations").rglob("*.png")):
            zf.write(png, png.relative_to(out).as_posix())
    return path
