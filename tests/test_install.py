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
