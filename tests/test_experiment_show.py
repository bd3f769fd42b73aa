"""The README's experiment and its `dvc exp show` recipe: at 120 columns the table shows the changed parameter and
J&F in full (no `…`), rendered by DVC itself for an experiment saved in a project with this repository's dvc.yaml
params and metrics declarations, params.yaml and reports/metrics.json."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent


def readme_commands() -> tuple[str, str]:
    """The README's example `dvc exp run -S KEY=VALUE` and its `dvc exp show ... # fits 120 columns` line."""
    text = (REPO / "README.md").read_text()
    run = re.search(r"^dvc exp run -S (\S+=\S+)\s+# an experiment", text, re.M)
    show = re.search(r"^(dvc exp show .*?)\s+# fits 120 columns$", text, re.M)
    assert run and show, "README lacks the example experiment or its `dvc exp show` line"
    return run.group(1), show.group(1)


def dvc(cwd: Path, *args: str) -> str:
    env = {**os.environ, "COLUMNS": "120", "DVC_NO_ANALYTICS": "1", "GIT_AUTHOR_NAME": "t", "GIT_COMMITTER_NAME": "t",
           "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_EMAIL": "t@t"}  # fmt: skip
    r = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=cwd, env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_readme_exp_show_recipe_fits_120_columns(tmp_path):
    override, show = readme_commands()
    key, value = override.split("=", 1)
    spec = yaml.safe_load((REPO / "dvc.yaml").read_text())
    for group in spec["stages"].values():  # the params and metrics columns stay; no outputs to check or save
        stage = group.get("do", group)  # a foreach group's stage body
        stage.pop("outs", None)
        stage.pop("deps", None)
        stage["cmd"] = "true"
    spec.pop("plots", None)
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    dvc(tmp_path, "init", "-q")
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    (tmp_path / "params.yaml").write_text((REPO / "params.yaml").read_text())
    (tmp_path / "reports").mkdir()
    metrics = json.loads((REPO / "reports" / "metrics.json").read_text())
    (tmp_path / "reports" / "metrics.json").write_text(json.dumps(metrics))
    subprocess.run(["git", "add", "-A"], cwd=tmp_path, check=True)
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "base"], cwd=tmp_path,
                   check=True)  # fmt: skip
    params = yaml.safe_load((tmp_path / "params.yaml").read_text())
    node = params
    *path, last = key.split(".")
    for part in path:
        node = node[part]
    assert str(node[last]) != value, "the example must change the parameter"
    node[last] = yaml.safe_load(value)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    metrics["davis17"]["s03"]["J&F-Mean"] = 12.34  # the experiment's (made-up) score of one model, to find its row
    (tmp_path / "reports" / "metrics.json").write_text(json.dumps(metrics))
    dvc(tmp_path, "exp", "save", "-n", "readme-example")
    table = dvc(tmp_path, *shlex.split(show)[1:], "--no-pager")
    lines = table.splitlines()
    assert "…" not in table, table
    assert max(len(line) for line in lines) <= 120, table
    header = next(line for line in lines if "Experiment" in line)
    assert key in header and "davis17.s03.J&F-Mean" in header and "davis17.s012.J&F-Mean" in header, header
    row = next(line for line in lines if "readme-example" in line)
    assert "12.34" in row and re.search(rf"\s{re.escape(value)}\s", row), row
