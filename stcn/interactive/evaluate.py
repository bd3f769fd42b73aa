"""DAVIS interactive evaluation through the `davisinteractive` package's local session and robot.

The package asks for a scribble, receives the masks of the whole sequence and the frames where the
next scribble may go, generates that scribble with its robot from the ground truth, and computes
the benchmark's metrics itself (AUC of J&F over time, J&F at 60 s). Its local session reads
`<root>/Annotations/480p/<seq>/%05d.png` and `<root>/Scribbles/<seq>/%03d.json`; `prepare_root`
writes that root from a DAVIS folder: masks (resized when a smaller `resolution` is asked for) and
the first scribbles, copied from the dataset's `Scribbles/` when present, else drawn by the robot
on an empty prediction.
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image

from stcn.data.folders import Sequence, davis_sequences
from stcn.data.images import read_frame, read_mask, write_mask
from stcn.errors import UserError
from stcn.inference.frames import image_tensor, target_size
from stcn.inference.settings import InferenceSettings
from stcn.interactive.core import DAVIS_SCHEDULE, InteractiveCore
from stcn.interactive.davis_package import davisinteractive, registered_sequences
from stcn.progress import progress_bar

PAPER = {"auc_jf": 88.4, "jf_at_60s": 88.8}  # STCN release, DAVIS interactive (MiVOS-STCN)
MAX_INTERACTIONS = 8
MAX_TIME = 8 * 30  # seconds per object, as MiVOS-STCN's evaluation
# The package times each interaction by wall clock, so its AUC changes from run to run (and with the machine's
# load). The reported AUC-J&F and J&F@60s give every interaction a fixed share of the budget instead:
# max_time / max_interactions seconds per object (30 s: 8 x 30 s); the wall-time numbers are reported beside them.


@dataclass
class PreparedSequence:
    """A sequence ready for the session: its frames, its size, objects and where the first scribble came from."""

    name: str
    frames: list[Path]
    size: tuple[int, int]  # (W, H) evaluated at
    num_objects: int
    num_scribbles: int
    scribble_source: str  # "dataset" or "robot"

    def entry(self) -> dict:
        """The package's registry entry (`Davis.dataset[name]`)."""
        return {
            "name": self.name,
            "num_frames": len(self.frames),
            "num_objects": self.num_objects,
            "image_size": list(self.size),
            "num_scribbles": self.num_scribbles,
            "set": "val",
            "year": 2017,
            "attributes": [],
            "eval_t": True,
        }


def _labels(seq: Sequence, size: tuple[int, int]) -> np.ndarray:
    missing = [s for s in seq.stems if s not in seq.annotations]
    if missing:
        raise UserError(f"sequence {seq.name!r}: no ground-truth mask for frame {missing[0]} (interactive needs all)")
    out = []
    for stem in seq.stems:
        labels = read_mask(seq.annotations[stem])
        if labels.shape[::-1] != size:
            labels = np.asarray(Image.fromarray(labels).resize(size, Image.NEAREST))
        out.append(labels)
    return np.stack(out)


def _robot_scribble(name: str, gt: np.ndarray, num_objects: int) -> dict:
    """The package's robot on an empty prediction (it picks the frame with the worst Jaccard)."""
    robot = davisinteractive().robot.InteractiveScribblesRobot()
    return robot.interact(name, np.zeros_like(gt), gt, nb_objects=num_objects)


def prepare_root(davis_root: str | Path, split: str, out: str | Path, resolution: int | None) -> list[PreparedSequence]:
    """Write the session's DAVIS root into `out`; returns the prepared sequences."""
    davis_root, out = Path(davis_root), Path(out)
    prepared = []
    for seq in davis_sequences(davis_root, 2017, split):
        with Image.open(seq.frames[0]) as im:
            size = target_size(im.size, resolution)
        gt = _labels(seq, size)
        valid = gt[(gt > 0) & (gt < 255)]
        num_objects = int(valid.max()) if valid.size else 0
        if num_objects == 0:
            raise UserError(f"sequence {seq.name!r}: its ground truth has no object")
        ann = out / "Annotations" / "480p" / seq.name
        ann.mkdir(parents=True, exist_ok=True)
        for i, labels in enumerate(gt):
            write_mask(ann / f"{i:05d}.png", labels)
        scribbles = out / "Scribbles" / seq.name
        scribbles.mkdir(parents=True, exist_ok=True)
        given = sorted((davis_root / "Scribbles" / seq.name).glob("[0-9][0-9][0-9].json"))
        for i, src in enumerate(given, 1):
            shutil.copyfile(src, scribbles / f"{i:03d}.json")
        if not given:
            (scribbles / "001.json").write_text(json.dumps(_robot_scribble(seq.name, gt, num_objects)))
        source = "dataset" if given else "robot"
        prepared.append(PreparedSequence(seq.name, seq.frames, size, num_objects, max(len(given), 1), source))
    if not prepared:
        raise UserError(f"no sequences in {davis_root} for DAVIS 2017 {split}")
    return prepared


def load_images(frames: list[Path], size: tuple[int, int]) -> torch.Tensor:
    """Normalised (T, 3, H, W) frames at `size` (W, H), bicubic."""
    out = []
    for path in frames:
        rgb = read_frame(path)
        if rgb.shape[1::-1] != size:
            rgb = np.array(Image.fromarray(rgb).resize(size, Image.BICUBIC))
        out.append(image_tensor(rgb))
    return torch.stack(out)


@dataclass
class InteractiveResult:
    """The package's summaries of the report with each interaction timed at the fixed budget (`overall`,
    `sequences`) and at its wall time (`wall`, `wall_sequences`), with our timing."""

    report: pd.DataFrame
    overall: dict
    sequences: dict[str, dict] = field(default_factory=dict)
    seconds: float = 0.0
    interactions: int = 0
    wall: dict = field(default_factory=dict)
    wall_sequences: dict[str, dict] = field(default_factory=dict)
    budget: float = 0.0  # seconds per object per interaction of the fixed-budget numbers

    def summary(self) -> dict:
        wall = _row(self.wall) if self.wall else {}
        return {
            **_row(self.overall),
            "auc_jf_wall": wall.get("auc_jf"),
            "jf_at_60s_wall": wall.get("jf_at_60s"),
            "budget_s_per_object": self.budget,
            "interactions": self.interactions,
            "seconds": round(self.seconds, 2),
        }


def fixed_timing(report: pd.DataFrame, objects: dict[str, int], budget: float) -> pd.DataFrame:
    """The report with every interaction timed at `budget` seconds per object of its sequence."""
    fixed = report.copy()
    fixed["timing"] = fixed["sequence"].map(objects).astype(float) * budget
    return fixed


def run_session(
    stcn, s2m, fusion, prepared: list[PreparedSequence], root: Path, settings: InferenceSettings,
    max_interactions: int = MAX_INTERACTIONS, max_time: float = MAX_TIME,
) -> InteractiveResult:  # fmt: skip
    """Drive the package's local session over `prepared` (written by `prepare_root` into `root`)."""
    dvi = davisinteractive()
    scribbles2mask = dvi.utils.scribbles.scribbles2mask
    annotated_frames = dvi.utils.scribbles.annotated_frames
    by_name = {p.name: p for p in prepared}
    entries = {p.name: p.entry() for p in prepared}
    start, count = time.perf_counter(), 0
    images: dict[str, torch.Tensor] = {}
    with registered_sequences(entries), tempfile.TemporaryDirectory() as tmp:
        session = dvi.session.DavisInteractiveSession(
            host="localhost", davis_root=str(root), subset="val", max_nb_interactions=max_interactions,
            max_time=max_time, report_save_dir=tmp,
        )  # fmt: skip
        total = sum(p.num_scribbles for p in prepared) * max_interactions
        with session, progress_bar("interactive DAVIS", total, "interactions") as bar:
            core = None
            while session.next():
                name, scribbles, new_sample = session.get_scribbles(only_last=True)
                seq = by_name[name]
                if new_sample:  # a fresh processor (fresh memory) for every sequence / first scribble
                    if name not in images:
                        images = {name: load_images(seq.frames, seq.size)}
                    core = InteractiveCore(stcn, s2m, fusion, images[name], seq.num_objects, settings, DAVIS_SCHEDULE)
                frame = annotated_frames(scribbles)[0]
                scribble_map = scribbles2mask(scribbles, seq.size[::-1])[frame]
                masks = core.interact(frame, scribble_map)
                session.submit_masks(masks.astype(np.int64), None if core.last_propagated else [frame])
                count += 1
                bar.advance(1, info=f"{name} #{core.count}")
        report = session.get_report()
        wall = session.get_global_summary()
        service_cls = dvi.evaluation.EvaluationService
        budget = max_time / max_interactions
        fixed = fixed_timing(report, {p.name: p.num_objects for p in prepared}, budget)
        with registered_sequences(entries):
            service = service_cls("val", davis_root=str(root), max_t=max_time, max_i=max_interactions)
            overall = service.summarize_report(fixed.copy())
        per_sequence, wall_sequences = {}, {}
        for name in by_name:
            with registered_sequences({name: entries[name]}):
                service = service_cls("val", davis_root=str(root), max_t=max_time, max_i=max_interactions)
                per_sequence[name] = service.summarize_report(fixed[fixed["sequence"] == name].copy())
                wall_sequences[name] = service.summarize_report(report[report["sequence"] == name].copy())
    return InteractiveResult(report, overall, per_sequence, time.perf_counter() - start, count, wall, wall_sequences,
                             budget)  # fmt: skip


def _row(summary: dict) -> dict:
    return {
        "auc_jf": round(100 * float(summary["auc"]), 2),
        "jf_at_60s": round(100 * float(summary["metric_at_threshold"]["J_AND_F"]), 2),
    }


def write_results(result: InteractiveResult, prepared: list[PreparedSequence], out: Path, meta: dict) -> dict:
    """evaluation.json (overall, per sequence, settings), per_sequence.csv and the package's report.csv."""
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for p in prepared:
        timing = result.report[result.report["sequence"] == p.name]["timing"].astype(float)
        seconds = round(float(timing.mean()), 3) if len(timing) else math.nan
        wall = {f"{k}_wall": v for k, v in _row(result.wall_sequences[p.name]).items()}
        rows.append({"sequence": p.name, **_row(result.sequences[p.name]), **wall, "objects": p.num_objects,
                     "frames": len(p.frames), "first_scribble": p.scribble_source,
                     "seconds_per_interaction": seconds})  # fmt: skip
    per_sequence = pd.DataFrame(rows)
    per_sequence.to_csv(out / "per_sequence.csv", index=False)
    result.report.to_csv(out / "report.csv", index=False)
    data = {
        "overall": result.summary(),
        "paper": PAPER,
        "sequences": {r["sequence"]: {k: v for k, v in r.items() if k != "sequence"} for r in rows},
        "curve": result.overall["curve"],
        **meta,
    }
    (out / "evaluation.json").write_text(json.dumps(data, indent=2, default=float) + "\n")
    return data


def report_markdown(data: dict) -> str:
    """A table of our AUC-J&F and J&F@60s beside the paper's, then per sequence."""
    o, p = data["overall"], data["paper"]
    lines = [
        "# DAVIS interactive (MiVOS-STCN)",
        "",
        f"S2M: {data['s2m']}; fusion: {data['fusion']}; STCN: {data['stcn']}; "
        f"resolution: {data['resolution'] or 480}p; first scribbles: {data['first_scribbles']}.",
        "",
        f"AUC-J&F and J&F@60s time every interaction at a fixed {o['budget_s_per_object']:g} s per object "
        "(reproducible); the wall-time columns use the measured time, as the package does (they vary from run to run).",
        "",
        "| | AUC-J&F | J&F@60s | AUC-J&F (wall time) | J&F@60s (wall time) | interactions | seconds |",
        "|---|---|---|---|---|---|---|",
        f"| ours | {o['auc_jf']:.1f} | {o['jf_at_60s']:.1f} | {o['auc_jf_wall']:.1f} | {o['jf_at_60s_wall']:.1f} | "
        f"{o['interactions']} | {o['seconds']:.1f} |",
        f"| paper (STCN release) | | | {p['auc_jf']:.1f} | {p['jf_at_60s']:.1f} | | |",  # measured in wall time
        "",
        "| sequence | AUC-J&F | J&F@60s | objects | frames | first scribble | s / interaction |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, r in data["sequences"].items():
        lines.append(f"| {name} | {r['auc_jf']:.1f} | {r['jf_at_60s']:.1f} | {r['objects']} | {r['frames']} | "
                     f"{r['first_scribble']} | {r['seconds_per_interaction']:.2f} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def _describe(path: str | Path | None, seed: int) -> str:
    return str(path) if path is not None else f"seeded stand-in (seed {seed}, untrained)"


def evaluate_interactive(
    weights: str | Path, s2m_weights: str | Path | None, fusion_weights: str | Path | None, seed: int,
    davis_root: str | Path, split: str, out: str | Path, settings: InferenceSettings,
    max_interactions: int = MAX_INTERACTIONS, max_time: float = MAX_TIME,
) -> dict:  # fmt: skip
    """Models from their files (S2M: seeded when None; fusion: linear when None), the session over `split`,
    results in `out`."""
    from stcn.inference.loading import load_model
    from stcn.interactive.weights import announce_stand_ins, describe_fusion, load_fusion, load_s2m

    stcn = load_model(weights, settings.device)
    announce_stand_ins(s2m_weights, fusion_weights)
    s2m = load_s2m(s2m_weights, seed, settings.device)
    fusion = load_fusion(fusion_weights, settings.device)
    out = Path(out)
    with tempfile.TemporaryDirectory() as tmp:
        prepared = prepare_root(davis_root, split, tmp, settings.resolution)
        result = run_session(stcn, s2m, fusion, prepared, Path(tmp), settings, max_interactions, max_time)
    sources = sorted({p.scribble_source for p in prepared})
    meta = {
        "stcn": str(weights),
        "s2m": _describe(s2m_weights, seed),
        "fusion": describe_fusion(fusion_weights),
        "resolution": settings.resolution,
        "first_scribbles": " + ".join(
            {"dataset": "the dataset's scribble files", "robot": "the robot on an empty prediction"}[s] for s in sources
        ),
        "max_interactions": max_interactions,
        "max_time": max_time,
        "split": split,
    }
    data = write_results(result, prepared, out, meta)
    (out / "report.md").write_text(report_markdown(data))
    return data
