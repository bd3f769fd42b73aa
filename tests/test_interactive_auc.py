"""The interactive evaluation's reported AUC is reproducible (a fixed time budget per interaction, the package's
wall-time numbers beside it), and stand-in S2M / fusion networks announce themselves in one line."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from clihelp import stcn
from conftest import DAVIS, mini_davis, shrink_sequence
from PIL import Image

from stcn.inference.settings import InferenceSettings
from stcn.interactive.fusion import FusionNet
from stcn.interactive.weights import load_s2m, seeded, stand_in_note

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_two_identical_runs_report_the_same_auc(tmp_path, weights_file):
    from stcn.interactive.evaluate import evaluate_interactive

    root = mini_davis(tmp_path / "davis", {"blackswan": "val"}, n=4, scale=0.15)
    runs = [evaluate_interactive(weights_file, None, None, 0, root, "val", tmp_path / f"r{i}", InferenceSettings(),
                                 3, 240) for i in range(2)]  # fmt: skip
    a, b = (r["overall"] for r in runs)
    assert a["auc_jf"] == b["auc_jf"] and a["jf_at_60s"] == b["jf_at_60s"]
    assert a["budget_s_per_object"] == 80.0  # 240 s / 3 interactions
    assert a["auc_jf_wall"] is not None and 0 <= a["auc_jf_wall"] <= 100
    # the reported AUC is the package's curve over fixed times 0, 80, 160, 240 s: computed here from report.csv
    report = pd.read_csv(tmp_path / "r0" / "report.csv")
    jf = [0.0, *report.groupby("interaction")["j_and_f"].mean().sort_index()]
    times = [0.0, 80.0, 160.0, 240.0]
    auc = np.trapezoid(jf + [jf[-1]], times + [240.0]) / 240.0
    assert a["auc_jf"] == pytest.approx(100 * auc, abs=0.01)
    assert a["jf_at_60s"] == pytest.approx(100 * np.interp(60, times, jf), abs=0.01)
    md = (tmp_path / "r0" / "report.md").read_text()
    assert "fixed 80 s per object" in md and "AUC-J&F (wall time)" in md


def test_stand_in_note_names_the_untrained_networks():
    assert stand_in_note("s2m.pth", "fusion_stcn.pth") is None
    both = stand_in_note(None, None)
    assert both.startswith("note: S2M: seeded, untrained") and "ignores the strokes" in both
    assert "; fusion: linear blend by frame distance (no --fusion fusion_stcn.pth)" in both
    fusion_only = stand_in_note("s2m.pth", None)
    assert fusion_only.startswith("note: fusion: linear") and "S2M" not in fusion_only and "strokes" not in fusion_only


def test_interact_cli_announces_stand_ins_in_one_line(tmp_path, weights_file):
    frames, masks = shrink_sequence(
        DAVIS / "JPEGImages/480p/blackswan", DAVIS / "Annotations/480p/blackswan", tmp_path / "seq", 3, 0.15
    )
    png = (np.asarray(Image.open(masks / "00000.png")) > 0).astype(np.uint8)
    Image.fromarray(png, "L").save(tmp_path / "s.png")
    torch.save(load_s2m(None, 0).state_dict(), tmp_path / "s2m.pth")
    torch.save(seeded(FusionNet(), 1).state_dict(), tmp_path / "fusion.pth")

    def interact(out: str, *extra: str) -> list[str]:
        args = ["interact", "--weights", weights_file, "--frames", frames, "--out", tmp_path / out,
                "--scribbles", tmp_path / "s.png", "--frame", "0", *extra]  # fmt: skip
        r = stcn(*args)
        assert r.returncode == 0, r.stderr
        return [line for line in r.stderr.splitlines() if line.startswith("note:")]

    assert interact("a") == [stand_in_note(None, None)]
    assert interact("b", "--s2m", str(tmp_path / "s2m.pth"), "--fusion", str(tmp_path / "fusion.pth")) == []
