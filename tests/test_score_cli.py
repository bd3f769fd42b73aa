"""`stcn score` end to end, as a user runs it, on the bundled DAVIS sample."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest
from clihelp import one_error, stcn

REPO = Path(__file__).resolve().parent.parent
MINI = REPO / "stcn" / "data" / "bundled" / "davis-mini"


def run_score(*args: str | Path) -> subprocess.CompletedProcess:
    return stcn("score", *args, cwd=REPO)


@pytest.fixture(scope="module")
def perfect(tmp_path_factory) -> Path:
    """Predictions = the ground truth of the val sequences."""
    preds = tmp_path_factory.mktemp("pred")
    for seq in (MINI / "ImageSets" / "2017" / "val.txt").read_text().split():
        shutil.copytree(MINI / "Annotations" / "480p" / seq, preds / seq)
    return preds


def test_score_writes_both_csvs(perfect, tmp_path):
    result = run_score("--root", MINI, "--year", "2017", "--split", "val", "--predictions", perfect, "--out", tmp_path)
    assert result.returncode == 0, result.stderr
    assert "J&F-Mean" in result.stdout and "blackswan_1" in result.stdout
    g = pd.read_csv(tmp_path / "global_results-val.csv")
    assert list(g.columns) == ["J&F-Mean", "J-Mean", "J-Recall", "J-Decay", "F-Mean", "F-Recall", "F-Decay"]
    assert g.to_numpy().tolist() == [[1.0, 1.0, 1.0, 0.0, 1.0, 1.0, 0.0]]
    per = pd.read_csv(tmp_path / "per-sequence_results-val.csv")
    assert list(per.columns) == ["Sequence", "J-Mean", "F-Mean"]
    assert per["Sequence"].tolist() == ["blackswan_1", "car-shadow_1", "libby_1"]
    row = (tmp_path / "global_results-val.csv").read_text().splitlines()[1]
    assert row == "1.000,1.000,1.000,0.000,1.000,1.000,0.000"  # the official 3-decimal format


def test_missing_predictions_dir(tmp_path):
    result = run_score("--root", MINI, "--predictions", tmp_path / "nope", "--out", tmp_path)
    one_error(result, "predictions folder not found", "nope", alone=True)


def test_bad_root_and_split(perfect, tmp_path):
    one_error(run_score("--root", tmp_path, "--predictions", perfect), "not a DAVIS root", alone=True)
    result = run_score("--root", MINI, "--split", "test-dev", "--predictions", perfect, "--out", tmp_path)
    one_error(result, "split list not found", "test-dev.txt", alone=True)


def test_missing_prediction_file(perfect, tmp_path):
    preds = tmp_path / "pred"
    shutil.copytree(perfect, preds)
    (preds / "car-shadow" / "00005.png").unlink()
    result = run_score("--root", MINI, "--predictions", preds, "--out", tmp_path)
    one_error(result, "missing prediction", "car-shadow/00005.png", alone=True)
