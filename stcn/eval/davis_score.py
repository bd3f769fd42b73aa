"""Score a folder of predicted masks against a DAVIS root (official semi-supervised protocol).

Ground truth: every annotation PNG of a sequence, void (255) set to background, one object per
id 1..max id of the first annotation. Only frames 2..N-1 are scored (the official `[1:-1]`), so only
those predictions (`PRED_DIR/<seq>/<frame>.png`) are read. DAVIS-2016 scores one binarised object.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import numpy as np
import pandas as pd
from rich.console import Console
from rich.progress import track
from rich.table import Table

from stcn.atomic import atomic_path
from stcn.data.folders import Sequence, davis_sequences
from stcn.data.images import VOID, read_mask
from stcn.errors import UserError
from stcn.eval.metrics import boundary_radius, disk, frame_measures, statistics

GLOBAL_COLUMNS = ["J&F-Mean", "J-Mean", "J-Recall", "J-Decay", "F-Mean", "F-Recall", "F-Decay"]
SEQUENCE_COLUMNS = ["Sequence", "J-Mean", "F-Mean"]


def usable_cores() -> int:
    """The CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def free_cores() -> int:
    """Cores not already busy: the usable cores minus the 1-minute load average (at least 1).

    On a loaded machine extra processes or threads only queue behind the others and pay their start-up,
    so the scorer sizes its pools by this, not by the core count.
    """
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):  # no load average on this platform
        load = 0.0
    return max(1, int(usable_cores() - load + 0.5))


def _read_masks(paths: list[Path]) -> list[np.ndarray]:
    """Label masks (H, W) uint8, decoded in threads (one per free core); differing sizes are a user error.

    A list, not a stack: the scorer works frame by frame, and stacking would copy every mask once more.
    """
    threads = free_cores()
    if threads == 1:
        masks = [read_mask(p) for p in paths]
    else:
        with ThreadPoolExecutor(max_workers=threads) as pool:
            masks = list(pool.map(read_mask, paths))
    for path, mask in zip(paths, masks, strict=True):
        if mask.shape != masks[0].shape:
            raise UserError(f"mask size {mask.shape} differs from {masks[0].shape}: {path}")
    return masks


def load_ground_truth(seq: Sequence, year: str) -> tuple[list[np.ndarray], int, list[str]]:
    """Scored gt label maps (T-2 of (H, W)), the number of objects and the scored frame stems."""
    stems = list(seq.annotations)
    if len(stems) < 3:
        raise UserError(f"sequence {seq.name!r} has {len(stems)} annotated frames; scoring needs at least 3")
    gt = _read_masks([seq.annotations[s] for s in stems])
    if year == "2016":
        # DAVIS-2016's own masks are 0/255 (255 = object); in 2017-style masks 255 is void
        has_ids = any(((m > 0) & (m < VOID)).any() for m in gt)
        fg = [((m > 0) & (m < VOID)) if has_ids else m == VOID for m in gt[1:-1]]
        return [m.view(np.uint8) for m in fg], 1, stems[1:-1]
    for m in gt:
        m[m == VOID] = 0
    return gt[1:-1], int(gt[0].max()), stems[1:-1]


def load_predictions(folder: Path, seq: str, stems: list[str], shape: tuple[int, ...], year: str) -> list[np.ndarray]:
    """Predicted label maps (T of (H, W)) for the scored frames; missing files and size mismatches are user errors."""
    paths = [folder / seq / f"{s}.png" for s in stems]
    for p in paths:
        if not p.is_file():
            raise UserError(f"missing prediction: {p}")
    pred = _read_masks(paths)
    if pred[0].shape != tuple(shape):
        raise UserError(f"prediction size {pred[0].shape} differs from ground truth {tuple(shape)}: {paths[0]}")
    return [(m > 0).view(np.uint8) for m in pred] if year == "2016" else pred


def score_sequence(gt, pred, n_objects: int) -> tuple[np.ndarray, np.ndarray]:
    """J and F per object and frame, (n_objects, T), of T label maps (H, W) each (a (T, H, W) stack or a list);
    object k is label k. One frame at a time (`frame_measures`): nothing is held per sequence but the scores."""
    j, f = np.ones((n_objects, len(gt))), np.ones((n_objects, len(gt)))
    if len(gt) == 0 or n_objects == 0:
        return j, f
    kernel = disk(boundary_radius(gt[0].shape))
    for t, (g, p) in enumerate(zip(gt, pred, strict=True)):
        j[:, t], f[:, t] = frame_measures(np.asarray(g, np.uint8), np.asarray(p, np.uint8), n_objects, kernel)
    return j, f


def _score_job(job: tuple[Sequence, str, Path]) -> tuple[list[str], np.ndarray, np.ndarray]:
    """One sequence (in a worker process): object names and the (Mean, Recall, Decay) rows of J and F."""
    seq, year, predictions = job
    gt, n_objects, stems = load_ground_truth(seq, year)
    pred = load_predictions(predictions, seq.name, stems, gt[0].shape, year)
    top = max(int(m.max()) for m in pred)
    if top > n_objects:
        raise UserError(
            f"prediction of {seq.name!r} has object id {top}, but the ground truth has {n_objects} object(s)"
        )
    j, f = score_sequence(gt, pred, n_objects)
    names = [f"{seq.name}_{k + 1}" for k in range(n_objects)]
    return names, np.stack(statistics(j), axis=1), np.stack(statistics(f), axis=1)


def _tables(names: list[str], j: np.ndarray, f: np.ndarray) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Global and per-object tables from per-object (Mean, Recall, Decay) rows of J and F."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=RuntimeWarning)
        jm, jr, jd = j.mean(axis=0)
        fm, fr, fd = f.mean(axis=0)
    global_df = pd.DataFrame([[(jm + fm) / 2, jm, jr, jd, fm, fr, fd]], columns=GLOBAL_COLUMNS)
    per_sequence = pd.DataFrame({"Sequence": names, "J-Mean": j[:, 0], "F-Mean": f[:, 0]})
    return global_df, per_sequence


def score_davis(
    root: str | Path,
    year: str | int,
    split: str,
    predictions: str | Path,
    out_dir: str | Path | None = None,
    progress: bool = True,
    sequences: list[Sequence] | None = None,
    processes: int | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Score `predictions` on DAVIS `year` `split`; returns (global, per-object) tables, written as CSVs to out_dir.

    `sequences` (e.g. cut to their first frames) replace the split's own. Sequences are scored in parallel
    processes (`processes`, default one per free core, `free_cores`: one process on a busy machine); the
    tables do not depend on how many.
    """
    year, predictions = str(year), Path(predictions)
    if year not in ("2016", "2017"):
        raise UserError(f"DAVIS year must be 2016 or 2017, got {year!r}")
    if not predictions.is_dir():
        raise UserError(f"predictions folder not found: {predictions}")
    seqs = sequences if sequences is not None else davis_sequences(root, year, split)
    names: list[str] = []
    j_stats, f_stats = [np.zeros((0, 3))], [np.zeros((0, 3))]
    console = Console(stderr=True)
    jobs = [(seq, year, predictions) for seq in seqs]
    workers = min(len(seqs), free_cores()) if processes is None else max(1, processes)
    with ProcessPoolExecutor(workers) if workers > 1 else contextlib.nullcontext() as pool:
        results = pool.map(_score_job, jobs) if pool is not None else map(_score_job, jobs)
        try:
            for seq_names, j, f in track(
                results,
                total=len(jobs),
                description="Scoring",
                disable=not progress or not console.is_terminal,  # in logs rich's transient bar leaves a blank line
                console=console,
                transient=True,
            ):
                names += seq_names
                j_stats.append(j)
                f_stats.append(f)
        except BrokenProcessPool:
            raise UserError("a scoring worker process died (killed or out of memory); re-run the scoring") from None
    global_df, per_sequence = _tables(names, np.concatenate(j_stats), np.concatenate(f_stats))
    if out_dir is not None:
        out = Path(out_dir)
        for df, name in ((global_df, "global_results"), (per_sequence, "per-sequence_results")):
            with atomic_path(out / f"{name}-{split}.csv") as tmp:
                df.to_csv(tmp, index=False, float_format="%.3f")
    return global_df, per_sequence


def print_results(global_df: pd.DataFrame, per_sequence: pd.DataFrame, console: Console | None = None) -> None:
    """Print the global and per-object tables in percent (one decimal; the official CSVs hold fractions)."""
    console = console or Console()
    for title, df in (("Global results (%)", global_df), ("Per-object results (%)", per_sequence)):
        table = Table(title=title)
        for col in df.columns:
            table.add_column(col, justify="left" if col == "Sequence" else "right")
        for row in df.itertuples(index=False):
            table.add_row(*(v if isinstance(v, str) else f"{100 * v:.1f}" for v in row))
        console.print(table)
