"""`stcn` sub-commands of the evaluation area (attached by `stcn.cli` through `register`)."""

from __future__ import annotations

from pathlib import Path

import typer


def score(
    root: Path = typer.Option(..., "--root", help="DAVIS root (JPEGImages/480p, Annotations/480p, ImageSets)."),
    year: str = typer.Option("2017", "--year", help="DAVIS year: 2016 (one binarised object) or 2017."),
    split: str = typer.Option("val", "--split", help="Split list ImageSets/<year>/<split>.txt."),
    predictions: Path = typer.Option(..., "--predictions", help="Folder of predicted <seq>/<frame>.png masks."),
    out: Path | None = typer.Option(None, "--out", help="Folder for the CSVs [default: the predictions folder]."),
) -> None:
    """Score predicted masks with the official DAVIS semi-supervised J&F protocol; write the CSVs."""
    from stcn.eval.davis_score import print_results, score_davis

    out_dir = out if out is not None else predictions
    global_df, per_sequence = score_davis(root, year, split, predictions, out_dir=out_dir)
    print_results(global_df, per_sequence)
    typer.echo(f"wrote {out_dir / f'global_results-{split}.csv'} and per-sequence_results-{split}.csv")


def register(app: typer.Typer) -> None:
    """Attach the evaluation commands to the `stcn` app."""
    app.command("score")(score)
