"""What the layout page promises: adding a dataset is one registry entry of conf/config.yaml and adding an evaluated
model one line of a profile. Done in a scratch copy of the repository, nothing else edited by hand: compose
regenerates params.yaml, dvc.yaml and the stages page, and the suite's checks of the docs, the stages, the registry
and the reports pass there (they derive what they expect from conf/)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import yaml
from dvchelp import run

REPO = Path(__file__).resolve().parent.parent
GENERATED = {"params.yaml", "dvc.yaml", "docs/dag.md"}  # what `python pipelines/compose.py` writes
# a dataset downloaded from the internet, evaluated and reported, with no paper numbers (a benchmark of your own)
DATASET = (
    "  holiday:\n"
    "    layout: davis\n    year: 2017\n    splits: [val]\n    description: my clips\n"
    "    files: [{name: holiday.zip, http: 'https://example.invalid/holiday.zip'}]\n"
    "    evaluate: {split: val}\n    report: {title: My holiday}\n"
)
MODEL = "    s0: models/s0/weights.pth\n"  # the stage-0 weights, evaluated on every benchmark
# the suite's checks that read conf/, the generated files, the docs and the reports (CPU-cheap: no training run,
# no `dvc repro`)
CHECKS = [
    "tests/test_docs.py",
    "tests/test_readme.py",
    "tests/test_registry.py",
    "tests/test_reports.py",
    "tests/test_experiment_table.py",
    "tests/test_pipeline_e2e.py",
    "tests/test_paper_page.py",
    "tests/test_download.py::test_bundled_source_builds_dataset_layout",  # every registry dataset's stand-in
]
SLOW = "new_dataset_declared_in_params"  # trains and evaluates a model: the registry path it shares is checked here


def pytest(repo: Path, *args: str) -> str:
    """A fresh pytest of `repo`'s own tree (dvchelp.run: its PYTHONPATH, not this run's variables); its output."""
    return run(repo, sys.executable, "-m", "pytest", "-q", "-n", "0", "-p", "no:cacheprovider", *args,
               extra={"NO_MKDOCS_2_WARNING": "1"}, timeout=1500)  # fmt: skip


def scratch_copy(dst: Path) -> Path:
    """The repository's files (tracked and new, not ignored) as they are now, in a new git repository."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                            capture_output=True, text=True, check=True).stdout  # fmt: skip
    for name in filter(None, listed.split("\0")):
        src = REPO / name
        if src.is_file():
            (dst / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst / name)
    for cmd in (["git", "init", "-q"], ["git", "add", "-A"], ["git", "commit", "-qm", "copy"]):
        run(dst, *cmd)
    return dst


def test_a_dataset_entry_and_a_model_line_keep_the_checks_green(tmp_path):
    repo = scratch_copy(tmp_path / "repo")
    config, sample = repo / "conf" / "config.yaml", repo / "conf" / "profile" / "sample.yaml"
    text = config.read_text()
    assert text.count("\ndatasets:\n") == 1
    config.write_text(text.replace("\ndatasets:\n", "\ndatasets:\n" + DATASET, 1))  # edit 1: the registry entry
    text = sample.read_text()
    assert text.count("  models:\n") == 1
    sample.write_text(text.replace("  models:\n", "  models:\n" + MODEL, 1))  # edit 2: one line
    run(repo, sys.executable, "pipelines/compose.py")
    changed = set(run(repo, "git", "diff", "--name-only").split())
    assert changed == {"conf/config.yaml", "conf/profile/sample.yaml"} | GENERATED, changed

    stages = yaml.safe_load((repo / "dvc.yaml").read_text())["stages"]
    assert "download_holiday" in stages and stages["evaluate_holiday"]["foreach"] == "${evaluate.models}"
    assert "evaluate.models.s0" not in str(stages)  # a model is a foreach item, not a stage of its own
    page = (repo / "docs" / "dag.md").read_text()
    assert "`evaluate_holiday@s0`" in page and "`evaluate_davis17@s0`" in page and "`download_holiday`" in page
    run(repo, "git", "commit", "-qam", "a dataset and a model")  # the DAG tests clone HEAD

    out = pytest(repo, "-k", f"not {SLOW}", *CHECKS)  # exit code 0, else a failure showing the output
    assert " failed" not in out and " passed" in out
    collected = pytest(repo, "--collect-only", CHECKS[-1])
    assert "test_bundled_source_builds_dataset_layout[holiday]" in collected  # the new dataset is among the checked
