"""`torchrun --nproc-per-node 2 -m stcn.eval.evaluate` (2 gloo ranks on CPU) writes what one process writes."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
from conftest import mini_davis

from stcn.data.images import read_mask
from stcn.eval.ranks import balance


def test_balance_by_frame_count():
    assert balance([50, 40, 49, 10], 2) == [[0, 3], [1, 2]]  # 50 | 49, then 40 -> rank 1 (89), 10 -> rank 0 (60)
    assert balance([5, 5, 5], 1) == [[0, 1, 2]]
    assert balance([3], 2) == [[0], []]  # more ranks than videos: the idle rank just waits


def options(weights, root, out) -> list[str]:
    return ["--weights", str(weights), "--dataset", "davis17", "--root", str(root), "--split", "val",
            "--out", str(out), "--resolution", "96", "--device", "cpu"]  # fmt: skip


def test_two_gloo_ranks_equal_one_process(weights_file, tmp_path):
    root = mini_davis(tmp_path / "davis", {"blackswan": "val", "libby": "val", "car-shadow": "val"}, n=4, scale=0.25)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "STCN_QUIET": "1"}
    one = subprocess.run(
        [sys.executable, "-m", "stcn.cli", "evaluate", *options(weights_file, root, tmp_path / "one")],
        capture_output=True,
        text=True,
        env=env,
    )
    assert one.returncode == 0, one.stderr
    two = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
         "-m", "stcn.eval.evaluate", *options(weights_file, root, tmp_path / "two")],
        capture_output=True,
        text=True,
        env=env,
    )  # fmt: skip
    assert two.returncode == 0, two.stderr[-3000:]
    a, b = tmp_path / "one", tmp_path / "two"
    pngs = sorted(p.relative_to(a) for p in a.rglob("*.png"))  # masks + a picture strip per sequence
    assert len(pngs) == 12 + 3 and pngs == sorted(p.relative_to(b) for p in b.rglob("*.png"))
    for rel in pngs:
        assert np.array_equal(read_mask(a / rel), read_mask(b / rel)), rel
    for csv in ("global_results-val.csv", "per-sequence_results-val.csv"):
        assert (a / csv).read_text() == (b / csv).read_text()
    ja, jb = json.loads((a / "evaluation.json").read_text()), json.loads((b / "evaluation.json").read_text())
    timing = ("seconds", "fps")
    assert {k: v for k, v in ja.items() if k not in timing} == {k: v for k, v in jb.items() if k not in timing}
    assert jb["frames"] == 12 and jb["fps"] > 0
    assert two.stdout.count("J&F-Mean") == 1  # only rank 0 reports
