"""The configuration is input too: conf/ and compose, --registry files and params.yaml are checked
(names, YAML anchors and duplicate keys, bounds) and refused in one line before anything is written."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from clihelp import ENV, REPO, one_error, stcn


def test_shell_injection_in_a_dataset_name_is_refused_by_compose(tmp_path: Path) -> None:
    """Item 1: a dataset name holding `;` never reaches dvc.yaml's `cmd:` (compose refuses it, one line)."""
    for sub in ("conf", "pipelines", "hydra_plugins"):
        shutil.copytree(REPO / sub, tmp_path / sub)
    config = tmp_path / "conf" / "config.yaml"
    text = config.read_text().replace("datasets:\n", "datasets:\n  'x;touch PWNED;y': {layout: davis, root: R, "
                                      "shard: {split: val}}\n", 1)  # fmt: skip
    config.write_text(text)
    res = subprocess.run([sys.executable, "pipelines/compose.py"], cwd=tmp_path, capture_output=True, text=True,
                         env=ENV)  # fmt: skip
    assert res.returncode == 2, res.stderr[-2000:]
    assert res.stderr.strip().splitlines()[-1].startswith("error: params.yaml: dataset name: 'x;touch PWNED;y'")
    assert not (tmp_path / "dvc.yaml").exists() and not (tmp_path / "PWNED").exists()


def test_compose_quotes_what_it_interpolates() -> None:
    """Item 1: every stage command quotes the names it holds (a no-op for valid names, checked here)."""
    sys.path.insert(0, str(REPO / "pipelines"))
    try:
        import compose
        from stage import load
    finally:
        sys.path.remove(str(REPO / "pipelines"))
    import shlex

    p = load()
    stages = compose.stages(p)
    assert stages["evaluate_davis17_interactive"]["cmd"] == "python pipelines/evaluate_interactive.py davis17"
    quoted = []
    real_quote = shlex.quote
    compose.shlex.quote = lambda word: quoted.append(word) or real_quote(word)  # what each command quotes
    try:
        compose.stages(p)
    finally:
        compose.shlex.quote = real_quote
    names = [n for n, e in p["datasets"].items() if "evaluate" in (e or {}) or "shard" in (e or {})]
    assert set(names) <= set(quoted) and {"s0", "s03"} <= set(quoted)  # dataset and run names


def test_registry_file_name_cannot_escape_the_target(tmp_path: Path) -> None:
    """Item 2: a file `name: ../../../../victim.txt` is refused before anything is fetched or written."""
    victim = tmp_path / "victim.txt"
    victim.write_text("mine")
    source = tmp_path / "src" / "w.pth"
    source.parent.mkdir()
    source.write_bytes(b"weights")
    registry = tmp_path / "r.yaml"
    registry.write_text('datasets: {}\nweights:\n  w:\n    files: [{name: "../../../../victim.txt", '
                        f'http: "file://{source}", place: null, marker: null}}]\n')  # fmt: skip
    res = stcn("download", "w", "--registry", registry, "--source", "file", "--url", source, "--to",
               tmp_path / "a" / "b" / "c" / "dl", cwd=tmp_path)  # fmt: skip
    one_error(res, "../../../../victim.txt", "not a valid name", str(registry))
    assert victim.read_text() == "mine"


def test_dataset_name_with_dots_is_refused(tmp_path: Path) -> None:
    """Item 3: a dataset named `../../escaped` is not "ready in data/../../escaped"."""
    registry = tmp_path / "r.yaml"
    registry.write_text('datasets:\n  "../../escaped": {layout: davis, shard: {split: val}}\n')
    work = tmp_path / "a" / "b"
    work.mkdir(parents=True)
    res = stcn("download", "../../escaped", "--registry", registry, "--source", "bundled", cwd=work)
    one_error(res, "'../../escaped' is not a valid name")
    res = stcn("shard", "dataset", "../../escaped", "--registry", registry, "--out", tmp_path / "o", cwd=work)
    one_error(res, "'../../escaped' is not a valid name")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "r.yaml"]


def test_duplicate_registry_names_are_refused(tmp_path: Path) -> None:
    """Item 8: the same dataset twice in a --registry file is an error naming the file and the key."""
    registry = tmp_path / "r.yaml"
    registry.write_text(f"datasets:\n  mine: {{layout: davis, root: {tmp_path}}}\n  mine: {{layout: youtube}}\n")
    res = stcn("shard", "dataset", "mine", "--registry", registry, "--out", tmp_path / "o")
    one_error(res, str(registry), "duplicate key 'mine'", "line 3")


def test_yaml_alias_bomb_is_refused_at_once(tmp_path: Path) -> None:
    """Item 14: a "billion laughs" registry is refused on its first anchor, without expanding anything."""
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"{chr(98 + i)}: &{chr(98 + i)} [{','.join(['*' + chr(97 + i)] * 9)}]" for i in range(8)]
    registry = tmp_path / "bomb.yaml"
    registry.write_text("\n".join([*lines, "datasets: {x: *i}"]) + "\n")
    res = stcn("download", "x", "--registry", registry, "--source", "bundled")
    one_error(res, str(registry), "YAML anchors (&a) are not allowed", "line 1")


def test_registry_split_names_are_checked(tmp_path: Path) -> None:
    """Issue 30 item 3: `splits: ["../../../../../elsewhere/victim"]` made `download --source bundled` overwrite
    victim.txt far outside the dataset folder; the entry is now refused like any other name."""
    work = tmp_path / "a" / "b" / "c" / "d"
    work.mkdir(parents=True)
    victim = tmp_path / "elsewhere" / "victim.txt"
    victim.parent.mkdir()
    victim.write_text("mine\n")
    registry = tmp_path / "r.yaml"
    registry.write_text('datasets:\n  mine: {layout: davis, year: 2017, splits: ["../../../../../elsewhere/victim"]}\n')
    res = stcn("download", "mine", "--registry", registry, "--source", "bundled", cwd=work)
    one_error(res, str(registry), "datasets.mine.splits", "'../../../../../elsewhere/victim' is not a valid name")
    assert victim.read_text() == "mine\n" and not (work / "data").exists()


def _compose_copy(tmp_path: Path, edit, file: str = "config.yaml") -> subprocess.CompletedProcess:
    """`pipelines/compose.py` run in a copy of conf/, its resolvers and pipelines/ whose conf/`file` text `edit`
    changed."""
    for sub in ("conf", "hydra_plugins", "pipelines"):
        shutil.copytree(REPO / sub, tmp_path / sub)
    config = tmp_path / "conf" / file
    config.write_text(edit(config.read_text()))
    return subprocess.run([sys.executable, "pipelines/compose.py"], cwd=tmp_path, capture_output=True, text=True,
                          env=ENV, timeout=300)  # fmt: skip


def _bomb() -> str:
    lines = ['lol0: &l0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"lol{i + 1}: &l{i + 1} [{','.join([f'*l{i}'] * 9)}]" for i in range(8)]
    return "\n".join(lines) + "\n"


SAMPLE = "profile/sample.yaml"


@pytest.mark.parametrize(
    ("file", "edit", "needles"),
    [
        ("config.yaml", lambda text: text + _bomb(), ["conf/config.yaml", "YAML anchors (&l0) are not allowed"]),
        ("config.yaml", lambda text: text + "train_s0: {stage: 0, data: [static]}\n",
         ["conf/config.yaml", "duplicate key 'train_s0'"]),
        (SAMPLE, lambda text: text.replace("parts: 2", "parts: 10000000"),
         ["datasets.bl30k.shard.parts must be a whole number of parts 1..4096, got 10000000"]),
        (SAMPLE, lambda text: text.replace("parts: 2", "parts: 2.7"),
         ["datasets.bl30k.shard.parts must be a whole number of parts 1..4096, got 2.7"]),
    ],
)  # fmt: skip
def test_compose_refuses_bombs_duplicates_and_huge_parts_in_one_line(tmp_path: Path, file, edit, needles) -> None:
    """Issue 30 items 13, 11, 14: an alias bomb in conf/config.yaml ran until killed, a duplicate key was 80 lines
    of Hydra traceback (or silently the last value), `parts: 10000000` a MemoryError, `parts: 2.7` became 2."""
    res = _compose_copy(tmp_path, edit, file)
    one_error(res, *needles)
    assert not (tmp_path / "params.yaml").exists() and not (tmp_path / "dvc.yaml").exists()


def test_params_yaml_with_duplicate_keys_is_refused(tmp_path: Path) -> None:
    """Issue 30 item 11: a stage read params.yaml with a key twice (the last won); now one line naming it."""
    shutil.copytree(REPO / "pipelines", tmp_path / "pipelines")
    text = (REPO / "params.yaml").read_text()
    (tmp_path / "params.yaml").write_text(text + "shard: {url: elsewhere}\n")
    res = subprocess.run([sys.executable, "pipelines/shard.py", "davis17"], cwd=tmp_path, capture_output=True,
                         text=True, env=ENV, timeout=300)  # fmt: skip
    one_error(res, "params.yaml", "duplicate key 'shard'")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml", "pipelines"]
