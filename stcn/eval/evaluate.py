"""Benchmark evaluation: predict a whole DAVIS / YouTube-VOS split, time it, and score it when possible."""

from __future__ import annotations

import json
import sys
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from stcn.atomic import atomic_folder, atomic_path, remove_stale_temporaries, write_text_atomic
from stcn.data.folders import Sequence, davis_sequences, detect_layout, first_frames, youtube_sequences
from stcn.data.images import read_mask, write_mask
from stcn.errors import UserError
from stcn.eval.ranks import Ranks, balance
from stcn.inference.overlap import read_ahead
from stcn.inference.settings import InferenceSettings
from stcn.inference.video import Timing, folder_frames, propagate
from stcn.layouts import LAYOUTS as LAYOUT_TYPES
from stcn.layouts import scored_layouts
from stcn.model.network import STCN
from stcn.progress import progress_bar

LAYOUTS = tuple(scored_layouts())  # the registry layouts that are evaluated (stcn.layouts: a `scorer`)
PICTURE_FRAMES = 5  # frames per sequence in its picture strip
PICTURE_HEIGHT = 120


@dataclass
class Evaluation:
    """What one evaluation produced: timing, score tables (DAVIS with full ground truth) and files."""

    dataset: str
    split: str
    timing: Timing
    global_results: pd.DataFrame | None = None
    per_sequence: pd.DataFrame | None = None
    files: list[Path] = field(default_factory=list)
    baseline: pd.DataFrame | None = None  # the same scores for copying the first-frame mask to every frame
    settings: dict | None = None  # the inference settings the predictions were made with (+ max_frames)
    weights: dict | None = None  # which weights: path, sha256, backend (`stcn.eval.benchmark.weights_record`)

    def summary(self) -> dict:
        row = {
            "dataset": self.dataset,
            "split": self.split,
            "frames": self.timing.frames,
            "seconds": round(self.timing.seconds, 3),
            "fps": round(self.timing.fps, 3),
        }
        if self.global_results is not None:  # scores in percent, as in the paper and reports/
            row.update({k: round(100 * float(v), 2) for k, v in self.global_results.iloc[0].items()})
        if self.baseline is not None:
            row["baseline J&F-Mean"] = round(100 * float(self.baseline["J&F-Mean"].iloc[0]), 2)
        if self.settings is not None:  # how the results were made: reports read these, not params.yaml
            row["settings"] = self.settings
        if self.weights is not None:
            row["weights"] = self.weights
        return row


def resolve_layout(root: str | Path, layout: str | None, year: int | str | None) -> tuple[str, str]:
    """(layout, DAVIS year): the given values (a registry entry's), else the layout detected from `root`, 2017."""
    layout = layout or detect_layout(root)
    if layout not in LAYOUTS:
        raise UserError(f"layout {layout!r} cannot be evaluated; choose one of {', '.join(LAYOUTS)}")
    return layout, str(year or 2017)


def _first_annotation(seq: Sequence, binarise: bool) -> dict[str, np.ndarray]:
    stem = seq.stems[0]
    if stem not in seq.annotations:
        raise UserError(f"sequence {seq.name!r}: no annotation for its first frame {stem}")
    mask = read_mask(seq.annotations[stem])
    return {stem: (mask > 0).astype(np.uint8) if binarise else mask}


def _video_done(bar, video: str, timing: Timing) -> None:
    """In logs (plain-line progress), one line per finished video; a terminal bar shows the video in its text."""
    if bar.mode == "lines":
        print(f"{bar.description}: {video} done, {timing.frames} frames at {timing.fps:.2f} FPS", file=sys.stderr)


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
    *,
    layout: str | None = None,
    year: int | str | None = None,
    max_frames: int | None = None,
    pictures: bool = True,
    ranks: Ranks | None = None,
    weights: dict | None = None,
) -> Evaluation:
    """Predict every sequence of the split into `out`, measure FPS, and score DAVIS splits with ground truth.

    DAVIS: `out/<seq>/<frame>.png` from the first frame's objects (2016: one binarised object).
    YouTube-VOS: frames resized to shorter side 480, every object enters at its first annotated frame,
    output only for the annotated subset's frames, in `out/Annotations/<video>/` and `out/submission.zip`.
    `layout`/`year`: the dataset's registry entry's (`stcn.registry`); None: the layout detected from the folder
    and 2017. `dataset` only names the outputs and the progress. `max_frames` cuts
    every sequence to its first frames. Scored DAVIS splits also score the copy-the-first-frame baseline.
    `pictures`: `out/pictures/<seq>.png`, a strip of frames with the predicted masks overlaid.
    With `ranks` (torchrun), this rank predicts (and pictures) its share of the videos, balanced by frame
    count; rank 0 then scores and writes the summary over all of them (other ranks return their own timing).
    `evaluation.json` records the settings used (YouTube-VOS: the 480p default filled in) and `weights` (which
    weights these were, as given).
    """
    ranks = ranks or Ranks()
    layout, year = resolve_layout(root, layout, year)
    out = Path(out)
    youtube = LAYOUT_TYPES[layout].scorer == "youtube"  # its folders, 480p default, scorer and submission
    if youtube:
        seqs = youtube_sequences(root, split)
        settings = InferenceSettings(**{**settings.__dict__, "resolution": settings.resolution or 480})
        pred_root = out / "Annotations"
    else:
        seqs = davis_sequences(root, year, split)
        pred_root = out
    seqs = [first_frames(s, max_frames) for s in seqs]
    if ranks.is_main:  # sequence folders a killed earlier run (or rank) left half-written: `.<video>.<pid>.tmp/`
        remove_stale_temporaries(pred_root, [s.name for s in seqs])
    timing = Timing()
    strips: dict[str, list[np.ndarray]] = {}
    every = seqs
    seqs = [seqs[i] for i in balance([len(s.frames) for s in seqs], ranks.world)[ranks.rank]]
    total = sum(len(s.frames) for s in seqs)  # frames processed: the count the summary's FPS is over
    title = f"{dataset} {split}" + (f" (rank {ranks.rank})" if ranks.world > 1 else "")
    with progress_bar(title, total, "frames", quiet=None if progress else True) as bar:
        for number, seq in enumerate(seqs, 1):
            masks = (
                {s: read_mask(p) for s, p in seq.annotations.items()}
                if youtube
                else _first_annotation(seq, binarise=year == "2016")
            )
            shown = set(_spread(seq.stems if seq.required is None else sorted(seq.required), PICTURE_FRAMES))
            strip = strips[seq.name] = []
            video = f"video {number}/{len(seqs)} {seq.name}"
            # progress counts processed frames (as Timing does), also where only some are written (YouTube-VOS)
            position = {stem: i for i, stem in enumerate(seq.stems, 1)}
            before = bar.completed
            with atomic_folder(pred_root / seq.name) as folder:  # a sequence's folder appears complete

                def write(stem: str, labels: np.ndarray, rgb: np.ndarray, folder: Path = folder, strip=strip,
                          shown=shown, position=position, before=before, video=video) -> None:  # fmt: skip
                    write_mask(folder / f"{stem}.png", labels)
                    if pictures and stem in shown:
                        strip.append(overlay(rgb, labels, PICTURE_HEIGHT))
                    bar.update(before + position[stem], info=f"{video} frame {position[stem]}/{len(position)}")

                frames = read_ahead(folder_frames(seq.frames))  # JPEG decoding overlaps the network
                seq_timing = propagate(model, frames, masks, settings, write, seq.required, seq.name)
            if bar.completed != before + seq_timing.frames:  # frames after the last written one
                bar.update(before + seq_timing.frames, info=f"{video} frame {len(position)}/{len(position)}")
            timing += seq_timing
            _video_done(bar, video, seq_timing)
    if pictures:
        for name, strip in strips.items():
            if strip:
                _save_strip(out / "pictures" / f"{name}.png", strip)
    if ranks.world > 1:
        timings = ranks.gather(timing)  # also waits until every rank has written its predictions
        if not ranks.is_main:
            return Evaluation(dataset, split, timing)
        timing = Timing(sum(t.frames for t in timings), sum(t.seconds for t in timings))
        seqs = every
    used = {**asdict(settings), "max_frames": max_frames}
    result = Evaluation(dataset, split, timing, settings=used, weights=weights)
    if pictures:
        result.files += [p for s in seqs if (p := out / "pictures" / f"{s.name}.png").is_file()]
    if youtube:
        result.files.append(_zip_submission(out))
    elif _fully_annotated(seqs):
        from stcn.eval.davis_score import score_davis

        result.global_results, result.per_sequence = score_davis(root, year, split, out, out, progress, seqs)
        result.baseline, per_sequence = _score_baseline(root, year, split, seqs, progress)
        for table, name in ((result.baseline, "global"), (per_sequence, "per-sequence")):
            with atomic_path(out / f"baseline_{name}_results-{split}.csv") as tmp:
                table.to_csv(tmp, index=False, float_format="%.3f")
    write_text_atomic(out / "evaluation.json", json.dumps(result.summary(), indent=2) + "\n")
    return result


def _score_baseline(
    root: str | Path, year: str, split: str, seqs: list[Sequence], progress: bool
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Global and per-object scores of copying each sequence's first-frame mask to all its frames."""
    import tempfile

    from stcn.eval.davis_score import score_davis

    with tempfile.TemporaryDirectory(prefix="stcn-baseline-") as tmp:
        for seq in seqs:
            first = _first_annotation(seq, binarise=year == "2016")[seq.stems[0]]
            for stem in seq.stems:
                write_mask(Path(tmp) / seq.name / f"{stem}.png", first)
        return score_davis(root, year, split, tmp, None, progress, seqs)


def _spread(items: list[str], count: int) -> list[str]:
    """`count` items evenly spread over `items` (first and last included)."""
    if len(items) <= count:
        return list(items)
    return [items[round(i * (len(items) - 1) / (count - 1))] for i in range(count)]


def overlay(rgb: np.ndarray, labels: np.ndarray, height: int) -> np.ndarray:
    """`rgb` with `labels` blended in the DAVIS colours and object outlines, resized to `height`."""
    import cv2

    from stcn.inference.overlay import blend_masks

    blend = blend_masks(rgb, labels, 0.5)
    edges = cv2.morphologyEx((labels > 0).astype(np.uint8), cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8)) > 0
    blend[edges] = 255
    width = max(1, round(rgb.shape[1] * height / rgb.shape[0]))
    return cv2.resize(blend.astype(np.uint8), (width, height), interpolation=cv2.INTER_AREA)


def _save_strip(path: Path, frames: list[np.ndarray]) -> Path:
    """The frames side by side (2-pixel white gaps) as one (palette) PNG."""
    from PIL import Image

    gap = np.full((frames[0].shape[0], 2, 3), 255, np.uint8)
    row = np.concatenate([x for f in frames for x in (f, gap)][:-1], axis=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(row).quantize(256).save(path, optimize=True)  # a palette PNG: a third of the RGB size
    return path


def _zip_submission(out: Path) -> Path:
    """The official YouTube-VOS submission layout: Annotations/<video>/<frame>.png in a zip."""
    path = out / "submission.zip"
    with atomic_path(path) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
        for png in sorted((out / "Annotations").rglob("*.png")):
            zf.write(png, png.relative_to(out).as_posix())
    return path


if __name__ == "__main__":  # torchrun --nproc-per-node N -m stcn.eval.evaluate --weights ... (as `stcn evaluate`)
    import typer

    from stcn.atomic import output_errors
    from stcn.errors import reporting
    from stcn.eval.commands import register
    from stcn.eval.ranks import teardown

    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    register(app)  # the evaluation area's commands only, not the whole CLI: `evaluate` runs as `stcn evaluate`
    sys.argv[1:1] = ["evaluate"]
    try:
        with reporting(), output_errors(None):  # the CLI's one-line errors
            app()
    finally:
        teardown()
