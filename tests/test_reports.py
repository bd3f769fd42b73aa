"""stcn.reports: tables beside the paper's numbers, summary, training-curve plot, README."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest
from conftest import REPO

from stcn.registry import load_registry
from stcn.reports import BASELINE, benchmark_table, benchmarks, markdown, read_curves, summary_table, write_reports

BENCHMARKS = benchmarks(load_registry(REPO / "params.yaml"))

# scores in percent, as evaluation.json holds them
DAVIS = {"dataset": "davis2017", "split": "val", "frames": 10, "seconds": 5.0, "fps": 2.0,
         "J&F-Mean": 50.0, "J-Mean": 40.0, "J-Recall": 30.0, "J-Decay": 0.0, "F-Mean": 60.0,
         "baseline J&F-Mean": 25.0}  # fmt: skip
YOUTUBE = {"dataset": "youtube", "split": "valid", "frames": 10, "seconds": 2.5, "fps": 4.0}


def bench(key: str):
    return next(b for b in BENCHMARKS if b.key == key)


def test_davis_table_is_ours_in_percent_beside_the_paper():
    table = benchmark_table(bench("davis17"), DAVIS, "models/s012/weights.pth")
    ours, paper = table.iloc[0], table.iloc[2]
    assert list(table.index) == ["models/s012/weights.pth", BASELINE, "STCN s012 (paper)"]
    assert (ours["J&F"], ours["J"], ours["F"], ours["FPS"]) == pytest.approx((50.0, 40.0, 60.0, 2.0))
    assert math.isnan(ours["FPS (AMP)"])
    assert (paper["J&F"], paper["FPS"], paper["FPS (AMP)"]) == (85.3, 20.2, 34.1)
    assert table.loc[BASELINE, "J&F"] == pytest.approx(25.0) and math.isnan(table.loc[BASELINE, "FPS"])


def test_amp_fps_goes_to_its_own_column():
    ours = benchmark_table(bench("davis16"), DAVIS, "ours", amp=True).iloc[0]
    assert ours["FPS (AMP)"] == 2.0 and math.isnan(ours["FPS"])


def test_paper_numbers():
    paper = {b.key: b.paper.get("J&F", b.paper.get("G")) for b in BENCHMARKS}
    assert paper == {"davis16": 91.7, "davis17": 85.3, "davis17_testdev": 79.9, "youtube18": 84.3, "youtube19": 84.2}
    assert bench("davis16").paper["FPS"] == 26.9


def test_youtube_without_server_scores_has_only_fps():
    table = benchmark_table(bench("youtube18"), YOUTUBE, "ours")
    ours = table.iloc[0]
    assert ours["FPS"] == 4.0
    assert all(math.isnan(ours[c]) for c in ("G", "J seen", "F seen", "J unseen", "F unseen"))
    assert table.iloc[2]["J unseen"] == 79.0


def test_missing_evaluation_is_an_empty_row_and_markdown_shows_dashes():
    table = benchmark_table(bench("davis16"), None, "ours")
    assert table.iloc[0].isna().all()
    md = markdown(table)
    assert "—" in md and "91.7" in md and "26.90" in md


def test_summary_has_headline_score_per_benchmark():
    tables = {"davis17": benchmark_table(bench("davis17"), DAVIS, "ours"),
              "youtube19": benchmark_table(bench("youtube19"), YOUTUBE, "ours")}  # fmt: skip
    summary = summary_table(tables, BENCHMARKS)
    assert list(summary["benchmark"]) == ["DAVIS 2017 val", "YouTube-VOS 2019 val"]
    assert list(summary["score"]) == ["J&F", "G"]
    assert summary.loc[0, "ours"] == pytest.approx(50.0) and summary.loc[0, "paper"] == 85.3
    assert summary.loc[1, "ours FPS"] == 4.0 and math.isnan(summary.loc[1, "ours"])


def _log(folder, metric: str, values: list[float]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rows = "".join(f"{i}\t{v}\n" for i, v in enumerate(values))
    (folder / f"{metric}.tsv").write_text(f"step\t{metric}\n{rows}")


def test_write_reports(tmp_path):
    results, models, out = tmp_path / "results", tmp_path / "models", tmp_path / "reports"
    (results / "davis17").mkdir(parents=True)
    (results / "davis17" / "evaluation.json").write_text(json.dumps(DAVIS))
    (results / "davis17" / "per-sequence_results-val.csv").write_text(
        "Sequence,J-Mean,F-Mean\nblackswan_1,0.5,0.7\ncar-shadow_1,0.2,0.4\n"
    )
    (results / "davis17" / "baseline_per-sequence_results-val.csv").write_text(
        "Sequence,J-Mean,F-Mean\nblackswan_1,0.8,0.6\ncar-shadow_1,0.1,0.1\n"
    )
    (results / "davis17" / "pictures").mkdir()
    (results / "davis17" / "pictures" / "blackswan.png").write_bytes(b"\x89PNG fake")
    (results / "youtube18").mkdir(parents=True)
    (results / "youtube18" / "evaluation.json").write_text(json.dumps(YOUTUBE))
    for run in ("s0", "s012"):
        train = models / run / "dvclive" / "plots" / "metrics" / "train"
        _log(train, "loss", [1.0, 0.8, 0.5])
        _log(train, "iou", [0.1, 0.2, 0.4])

    curves = read_curves(models, ["loss", "iou"])
    assert set(curves) == {"s0", "s012"} and list(curves["s0"].columns) == ["step", "loss", "iou"]

    files = write_reports(results, models, out, benches=BENCHMARKS, curves=["loss", "iou"], label="w.pth",
                          notes=["profile: `sample`"])  # fmt: skip
    assert all(f.is_file() for f in files)
    assert {f.name for f in files} >= {"davis16.md", "davis17.csv", "summary.csv", "training_curves.png", "README.md"}
    assert (out / "training_curves.png").read_bytes()[:4] == b"\x89PNG"
    csv = pd.read_csv(out / "davis17.csv", index_col="model")
    assert csv.loc["w.pth", "J&F"] == pytest.approx(50.0) and csv.loc["STCN s012 (paper)", "J&F"] == 85.3
    assert "Not evaluated." in (out / "davis16.md").read_text()
    assert "Not scored here" in (out / "youtube18.md").read_text()
    readme = (out / "README.md").read_text()
    assert "- profile: `sample`" in readme and "## DAVIS 2017 val" in readme and "training_curves.png" in readme
    summary = pd.read_csv(out / "summary.csv")
    assert len(summary) == len(BENCHMARKS) and summary.loc[1, BASELINE] == pytest.approx(25.0)
    md = (out / "davis17.md").read_text()
    flat = " ".join(md.split())
    assert "| blackswan_1 | 60.0 | 50.0 | 70.0 | 70.0 |" in flat
    assert "| car-shadow_1 | 30.0 | 20.0 | 40.0 | 10.0 |" in flat
    assert "![blackswan](davis17/blackswan.png)" in md and (out / "davis17" / "blackswan.png").is_file()
    # the experiment table's metrics: percent scores, FPS, last training values; nothing for what was not run
    assert json.loads((out / "metrics.json").read_text()) == {
        "davis17": {"J&F-Mean": 50.0, "fps": 2.0},
        "youtube18": {"fps": 4.0},
        "train": {"s0": {"loss": 0.5, "iou": 0.4}, "s012": {"loss": 0.5, "iou": 0.4}},
    }
