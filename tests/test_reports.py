"""stcn.reports: tables beside the paper's numbers, summary, training-curve plot, README."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest
from conftest import REPO
from registry_checks import raw_config

from stcn.registry import load_registry
from stcn.reports import (
    BASELINE,
    PAPER,
    benchmark_table,
    benchmarks,
    markdown,
    read_curves,
    summary_table,
    write_reports,  # fmt: skip
)

BENCHMARKS = benchmarks(load_registry(REPO / "params.yaml"))

# scores in percent, as evaluation.json holds them
DAVIS = {"dataset": "davis2017", "split": "val", "frames": 10, "seconds": 5.0, "fps": 2.0,
         "J&F-Mean": 50.0, "J-Mean": 40.0, "J-Recall": 30.0, "J-Decay": 0.0, "F-Mean": 60.0,
         "baseline J&F-Mean": 25.0}  # fmt: skip
YOUTUBE = {"dataset": "youtube", "split": "valid", "frames": 10, "seconds": 2.5, "fps": 4.0}


def bench(key: str):
    return next(b for b in BENCHMARKS if b.key == key)


def test_davis_table_is_a_row_per_model_in_percent_beside_the_paper():
    other = {**DAVIS, "J&F-Mean": 70.0, "fps": 3.0}
    table = benchmark_table(bench("davis17"), {"s012": DAVIS, "s03": other})
    paper = bench("davis17").paper
    assert list(table.index) == ["s012", "s03", BASELINE, PAPER]
    ours = table.loc["s012"]
    assert (ours["J&F"], ours["J"], ours["F"], ours["FPS"]) == pytest.approx((50.0, 40.0, 60.0, 2.0))
    assert (table.loc["s03", "J&F"], table.loc["s03", "FPS"]) == pytest.approx((70.0, 3.0))
    assert math.isnan(ours["FPS (AMP)"])
    assert all(table.loc[PAPER, c] == paper[c] for c in ("J&F", "FPS", "FPS (AMP)"))
    assert table.loc[BASELINE, "J&F"] == pytest.approx(25.0) and math.isnan(table.loc[BASELINE, "FPS"])


def test_amp_fps_goes_to_its_own_column():
    ours = benchmark_table(bench("davis16"), {"ours": DAVIS}, amp=True).iloc[0]
    assert ours["FPS (AMP)"] == 2.0 and math.isnan(ours["FPS"])


def test_paper_numbers_are_the_registrys():
    """Every benchmark of conf/ (a dataset with `evaluate`) is reported with the paper's numbers conf/ gives."""
    raw = raw_config(REPO / "conf")["datasets"]
    expected = {
        name: (entry.get("report") or {}).get("paper", {}) for name, entry in raw.items() if "evaluate" in entry
    }
    assert {b.key: b.paper for b in BENCHMARKS} == expected


def test_a_benchmark_without_paper_numbers_has_an_empty_paper_row(tmp_path):
    """A dataset of your own (no `report.paper` in its registry entry) is reported like the others, with an empty
    paper row in its table and summary (dashes in markdown), not an error."""
    from stcn.registry import parse_registry

    entry = {"layout": "davis", "year": 2017, "splits": ["val"], "evaluate": {"split": "val"},
             "report": {"title": "My clips"}}  # fmt: skip
    (mine,) = benchmarks(parse_registry({"clips": entry}))
    assert (mine.key, mine.title, mine.paper) == ("clips", "My clips", {})
    table = benchmark_table(mine, {"s03": DAVIS})
    assert table.loc["s03", "J&F"] == pytest.approx(50.0) and table.loc[PAPER].isna().all()
    assert table.loc[BASELINE, "J&F"] == pytest.approx(25.0)
    paper_row = next(line for line in markdown(table).splitlines() if PAPER in line)
    assert not any(ch.isdigit() for ch in paper_row.replace(PAPER, "")) and "—" in paper_row
    summary = summary_table({"clips": table}, [mine])
    assert math.isnan(summary.loc[0, "paper"]) and summary.loc[0, "ours"] == pytest.approx(50.0)


def test_each_benchmark_reports_the_settings_its_evaluations_record(tmp_path):
    """The settings and weights come from each evaluation.json (a per-dataset top_k override shows in that
    benchmark's report only), and its precision picks the FPS column; params.yaml is not read."""
    settings = {"top_k": 20, "mem_every": 5, "include_last": False, "precision": "fp32", "max_memory_frames": None,
                "device": "cpu", "resolution": 128, "max_frames": 20}  # fmt: skip
    weights = {"path": "models/s03/weights.pth", "backend": "torch", "sha256": "ab" * 32}
    results = tmp_path / "results"
    for key, extra in (("davis16", {"top_k": 10}), ("davis17", {"precision": "fast", "resolution": None})):
        folder = results / key / "s03"
        folder.mkdir(parents=True)
        record = {**DAVIS, "settings": {**settings, **extra}, "weights": weights}
        (folder / "evaluation.json").write_text(json.dumps(record))
    (results / "davis17" / "s012").mkdir()
    (results / "davis17" / "s012" / "evaluation.json").write_text(json.dumps(DAVIS))  # written before settings were
    write_reports(results, tmp_path / "models", tmp_path / "out", benches=BENCHMARKS, models=["s012", "s03"], runs=(),
                  curves=["loss"], notes=[])  # fmt: skip
    d16, d17 = (tmp_path / "out" / "davis16.md").read_text(), (tmp_path / "out" / "davis17.md").read_text()
    sha = f"sha256 `{'ab' * 32}`"
    assert f"- `s03`: cpu, fp32, 128p, top-k 10, a memory frame every 5, the first 20 frames of each sequence; " \
           f"weights `models/s03/weights.pth` (torch, {sha})" in d16  # fmt: skip
    assert "- `s03`: cpu, fast, the frames' own size, top-k 20, a memory frame every 5" in d17 and "top-k 10" not in d17
    assert "- `s012`: settings not recorded" in d17
    csv = pd.read_csv(tmp_path / "out" / "davis17.csv", index_col="model")
    assert csv.loc["s03", "FPS (AMP)"] == 2.0 and math.isnan(csv.loc["s03", "FPS"])  # fast: half precision
    assert csv.loc["s012", "FPS"] == 2.0


def test_youtube_without_server_scores_has_only_fps():
    table = benchmark_table(bench("youtube18"), {"ours": YOUTUBE})
    ours = table.iloc[0]
    assert ours["FPS"] == 4.0
    assert all(math.isnan(ours[c]) for c in ("G", "J seen", "F seen", "J unseen", "F unseen"))
    assert table.loc[PAPER, "J unseen"] == bench("youtube18").paper["J unseen"]


def test_missing_evaluation_is_an_empty_row_and_markdown_shows_dashes():
    table = benchmark_table(bench("davis16"), {"ours": None})
    assert table.iloc[0].isna().all()
    md = markdown(table)
    paper = bench("davis16").paper
    assert "—" in md and f"{paper['J&F']:.1f}" in md and f"{paper['FPS']:.2f}" in md


def test_summary_has_headline_score_per_benchmark_and_model():
    tables = {"davis17": benchmark_table(bench("davis17"), {"s012": DAVIS, "s03": None}),
              "youtube19": benchmark_table(bench("youtube19"), {"s012": YOUTUBE, "s03": None})}  # fmt: skip
    summary = summary_table(tables, BENCHMARKS)
    assert list(summary["benchmark"]) == ["DAVIS 2017 val"] * 2 + ["YouTube-VOS 2019 val"] * 2
    assert list(summary["model"]) == ["s012", "s03"] * 2
    assert list(summary["score"]) == ["J&F", "J&F", "G", "G"]
    assert summary.loc[0, "ours"] == pytest.approx(50.0) and summary.loc[0, "paper"] == bench("davis17").paper["J&F"]
    assert math.isnan(summary.loc[1, "ours"]) and summary.loc[1, BASELINE] == pytest.approx(25.0)
    assert summary.loc[2, "ours FPS"] == 4.0 and math.isnan(summary.loc[2, "ours"])


def _log(folder, metric: str, values: list[float]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rows = "".join(f"{i}\t{v}\n" for i, v in enumerate(values))
    (folder / f"{metric}.tsv").write_text(f"step\t{metric}\n{rows}")


def test_write_reports(tmp_path):
    results, models, out = tmp_path / "results", tmp_path / "models", tmp_path / "reports"
    s03 = results / "davis17" / "s03"
    s03.mkdir(parents=True)
    (s03 / "evaluation.json").write_text(json.dumps(DAVIS))
    (s03 / "per-sequence_results-val.csv").write_text(
        "Sequence,J-Mean,F-Mean\nblackswan_1,0.5,0.7\ncar-shadow_1,0.2,0.4\n"
    )
    (s03 / "baseline_per-sequence_results-val.csv").write_text(
        "Sequence,J-Mean,F-Mean\nblackswan_1,0.8,0.6\ncar-shadow_1,0.1,0.1\n"
    )
    (s03 / "pictures").mkdir()
    (s03 / "pictures" / "blackswan.png").write_bytes(b"\x89PNG fake")
    s012 = results / "davis17" / "s012"
    s012.mkdir(parents=True)
    (s012 / "evaluation.json").write_text(json.dumps({**DAVIS, "J&F-Mean": 70.0, "fps": 1.0}))
    (s012 / "per-sequence_results-val.csv").write_text(
        "Sequence,J-Mean,F-Mean\nblackswan_1,0.9,0.9\ncar-shadow_1,0.5,0.5\n"
    )
    (results / "youtube18" / "s03").mkdir(parents=True)
    (results / "youtube18" / "s03" / "evaluation.json").write_text(json.dumps(YOUTUBE))
    for run in ("s0", "s012"):
        train = models / run / "dvclive" / "plots" / "metrics" / "train"
        _log(train, "loss", [1.0, 0.8, 0.5])
        _log(train, "iou", [0.1, 0.2, 0.4])

    curves = read_curves(models, ["loss", "iou"], ("s0", "s01", "s012"))
    assert set(curves) == {"s0", "s012"} and list(curves["s0"].columns) == ["step", "loss", "iou"]

    files = write_reports(results, models, out, benches=BENCHMARKS, models=["s012", "s03"], runs=("s0", "s012"),
                          curves=["loss", "iou"], notes=["profile: `sample`"])  # fmt: skip
    assert all(f.is_file() for f in files)
    assert {f.name for f in files} >= {"davis16.md", "davis17.csv", "summary.csv", "training_curves.png", "README.md"}
    assert (out / "training_curves.png").read_bytes()[:4] == b"\x89PNG"
    csv = pd.read_csv(out / "davis17.csv", index_col="model")
    assert list(csv.index) == ["s012", "s03", BASELINE, PAPER]
    assert csv.loc["s03", "J&F"] == pytest.approx(50.0) and csv.loc["s012", "J&F"] == pytest.approx(70.0)
    assert csv.loc[PAPER, "J&F"] == bench("davis17").paper["J&F"]
    assert "Not evaluated: s012, s03." in (out / "davis16.md").read_text()
    youtube = (out / "youtube18.md").read_text()
    assert "Not scored here" in youtube and "Not evaluated: s012." in youtube
    readme = (out / "README.md").read_text()
    assert "- profile: `sample`" in readme and "## DAVIS 2017 val" in readme and "training_curves.png" in readme
    summary = pd.read_csv(out / "summary.csv")
    assert len(summary) == 2 * len(BENCHMARKS) and list(summary["model"][:2]) == ["s012", "s03"]
    davis17 = summary[summary["benchmark"] == bench("davis17").title].set_index("model")  # where conf/ lists it
    assert davis17.loc["s012", BASELINE] == pytest.approx(25.0) and davis17.loc["s03", "ours"] == pytest.approx(50.0)
    md = (out / "davis17.md").read_text()
    flat = " ".join(md.split())
    assert "| Sequence | J&F (s012) | J&F (s03) | J&F (copy the first-frame mask) |" in flat
    assert "| blackswan_1 | 90.0 | 60.0 | 70.0 |" in flat
    assert "| car-shadow_1 | 50.0 | 30.0 | 10.0 |" in flat
    assert "![blackswan](davis17/s03/blackswan.png)" in md and (out / "davis17" / "s03" / "blackswan.png").is_file()
    # the experiment table's metrics: per benchmark and model, percent scores and FPS; last training values
    assert json.loads((out / "metrics.json").read_text()) == {
        "davis17": {"s012": {"J&F-Mean": 70.0, "fps": 1.0}, "s03": {"J&F-Mean": 50.0, "fps": 2.0}},
        "youtube18": {"s03": {"fps": 4.0}},
        "train": {"s0": {"loss": 0.5, "iou": 0.4}, "s012": {"loss": 0.5, "iou": 0.4}},
    }
