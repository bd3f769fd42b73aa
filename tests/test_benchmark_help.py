"""Every benchmark script parses its arguments: `--help` prints help and changes nothing in the repository."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SCRIPTS = sorted(p for p in (REPO / "benchmarks").glob("*.py") if 'if __name__ == "__main__":' in p.read_text())


def snapshot() -> dict[str, tuple[int, int]]:
    """Size and modification time of every file in the repository (outside .git)."""
    files = {}
    for folder, dirs, names in os.walk(REPO):
        dirs[:] = [d for d in dirs if d not in (".git", "__pycache__", ".pytest_cache", ".ruff_cache")]
        for name in names:
            st = os.stat(os.path.join(folder, name))
            files[os.path.relpath(os.path.join(folder, name), REPO)] = (st.st_size, st.st_mtime_ns)
    return files


def test_every_benchmark_is_a_script():
    assert {p.name for p in SCRIPTS} >= {"inference.py", "scorer.py", "shard.py", "stream.py", "train.py"}


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_help_prints_usage_and_changes_nothing(script: Path):
    before = snapshot()
    r = subprocess.run([sys.executable, script, "--help"], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"usage: {script.name}")
    assert snapshot() == before


def test_gpu_script_runs_on_cpu_and_writes_nothing():
    """benchmarks/gpu.py cannot be run on CUDA in CI: its `--device cpu --quick` smoke run exercises the same code."""
    before = snapshot()
    r = subprocess.run(
        [sys.executable, REPO / "benchmarks/gpu.py", "--device", "cpu", "--quick"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=3600,  # a hang guard only: at load 8-15 this run took over 10 minutes, and its time is no check
    )
    assert r.returncode == 0, r.stderr
    for part in (
        "inference 480p, fp32",
        "inference 480p, fast",
        "inference 480p, bf16",
        "training stage 0",
        "training stage 3",
    ):
        assert f"| {part}" in r.stdout
    assert "min per-frame agreement" in r.stdout
    assert snapshot() == before
