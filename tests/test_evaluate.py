"""`stcn evaluate` on small real DAVIS / YouTube-VOS roots: predictions, FPS, scores, submission zip."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pandas as pd
import pytest
from clihelp import one_error, stcn
from conftest import mini_davis, mini_youtube, own_davis_folder
from PIL import Image

from stcn.data.images import read_mask
from stcn.errors import UserError
from stcn.eval.evaluate import evaluate
from stcn.inference import InferenceSettings
from stcn.inference.loading import load_model


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return mini_davis(tmp_path_factory.mktemp("davis"), {"blackswan": "val", "libby": "val", "dog-agility": "train"})


def test_evaluate_davis17_cli_scores_the_split(weights_file, root, tmp_path):
    out = tmp_path / "pred"
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "stcn.cli",
            "evaluate",
            "--weights",
            weights_file,
            "--dataset",
            "davis17",
            "--root",
            root,
            "--split",
            "val",
            "--out",
            out,
            "--resolution",
            "128",
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "STCN_PROGRESS_PERIOD": "0"},
    )
    assert r.returncode == 0, r.stderr
    # a non-terminal gets plain progress lines: per frame (period 0), one per finished video, and the total
    progress = [line for line in r.stderr.splitlines() if line.startswith("davis17 val: ")]
    assert progress[0].startswith("davis17 val: 1/10 frames (10%)") and "video 1/2 blackswan frame 1/5" in progress[0]
    assert any(line.startswith("davis17 val: video 2/2 libby done, 5 frames at") for line in progress)
    assert progress[-1].startswith("davis17 val: 10/10 frames (100%)") and progress[-1].endswith("done")
    assert "" not in r.stderr.splitlines(), "a stray blank line in the log"
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["blackswan", "libby", "pictures"]
    assert len(list((out / "libby").glob("*.png"))) == 5
    gt_shape = read_mask(root / "Annotations/480p/libby/00000.png").shape
    assert read_mask(out / "libby/00003.png").shape == gt_shape  # processed at 128p, written at input size
    glob = pd.read_csv(out / "global_results-val.csv")
    assert list(glob.columns) == ["J&F-Mean", "J-Mean", "J-Recall", "J-Decay", "F-Mean", "F-Recall", "F-Decay"]
    summary = json.loads((out / "evaluation.json").read_text())
    assert summary["frames"] == 10 and summary["fps"] > 0
    assert summary["J&F-Mean"] == pytest.approx(100 * glob["J&F-Mean"][0], abs=0.1)  # percent; the CSV: fractions
    # how the results were made: every inference setting as used, and which weights (their sha256)
    assert summary["settings"] == {
        "top_k": 20,
        "mem_every": 5,
        "include_last": False,
        "precision": "fp32",
        "max_memory_frames": None,
        "device": "cpu",
        "resolution": 128,
        "max_frames": None,
    }
    digest = hashlib.sha256(Path(weights_file).read_bytes()).hexdigest()
    assert summary["weights"] == {"path": str(weights_file), "backend": "torch", "sha256": digest}
    assert "FPS" in r.stdout or "FPS" in r.stderr


def test_davis16_binarises_and_first_frame_is_ground_truth(weights_file, root, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("STCN_PROGRESS_PERIOD", "0")
    monkeypatch.setenv("STCN_QUIET", "1")  # what `--quiet` sets
    result = evaluate(load_model(weights_file), "davis16", root, "val", tmp_path, InferenceSettings(), year=2016)
    assert "frames (" not in capsys.readouterr().err
    assert result.timing.frames == 10
    assert result.per_sequence["Sequence"].tolist() == ["blackswan_1", "libby_1"]
    first = read_mask(tmp_path / "blackswan/00000.png")
    assert (first == (read_mask(root / "Annotations/480p/blackswan/00000.png") > 0)).all()


def test_youtube_submission_has_only_required_frames(weights_file, root, tmp_path):
    yt = mini_youtube(tmp_path / "yt", root)
    result = evaluate(load_model(weights_file), "youtube", yt, "valid", tmp_path / "out", InferenceSettings(), False)
    assert result.global_results is None and result.timing.frames == 15
    names = sorted(zipfile.ZipFile(tmp_path / "out/submission.zip").namelist())
    assert names[:3] == [
        "Annotations/blackswan/00000.png",
        "Annotations/blackswan/00002.png",
        "Annotations/blackswan/00004.png",
    ]
    assert len(names) == 9
    assert read_mask(tmp_path / "out/Annotations/libby/00002.png").shape == (240, 427)


def test_youtube_cli_progress_counts_the_frames_the_summary_counts(weights_file, root, tmp_path):
    """Only every other frame is written, but every frame is processed: progress and summary both count those."""
    yt = mini_youtube(tmp_path / "yt", root)
    r = subprocess.run([sys.executable, "-m", "stcn.cli", "evaluate", "--weights", weights_file, "--dataset",
                        "youtube18", "--root", yt, "--split", "valid", "--out", tmp_path / "out", "--resolution", "64"],
                       capture_output=True, text=True, env={**os.environ, "STCN_PROGRESS_PERIOD": "0"})  # fmt: skip
    assert r.returncode == 0, r.stderr
    summary = json.loads((tmp_path / "out/evaluation.json").read_text())
    assert summary["frames"] == 15  # 3 videos x 5 frames processed; 9 masks written
    progress = [line for line in r.stderr.splitlines() if line.startswith("youtube18 valid: ")]
    assert progress[-1].startswith("youtube18 valid: 15/15 frames (100%)") and progress[-1].endswith("done")
    assert any(line.startswith("youtube18 valid: 5/15 frames") and "blackswan frame 5/5" in line for line in progress)
    assert "" not in r.stderr.splitlines()


def test_unknown_layout_is_a_user_error(weights_file, tmp_path):
    model = load_model(weights_file)
    with pytest.raises(UserError, match="not a DAVIS root"):
        evaluate(model, "davis17", tmp_path, "val", tmp_path / "o", InferenceSettings(), False, layout="davis")
    with pytest.raises(UserError, match="neither DAVIS .* nor YouTube-VOS"):
        evaluate(model, "mine", tmp_path, "val", tmp_path / "o", InferenceSettings(), False)


def test_evaluate_cli_takes_layouts_from_the_registry_and_names_the_known_datasets(weights_file, root, tmp_path):
    """`--dataset` is a registry name (its layout and year) or `generic`; any other name is a one-line error."""
    args = ["evaluate", "--weights", weights_file, "--root", root, "--out", tmp_path / "out"]
    r = stcn(*args, "--dataset", "davis2017")
    one_error(r, "unknown dataset 'davis2017'", "davis17, davis17_testdev", alone=True)
    mine = shutil.copytree(root, tmp_path / "mine")
    (mine / "ImageSets/2016/val.txt").write_text("blackswan\n")  # 2017's val list: blackswan and libby
    registry = tmp_path / "registry.yaml"
    registry.write_text("datasets:\n  old_davis: {layout: davis, year: 2016}\n")
    args[args.index("--root") + 1] = mine
    r = stcn(*args, "--dataset", "old_davis", "--max-frames", "3", "--resolution", "64", STCN_CONFIG=str(registry))
    assert r.returncode == 0, r.stderr
    per_object = pd.read_csv(tmp_path / "out" / "per-sequence_results-val.csv")["Sequence"].tolist()
    assert per_object == ["blackswan_1"]  # the registry's year (2016) picked the split list


def test_evaluate_generic_cli_detects_the_layout_and_scores_without_imagesets(weights_file, root, tmp_path):
    """Your own DAVIS-layout folder (no ImageSets, no 480p level): every sequence predicted, scored, pictured."""
    mine = own_davis_folder(root, tmp_path / "mine", ("blackswan", "libby"))
    out = tmp_path / "out"
    r = subprocess.run(
        [sys.executable, "-m", "stcn.cli", "evaluate", "--weights", weights_file, "--dataset", "generic",
         "--root", mine, "--out", out, "--resolution", "64", "--max-frames", "4"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    summary = json.loads((out / "evaluation.json").read_text())
    assert summary["dataset"] == "generic" and summary["frames"] == 8
    assert 0 < summary["baseline J&F-Mean"] <= 100 and "J&F-Mean" in summary  # percent
    assert "copy-the-first-frame baseline" in r.stdout
    assert sorted(p.name for p in (out / "pictures").iterdir()) == ["blackswan.png", "libby.png"]
    with Image.open(out / "pictures/blackswan.png") as strip:  # 4 frames, height 120, side by side
        assert strip.mode == "P" and strip.height == 120 and strip.width == 4 * 214 + 3 * 2
