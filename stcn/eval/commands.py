"""`stcn` sub-commands of the evaluation area (attached by `stcn.cli` through `register`)."""

from __future__ import annotations

from pathlib import Path

import typer

from stcn.cli.options import (
    BACKEND,
    DEVICE,
    INCLUDE_LAST,
    MAX_MEMORY_FRAMES,
    MEM_EVERY,
    PRECISION,
    QUIET,
    TOP_K,
    WEIGHTS,
)

GENERIC = "generic"  # `stcn evaluate --dataset generic`: your own folder, not in the registry


def score(
    root: Path = typer.Option(..., "--root", help="DAVIS root (JPEGImages/480p, Annotations/480p, ImageSets)."),
    year: str = typer.Option("2017", "--year", help="DAVIS year: 2016 (one binarised object) or 2017."),
    split: str = typer.Option("val", "--split", help="Split list ImageSets/<year>/<split>.txt."),
    predictions: Path = typer.Option(..., "--predictions", help="Folder of predicted <seq>/<frame>.png masks."),
    out: Path | None = typer.Option(None, "--out", help="Folder for the CSVs (default: the predictions folder)."),
) -> None:
    """Score predicted masks with the official DAVIS semi-supervised J&F protocol; write the CSVs."""
    from stcn.eval.davis_score import print_results, score_davis

    out_dir = out if out is not None else predictions
    global_df, per_sequence = score_davis(root, year, split, predictions, out_dir=out_dir)
    print_results(global_df, per_sequence)
    typer.echo(f"wrote {out_dir / f'global_results-{split}.csv'} and per-sequence_results-{split}.csv")


def evaluate(
    weights: Path = WEIGHTS,
    dataset: str = typer.Option(
        GENERIC,
        help="A dataset of the registry (davis16, davis17, davis17_testdev, youtube18, youtube19, ...: "
        "its layout and year), or `generic`: your own folder (layout detected).",
    ),
    root: Path = typer.Option(..., help="Dataset root (DAVIS root, or YouTube-VOS root with <split>/JPEGImages)."),
    split: str = typer.Option("val", help="val / test-dev (DAVIS; ignored without ImageSets), valid (YouTube-VOS)."),
    layout: str | None = typer.Option(None, help="davis | youtube (default: the registry's, else from the folder)."),
    year: int | None = typer.Option(
        None, help="DAVIS scoring: 2016 (one binarised object) or 2017 (default: the registry's, else 2017)."
    ),
    max_frames: int | None = typer.Option(None, min=1, help="Evaluate only the first N frames of each sequence."),
    out: Path = typer.Option(..., help="Output folder for predictions, scores and evaluation.json."),
    top_k: int = TOP_K,
    mem_every: int = MEM_EVERY,
    include_last: bool = INCLUDE_LAST,
    precision: str = PRECISION,
    max_memory_frames: int | None = MAX_MEMORY_FRAMES,
    device: str | None = DEVICE,
    resolution: int | None = typer.Option(
        None,
        help="Process frames resized to this shorter side (default: the weights' weights.json sidecar, written by "
        "stcn train; else as stored; YouTube-VOS 480).",
    ),
    registry: Path | None = typer.Option(
        None, "--registry", help="YAML file with the `datasets:` registry (default: $STCN_CONFIG, conf/config.yaml)."
    ),
    backend: str = BACKEND,
    quiet: bool = QUIET,
) -> None:
    """Predict a whole split, report the amortized FPS, and score it when ground truth exists.

    Under `torchrun --nproc-per-node N -m stcn.eval.evaluate` (same options) the videos are split across
    the ranks by frame count; the outputs are those of one process.
    """
    from stcn.errors import UserError
    from stcn.eval.benchmark import evaluate_entry
    from stcn.eval.davis_score import print_results
    from stcn.inference.ort_backend import backend_device, check_weights
    from stcn.inference.settings import InferenceSettings, precision_said
    from stcn.model.trained import default_resolution
    from stcn.outputs import check_output
    from stcn.registry import Dataset

    device = backend_device(backend, device)  # an unknown backend fails first
    check_weights(weights, backend)  # inputs and the output before any model loads
    if not root.is_dir():
        raise UserError(f"dataset root not found: {root}")
    check_output(out, {"--root": root, "--weights": weights})  # never over the ground truth or the weights
    resolution = default_resolution(weights, resolution)  # the trained weights' own (weights.json), said
    layout, year = registry_layout(dataset, layout, year, registry)
    entry = Dataset(dataset, layout, year, root=str(root))  # layout None (generic): detected from the folder
    settings = InferenceSettings.from_knobs(locals())
    result = evaluate_entry(entry, weights, settings, out, split=split,
                            max_frames=max_frames, backend=backend)  # fmt: skip
    if result is None:  # not rank 0 of a torchrun group
        return
    if result.global_results is not None:
        print_results(result.global_results, result.per_sequence)
        typer.echo(f"copy-the-first-frame baseline: J&F {100 * result.baseline['J&F-Mean'].iloc[0]:.1f} %")
    typer.echo(
        f"{dataset} {split}: {result.timing.frames} frames in {result.timing.seconds:.1f} s "
        f"= {result.timing.fps:.2f} FPS (amortized, I/O excluded; {precision_said(precision, settings, backend)}) "
        f"-> {out}"
    )
    for path in result.files:
        typer.echo(f"wrote {path}")


def registry_layout(
    dataset: str, layout: str | None, year: int | None, registry: Path | None
) -> tuple[str | None, int | None]:
    """(layout, year) for `stcn evaluate`: the given ones, else the dataset's registry entry's (`generic`: none)."""
    if dataset == GENERIC:
        return layout, year
    from stcn.errors import UserError
    from stcn.registry import load_registry

    try:
        ds = load_registry(registry).dataset(dataset)
    except UserError as e:
        raise UserError(f"{e}; or --dataset {GENERIC} for a folder of your own") from None
    return layout or ds.layout, year or ds.year


def register(app: typer.Typer) -> None:
    """Attach the evaluation commands to the `stcn` app."""
    app.command("score")(score)
    app.command("evaluate")(evaluate)
