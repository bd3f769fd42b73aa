"""`stcn --version`, and `--quiet` (before or after the command name) silencing the progress lines."""

from __future__ import annotations

import re
from pathlib import Path

import clihelp
import pytest

import stcn
from stcn.data.fetch.download import download_dataset

REPO = Path(__file__).resolve().parent.parent


def test_version_is_the_package_version():
    r = clihelp.stcn("--version")
    assert r.returncode == 0
    version = re.search(r'^version = "(.+)"$', (REPO / "pyproject.toml").read_text(), re.M).group(1)
    assert r.stdout.strip() == f"stcn {stcn.__version__}" == f"stcn {version}"


@pytest.mark.parametrize("where", ["none", "after", "before"])
def test_quiet_silences_progress_lines(tmp_path, where):
    download_dataset("davis17", source="bundled", to=tmp_path / "davis17")
    args = ["shard", "davis", "--root", tmp_path / "davis17", "--out", tmp_path / "shards"]
    args = {"none": args, "after": [*args, "--quiet"], "before": ["--quiet", *args]}[where]
    r = clihelp.stcn(*args, quiet=False, STCN_PROGRESS_PERIOD="0")
    assert r.returncode == 0, r.stderr
    progress = [line for line in r.stderr.splitlines() if line.startswith("shard davis2017 train: ")]
    assert bool(progress) == (where == "none")
    assert re.search(r"^train: \d+ samples in \d+ shards", r.stderr, re.M)  # the summary line stays


COMMANDS = [["segment"], ["export"], ["evaluate"], ["score"], ["download"], ["train"], ["shard", "davis"],
            ["shard", "youtube"], ["shard", "static"], ["shard", "bl30k"]]  # fmt: skip


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_help_texts_have_no_stray_spaces(command):
    """Rich markup used to eat `[default: ...]` in help texts, leaving `shorter side .`."""
    r = clihelp.invoke(*command, "--help", env={"COLUMNS": "400", "TERMINAL_WIDTH": "400"})
    assert r.exit_code == 0, r.output
    assert "Usage:" in r.output
    assert not re.search(r"\w \.( |$)", r.output, re.M), r.output


def test_shard_commands_share_their_options():
    """Each shared `stcn shard` option is declared once (stcn.data.commands.SHARED): every shard command that
    takes it shows the same flag, default and help, and a command receives them as one ShardOptions."""
    import typer.main

    from stcn.data.commands import SHARED, ShardOptions

    group = typer.main.get_command(clihelp.cli_app()).commands["shard"]
    seen: dict[str, set] = {name: set() for name in SHARED}
    for command in ("davis", "youtube", "static", "generic", "dataset", "bl30k", "bl30k-stream"):
        params = {p.name: p for p in group.commands[command].params}
        takes = [n for n in SHARED if n in params]
        assert takes == [n for n in SHARED if command != "bl30k-stream" or n != "part"], (command, takes)
        names = list(params)
        assert names[names.index("out") : names.index("out") + len(takes)] == takes, command  # together, in order
        for name in takes:
            seen[name].add((tuple(params[name].opts), params[name].default, params[name].help))
    assert all(len(forms) == 1 for forms in seen.values()), seen
    assert ShardOptions(out="o", part="1/2").run() == {"check": "header", "workers": None, "part": "1/2"}
