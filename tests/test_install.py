"""The set-up: `.ci/run` runs the README's commands, and the installed torch build is whole (CPU stays CPU)."""

from __future__ import annotations

import importlib.metadata
import re
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent


def readme_setup_commands() -> list[str]:
    """The commands of the README's first bash block ("Set up and test"), comments dropped."""
    block = re.search(r"^## Set up and test\n.*?^```bash\n(.*?)^```", (REPO / "README.md").read_text(), re.S | re.M)
    return [re.sub(r"\s+#.*", "", line).strip() for line in block.group(1).splitlines() if line.strip()]


def test_ci_runs_the_readme_commands_and_lint_only():
    readme = readme_setup_commands()
    assert readme == ["bash install.sh", "python -m pytest -q"]
    ci = [
        line.strip()
        for line in (REPO / ".ci/run").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    commands = ci[ci.index('cd "$(dirname "$0")/.."') + 2 :]  # after `cd` and the pip quiet-down export
    assert commands == [
        "bash install.sh",
        "ruff check .",
        "ruff format --check .",
        "python -m pytest -q",
        "python -m pytest -q -m dag",
    ]


def nvidia_distributions() -> list[str]:
    names = (d.metadata["Name"] for d in importlib.metadata.distributions())
    return sorted(n for n in names if n.lower().startswith("nvidia-"))


def test_installed_torch_build_is_whole():
    """A CPU torch has no NVIDIA libraries installed beside it (a CPU-only install stayed CPU-only); a CUDA torch
    has the CUDA runtime libraries its build names."""
    requires = importlib.metadata.requires("torch") or []
    if torch.version.cuda is None:
        assert "+cpu" in torch.__version__ or not any(r.startswith("nvidia-") for r in requires)
        assert nvidia_distributions() == [], "a CPU-only torch install pulled in NVIDIA libraries"
    else:
        nvidia = [r for r in requires if r.startswith("nvidia-") and "extra" not in r]
        wanted = {re.split(r"[ =<>;\[]", r)[0].lower() for r in nvidia}
        installed = {n.lower() for n in nvidia_distributions()}
        assert wanted and wanted <= installed, f"torch {torch.__version__} lacks {sorted(wanted - installed)}"


def test_install_script_refuses_unknown_options():
    import subprocess

    r = subprocess.run(["bash", REPO / "install.sh", "--gpu"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0 and "--gpu" in r.stderr


def _constraints():
    import importlib.util

    spec = importlib.util.spec_from_file_location("ci_constraints", REPO / ".ci" / "constraints.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_constraints_pin_one_consistent_version_of_every_dependency():
    """constraints.txt (install.sh's `-c`) pins every distribution stcn[dev,interactive] reaches, each pin
    satisfying every requirement naming it: pip's resolver has one candidate per package and nothing to backtrack."""
    module = _constraints()
    assert module.problems() == []
    pinned = module.pins()
    assert {"botocore", "boto3", "aiobotocore", "s3fs", "dvc-s3"} <= pinned.keys()
    assert "torch" not in pinned and "torchvision" not in pinned  # install.sh pins the build already installed


def test_constraints_check_names_a_missing_and_a_conflicting_pin(tmp_path):
    module = _constraints()
    pins = module.pins()
    bad = {**pins, "botocore": "0.1"}
    del bad["s3fs"]
    path = tmp_path / "constraints.txt"
    path.write_text("".join(f"{k}=={v}\n" for k, v in bad.items()))
    found = module.problems(path)
    assert any(p.startswith("s3fs is required") for p in found), found
    assert any(p.startswith("botocore==0.1 does not satisfy") for p in found), found


def test_a_fresh_environment_resolves_to_the_pins_without_backtracking(tmp_path):
    """What a fresh venv's `pip install` of install.sh resolves to, asked of the package index (pip's dry run,
    ignoring what this environment has installed): exactly the pinned versions, so no other release was tried."""
    import subprocess
    import sys

    module = _constraints()
    torch_pins = tmp_path / "torch.txt"
    torch_pins.write_text("".join(f"{d}=={importlib.metadata.version(d)}\n" for d in ("torch", "torchvision")))
    report = tmp_path / "report.json"
    cmd = [sys.executable, "-m", "pip", "install", "-q", "--dry-run", "--ignore-installed", "--report", report,
           "-c", torch_pins, "-c", REPO / "constraints.txt", "-e", f"{REPO}[dev,interactive]"]  # fmt: skip
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    assert r.returncode == 0, r.stderr[-2000:]
    import json

    chosen = {
        re.sub(r"[-_.]+", "-", item["metadata"]["name"]).lower(): item["metadata"]["version"]
        for item in json.loads(report.read_text())["install"]
    }
    pins = module.pins()
    assert {name: chosen.get(name) for name in pins} == pins
