"""Helpers of the DVC pipeline tests (tests/test_pipeline_e2e.py, tests/test_paper_page.py, tests/test_extend.py):
run `dvc`, `git` and commands in a fresh clone of this repository, the stages a run ran, params composed from conf/,
an S3 remote."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
UP_TO_DATE = "Data and pipelines are up to date."


def env(repo: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    """This interpreter first on PATH, the clone's own `stcn` package, no analytics, a git identity; without this
    pytest's own variables (PYTEST_*, COV_*), so a pytest run in the clone is a fresh one."""
    e = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "COV_"))}
    e.update(
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{e.get('PATH', '')}",
        PYTHONPATH=str(repo),
        DVC_NO_ANALYTICS="1",
        GIT_AUTHOR_NAME="test",
        GIT_AUTHOR_EMAIL="test@example.com",
        GIT_COMMITTER_NAME="test",
        GIT_COMMITTER_EMAIL="test@example.com",
    )
    e.update(extra or {})
    return e


def run(repo: Path, *cmd: str, extra: dict[str, str] | None = None, timeout: float = 600) -> str:
    """Run a command in `repo`; its stdout + stderr, or a failure showing them."""
    p = subprocess.run(cmd, cwd=repo, env=env(repo, extra), capture_output=True, text=True, timeout=timeout)
    out = p.stdout + p.stderr
    assert p.returncode == 0, f"{' '.join(cmd)} exited with {p.returncode}:\n{out[-6000:]}"
    return out


def dvc(repo: Path, *args: str, **kw) -> str:
    return run(repo, sys.executable, "-m", "dvc", *args, **kw)


def ran(output: str) -> set[str]:
    """Stages `dvc repro` / `dvc exp run` ran (not skipped)."""
    return set(re.findall(r"Running stage '([^']+)'", output))


def clone(src: Path, dst: Path) -> Path:
    run(dst.parent, "git", "clone", "-q", str(src), str(dst))
    return dst


def compose(tmp_path: Path, *overrides: str) -> dict:
    """params.yaml as `python pipelines/compose.py OVERRIDES` writes it (in tmp_path)."""
    out = tmp_path / "params.yaml"
    r = subprocess.run([sys.executable, str(ROOT / "pipelines" / "compose.py"), *overrides, "--params", str(out)],
                       cwd=ROOT, capture_output=True, text=True)  # fmt: skip
    assert r.returncode == 0, r.stderr
    return yaml.safe_load(out.read_text())


def paper_sections() -> str:
    """The docs' "Paper scale" page (sharding on many machines, multi-node, S3, the commands without DVC)."""
    return (ROOT / "docs" / "paper-scale.md").read_text()


def use_remote(repo: Path, server) -> None:
    for key, value in [("endpointurl", server.endpoint_url), ("access_key_id", server.key),
                       ("secret_access_key", server.secret), ("region", "us-east-1")]:  # fmt: skip
        dvc(repo, "remote", "modify", "--local", "storage", key, value)
