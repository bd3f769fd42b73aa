"""The one way to run an evaluation: a registry entry, weights, inference settings, an output folder.

`stcn evaluate`, the DVC stage `evaluate_<benchmark>@<model>` (pipelines/evaluate.py) and every `torchrun` rank of
either call `evaluate_entry`: it joins the torchrun group when there is one, loads the weights on this rank's
device, predicts (and, on rank 0, scores) the entry's split and leaves the group.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from stcn.eval.evaluate import Evaluation, evaluate
from stcn.eval.ranks import setup, teardown
from stcn.inference.settings import InferenceSettings
from stcn.registry import Dataset


def evaluate_entry(
    entry: Dataset,
    weights: str | Path,
    settings: InferenceSettings,
    out: str | Path,
    *,
    split: str | None = None,
    max_frames: int | None = None,
    progress: bool = True,
    backend: str = "torch",
) -> Evaluation | None:
    """Evaluate `weights` on `entry` (its folder, layout, DAVIS year) into `out`; rank 0's result, None on others.

    `split`: default the entry's `evaluate.split`, else val. `max_frames`: only the first N frames of each sequence.
    `backend`: torch (`weights` a checkpoint) or onnxruntime (`weights` a `stcn export` folder).
    """
    from stcn.inference.ort_backend import load_backend
    from stcn.outputs import check_output

    check_output(out, {"--root": entry.folder, "--weights": weights})  # predictions never over ground truth
    split = split or (entry.evaluate or {}).get("split") or "val"
    ranks, device = setup(settings.device)
    try:
        settings = dataclasses.replace(settings, device=device)
        model = load_backend(weights, backend, device, settings.precision)
        record = weights_record(weights, backend) if ranks.is_main else None
        result = evaluate(model, entry.name, entry.folder, split, out, settings,
                          progress=progress and ranks.is_main, layout=entry.layout, year=entry.year,
                          max_frames=max_frames, ranks=ranks, weights=record)  # fmt: skip
    finally:
        teardown()
    return result if ranks.is_main else None


def weights_record(weights: str | Path, backend: str = "torch") -> dict[str, str]:
    """Which weights an evaluation ran, for its `evaluation.json`: the path as given, the backend and the sha256 of
    the checkpoint file (an ONNX export folder: of its `manifest.json`, which holds every graph's sha256)."""
    from stcn.model.onnx_format import sha256

    path = Path(weights)
    return {
        "path": str(weights),
        "backend": backend,
        "sha256": sha256(path / "manifest.json" if path.is_dir() else path),
    }
