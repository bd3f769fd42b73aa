"""Trained weights carry the resolution they were trained at (weights.json beside weights.pth, the weights file
itself official), and `stcn segment` / `stcn evaluate` run at it unless told otherwise, saying so in one line."""

from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pytest
from clihelp import stcn

from stcn.data.images import read_mask
from stcn.errors import UserError
from stcn.model.trained import default_resolution, sidecar, trained_resolution, write_trained_at


def segment(weights, frames, first_mask, out, *extra) -> subprocess.CompletedProcess:
    args = ["segment", "--weights", weights, "--frames", frames, "--first-mask", first_mask, "--out", out, *extra]
    return stcn(*args)


def masks(folder) -> list[np.ndarray]:
    return [read_mask(p) for p in sorted(folder.glob("*.png"))]


def test_segment_runs_at_the_trained_resolution_by_default(weights_file, small_blackswan, tmp_path):
    frames, first = small_blackswan
    weights = tmp_path / "weights.pth"
    shutil.copy(weights_file, weights)
    plain = segment(weights, frames, first / "00000.png", tmp_path / "native")
    assert plain.returncode == 0, plain.stderr
    assert "note:" not in plain.stderr  # no sidecar (e.g. the official stcn.pth): frames as given
    assert write_trained_at(weights, stage=3, crop=64) == tmp_path / "weights.json"
    assert trained_resolution(weights) == (80, 64)  # 1.25 x crop, the paper's 384 -> 480
    auto = segment(weights, frames, first / "00000.png", tmp_path / "auto")
    assert auto.returncode == 0, auto.stderr
    notes = [line for line in auto.stderr.splitlines() if line.startswith("note:")]
    assert len(notes) == 1 and "--resolution 80" in notes[0] and "64 px crops" in notes[0], auto.stderr
    given = segment(weights, frames, first / "00000.png", tmp_path / "given", "--resolution", "80")
    assert given.returncode == 0 and "note:" not in given.stderr
    auto_masks, given_masks = masks(tmp_path / "auto"), masks(tmp_path / "given")
    assert len(auto_masks) == 8 and all(np.array_equal(a, b) for a, b in zip(auto_masks, given_masks, strict=True))
    assert auto_masks[3].shape == (240, 427)  # written at the input size
    assert not all(np.array_equal(a, b) for a, b in zip(auto_masks, masks(tmp_path / "native"), strict=True))


def test_explicit_resolution_wins_and_a_bad_sidecar_is_one_line(tmp_path, capsys):
    weights = tmp_path / "w.pth"
    assert default_resolution(weights, None) is None
    write_trained_at(weights, stage=0, crop=384)
    assert default_resolution(weights, 200) == 200 and capsys.readouterr().err == ""
    assert default_resolution(weights, None) == 480
    sidecar(weights).write_text("{not json")
    with pytest.raises(UserError, match="unreadable weights sidecar .*w.json"):
        trained_resolution(weights)
    sidecar(weights).write_text(json.dumps({"crop": 96}))
    with pytest.raises(UserError, match="w.json"):
        trained_resolution(weights)
