"""The README's shell commands run as written in bash and zsh: no unquoted glob characters."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def shell_lines() -> list[str]:
    blocks = re.findall(r"^```bash\n(.*?)^```", README.read_text(), re.S | re.M)
    return [line for block in blocks for line in block.splitlines()]


def test_glob_characters_are_quoted():
    """zsh stops with `no matches found` on an unquoted `*`, `?` or `[...]` that matches no file."""
    assert len(shell_lines()) > 20
    for line in shell_lines():
        bare = re.sub(r"'[^']*'|\"[^\"]*\"", "", line)  # quoted parts are safe
        bare = re.sub(r"(^|\s)#.*", "", bare)  # comments
        assert not re.search(r"[*?\[\]]", bare), f"quote the pattern in: {line}"


def expand(word: str) -> list[str]:
    """Shell brace expansion of one word: `a_{b,c}` -> [`a_b`, `a_c`]."""
    m = re.search(r"\{([^{}]*)\}", word)
    if not m:
        return [word]
    return [w for alt in m.group(1).split(",") for w in expand(word[: m.start()] + alt + word[m.end() :])]


def test_stage_by_stage_names_every_stage_of_dvc_yaml():
    """The README's "Stage by stage:" line names exactly the stages of the generated dvc.yaml."""
    import yaml

    text = README.read_text()
    line = re.search(r"^Stage by stage: (.*?)\n\n", text, re.S | re.M)
    assert line, "README lacks the 'Stage by stage:' paragraph"
    named = {name for word in re.findall(r"`([a-z0-9_{},]+)`", line.group(1)) for name in expand(word)}
    stages = set(yaml.safe_load((README.parent / "dvc.yaml").read_text())["stages"])
    assert named - stages == set(), f"README names stages dvc.yaml lacks: {sorted(named - stages)}"
    assert stages - named == set(), f"README's stage list omits: {sorted(stages - named)}"


def test_measured_time_is_the_range_of_the_recorded_runs():
    """The README's "Measured" sentence is what benchmarks/sample_repro.py writes from every recorded run."""
    import pandas as pd

    from benchmarks import sample_repro

    runs = pd.read_csv(sample_repro.RUNS)
    assert len(runs) >= 2 and runs["total_s"].gt(0).all()
    shown = sample_repro.MARKED.search(README.read_text())
    assert shown, "README lacks the <!-- sample_repro --> block"
    assert shown.group(2) == sample_repro.measured(runs), "run `python benchmarks/sample_repro.py --readme-only`"
    flat = " ".join(shown.group(2).split())
    assert " to " in flat and flat.count("load average") == 2  # a range, each end with its load
