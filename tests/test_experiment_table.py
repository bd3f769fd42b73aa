"""What `dvc exp show` / `dvc metrics show` read: per-key params that exist, one git-tracked metrics file, the
learning rate in scientific notation, and the generated stages page's DAG diagram matching `dvc dag --md`."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent


def stages() -> dict:
    return yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]


def lookup(params: dict, dotted: str):
    value = params
    for part in dotted.split("."):
        assert isinstance(value, dict) and part in value, f"dvc.yaml declares {dotted!r}, params.yaml lacks it"
        value = value[part]
    return value


def test_every_declared_param_exists():
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    for stage in stages().values():
        for entry in stage.get("do", stage).get("params", []):
            for name in entry if isinstance(entry, dict) else [entry]:
                lookup(params, name)


def test_report_reads_only_the_params_it_declares(tmp_path, monkeypatch):
    """Run the report stage on params.yaml cut down to its declared keys: an undeclared read is a KeyError."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    declared: dict = {}
    for name in stages()["report"]["params"]:
        *path, last = name.split(".")
        node = declared
        for part in path:
            node = node.setdefault(part, {})
        node[last] = lookup(params, name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(REPO / "pipelines"))
    import report
    import stage

    monkeypatch.setattr(stage, "load", lambda: declared)
    monkeypatch.setattr(report, "load", lambda: declared)
    report.report()
    assert json.loads((tmp_path / "reports" / "metrics.json").read_text()) == {}  # nothing evaluated here
    readme = (tmp_path / "reports" / "README.md").read_text()
    assert all(f"`{m}` = `{w}`" in readme for m, w in declared["evaluate"]["models"].items())


def test_metrics_file_is_the_git_tracked_report():
    spec = yaml.safe_load((REPO / "dvc.yaml").read_text())
    assert spec["metrics"] == ["reports/metrics.json"]
    outs = {k: v for o in stages()["report"]["outs"] for k, v in o.items()}
    assert outs["reports/metrics.json"] == {"cache": False}


def test_learning_rate_summary_is_scientific(tmp_path, monkeypatch):
    from stcn.train.live import TrainLog

    monkeypatch.chdir(tmp_path)  # outside the DVC project
    log = TrainLog(tmp_path / "dvclive", total=2, start=0, params={}, progress=False)
    log.log(0, {"loss": 1.0, "iou": 0.5, "lr": 1e-5})
    log.log(1, {"loss": 0.5, "iou": 0.6, "lr": 1e-6})
    log.close()
    summary = json.loads((tmp_path / "dvclive" / "metrics.json").read_text())
    assert summary["train"]["lr"] == "1.00e-06" and summary["train"]["loss"] == 0.5
    curve = (tmp_path / "dvclive" / "plots" / "metrics" / "train" / "lr.tsv").read_text().splitlines()
    assert [float(line.split("\t")[-1]) for line in curve[1:]] == [1e-5, 1e-6]  # the curve keeps numbers


def test_docs_dag_is_dvc_dag_md():
    """docs/dag.md's diagram (pipelines/compose.py draws it from the registry) is the one DVC draws of dvc.yaml."""
    page = (REPO / "docs" / "dag.md").read_text()
    shown = re.search(r"^```mermaid\n.*?^```$", page, re.S | re.M)
    assert shown, "docs/dag.md lacks the mermaid diagram: run `python pipelines/compose.py`"
    dag = subprocess.run([sys.executable, "-m", "dvc", "dag", "--md"], cwd=REPO, capture_output=True, text=True)
    assert dag.returncode == 0, dag.stderr
    assert shown.group(0).strip() == dag.stdout.strip(), "run `python pipelines/compose.py`"
    assert shown.group(0).count("-->") > 50  # the sample's graph, edges included
